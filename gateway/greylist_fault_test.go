package gateway

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/gatewayd/greylist"
	dto "github.com/prometheus/client_model/go"
)

// TestGreylistStoreUnresponsive: with Redis accepting connections but never
// answering, a recipient is decided within greylist.deadline as
// greylist.fail_mode says (open: relayed, closed: 451), never a 5xx, and
// the decision line says the store failed.
func TestGreylistStoreUnresponsive(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // read nothing, answer nothing
		}
	}()
	const deadline = 300 * time.Millisecond
	for _, mode := range []string{greylist.FailOpen, greylist.FailClosed} {
		t.Run(mode, func(t *testing.T) {
			e := startJudgedWith(t, l.Addr().String(), true, DefaultPolicy, func(s *judgeSetup) {
				s.greylist.FailMode = mode
				s.greylist.Deadline = greylist.Duration(deadline)
				s.greylist.AllowCIDRs = nil // 127.0.0.1 is greylisted
			})
			start := time.Now()
			err := sendFrom("127.0.0.1", e.g.addr, "alice@sender.test", []string{"bob@example.com"}, "From: alice@sender.test\r\nSubject: g\r\n\r\nbody\r\n")
			if took := time.Since(start); took > deadline+2*time.Second {
				t.Errorf("transaction took %v with greylist.deadline %v", took, deadline)
			}
			log := e.g.log.String()
			if !strings.Contains(log, `"reason":"store_error"`) || !strings.Contains(log, `"error":"greylist: redis store: decide:`) {
				t.Errorf("decision line does not say the store failed:\n%s", log)
			}
			m := e.j.Checks.Greylist.Metrics()
			switch mode {
			case greylist.FailOpen:
				if err != nil {
					t.Fatalf("fail_mode open: %v, want the message relayed", err)
				}
				if !strings.Contains(log, `"fail_open":true`) || !strings.Contains(log, `"detail":"failopen"`) {
					t.Errorf("fail-open pass not logged as such:\n%s", log)
				}
			case greylist.FailClosed:
				if codeOf(err) != 451 {
					t.Fatalf("fail_mode closed: %v, want 451", err)
				}
				if !strings.Contains(log, `"code":451,"enhanced":"4.7.1"`) || !strings.Contains(log, `"detail":"store_error"`) {
					t.Errorf("fail-closed deferral not logged as such:\n%s", log)
				}
			}
			var out dto.Metric
			if err := m.Failures.WithLabelValues(mode).Write(&out); err != nil {
				t.Fatal(err)
			}
			if v := out.GetCounter().GetValue(); v != 1 {
				t.Errorf("store failures{mode=%s} = %v, want 1", mode, v)
			}
		})
	}
}
