package gateway

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mxgate/gatewayd/policy"
)

// TestReloadDuringLoad: rule sets are swapped while messages flow; every
// transaction is judged by one set from its MAIL to its end of DATA.
func TestReloadDuringLoad(t *testing.T) {
	a, err := policy.Load("testdata/rulesA")
	if err != nil {
		t.Fatal(err)
	}
	b, err := policy.Load("testdata/rulesB")
	if err != nil {
		t.Fatal(err)
	}
	var cur atomic.Pointer[policy.Engine]
	cur.Store(a)
	j := &Judge{Policy: func() Evaluator { return cur.Load() }, Logger: slog.New(slog.DiscardHandler)}
	g := startGateway(t, testConfig(), nil, j)

	stop := make(chan struct{})
	var swaps sync.WaitGroup
	swaps.Add(1)
	go func() {
		defer swaps.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%2 == 0 {
				cur.Store(b)
			} else {
				cur.Store(a)
			}
		}
	}()
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				msg := fmt.Sprintf("Subject: %d-%d\r\n\r\nbody\r\n", w, i)
				if err := sendMail(g.addr, "a@sender.test", []string{"bob@example.com"}, msg); err != nil {
					t.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(stop)
	swaps.Wait()

	// The rcpt decision's rule and the relayed header name the same set.
	rcptSet := map[string]string{} // queue id -> set
	for _, l := range g.log.lines() {
		var e struct {
			Stage   string          `json:"stage"`
			QueueID string          `json:"queue_id"`
			Reasons []policy.Reason `json:"reasons"`
		}
		json.Unmarshal([]byte(l), &e)
		if e.Stage == "rcpt" && len(e.Reasons) > 0 {
			rcptSet[e.QueueID] = strings.ToUpper(e.Reasons[0].Rule[:1])
		}
	}
	sets := map[string]int{}
	for _, m := range g.mta.messages() {
		data := string(m.Data)
		i := strings.Index(data, " id ")
		qid := data[i+4 : i+4+16]
		hdr := data[strings.Index(data, "X-Rule-Set: ")+12:][:1]
		sets[hdr]++
		if rcptSet[qid] != hdr {
			t.Errorf("transaction %s: rcpt judged by set %q, data by set %q", qid, rcptSet[qid], hdr)
		}
	}
	if len(g.mta.messages()) != 100 {
		t.Fatalf("%d messages relayed, want 100", len(g.mta.messages()))
	}
	t.Logf("transactions per rule set: %v", sets)
}
