package gateway

import (
	"bytes"
	"crypto/tls"
	"log/slog"
	"math"
	"net/netip"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/gatewayd/policy"
)

// The direct writer (decisionjson.go) is held to slog's JSON handler: the
// same decision must give the same line, byte for byte, but for the time.

var lineTime = regexp.MustCompile(`^\{"time":"[^"]*"`)

// compareLines logs the decision both ways and reports a difference.
func compareLines(t *testing.T, st *State, d *Decision) {
	t.Helper()
	var viaSlog, direct bytes.Buffer
	NewDecisionLog(slog.NewJSONHandler(&viaSlog, nil)).log(st, d)
	NewDecisionLogJSON(&direct).log(st, d)
	want := lineTime.ReplaceAll(viaSlog.Bytes(), []byte(`{"time":"T"`))
	got := lineTime.ReplaceAll(direct.Bytes(), []byte(`{"time":"T"`))
	if !bytes.Equal(got, want) {
		t.Errorf("lines differ\n got: %s\nwant: %s", got, want)
	}
	if bytes.Count(direct.Bytes(), []byte("\n")) != 1 {
		t.Errorf("not one line: %q", direct.Bytes())
	}
}

// decisionState is a session with every check's result, as the judge
// stores them.
func decisionState(s string) *State {
	st := &State{SessionID: "9KNSBBXL03LSNH92" + s, Client: netip.MustParseAddrPort("[2001:db8::7]:40000"),
		ReverseName: "h7.client.test" + s, Helo: s, QueueID: "Q" + s,
		From: Address{Local: "load" + s, Domain: "bench.test"}, HasFrom: true,
		TLS: &tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256}}
	st.SetResult("dnsbl", []zoneLog{{Zone: "zen.test", Status: "listed", Subject: "192.0.2.7", Codes: []string{"127.0.0.2", s}, Reason: s, Error: s}, {Zone: "b.test", Status: "error"}})
	st.SetResult("iprev", iprevLog{Result: "pass", Name: s})
	st.SetResult("spf", spfLog{Result: "fail", Domain: s, Identity: "mailfrom"})
	st.SetResult("greylist", greylistLog{Action: "pass", Reason: s, Network: "192.0.2.0/24", FailOpen: true, Cached: true, Error: s})
	st.SetResult("dkim", []dkimLog{{D: s, S: "s1", Result: "fail", Reason: s}, {D: "d", S: "s2", Result: "pass"}})
	st.SetResult("dmarc", dmarcLog{Result: "pass", Domain: s, Policy: "reject", Applied: s})
	st.SetResult("domainbl_helo", []zoneLog{})
	st.SetResult(s, map[string]any{"b": []int{1, 2}, "a": s, "<&>": 1.5e-9})
	return st
}

func TestDecisionLineMatchesSlog(t *testing.T) {
	strs := []string{"", "plain", `quote " backslash \ slash /`, "<html> & 'amp'", "ctl \x00\x01\b\f\n\r\t\x1f\x7f",
		"utf8 é ☃ 𝄞", "bad \xff\xfe utf8 \xc3", "sep \u2028 \u2029", "emoji 😀"}
	for _, s := range strs {
		st := decisionState(s)
		d := &Decision{Stage: policy.StageData, Action: policy.ActionRelay, Rcpt: s, Rcpts: []string{"a@b.test", s},
			Reply:    policy.Reply{Code: 250, Enhanced: "2.0.0", Text: s},
			Reasons:  []policy.Reason{{Rule: s, Score: -1.25, Detail: s}, {Rule: "zero"}},
			Score:    3.5,
			Upstream: &UpstreamResult{Addr: "127.0.0.1:2526", Reply: policy.Reply{Code: 250, Text: s}, Error: s},
			Size:     4400, Duration: 1500 * time.Microsecond}
		compareLines(t, st, d)
		// The sparse line of a connection refused before anything ran.
		compareLines(t, &State{SessionID: s, Client: netip.MustParseAddrPort("192.0.2.9:25")},
			&Decision{Stage: policy.StageConnect, Action: policy.ActionReject, Reply: policy.Reply{Code: 554, Text: s}})
	}
	for _, f := range []float64{0, 1, -1, 0.001, 1e-7, 1.5e-9, 123456789, 1e20, 1e21, 1.2345e25, -3e-7, math.SmallestNonzeroFloat64, math.MaxFloat64} {
		compareLines(t, decisionState("f"), &Decision{Stage: policy.StageRcpt, Action: policy.ActionDefer, Score: f,
			Reasons: []policy.Reason{{Rule: "r", Score: f}}, Duration: time.Duration(f)})
	}
}

// TestDecisionLineFallsBack: what the direct writer cannot write as slog
// does (a float that is not finite, a hook value encoding/json refuses)
// still gets slog's line.
func TestDecisionLineFallsBack(t *testing.T) {
	compareLines(t, decisionState("x"), &Decision{Stage: policy.StageData, Score: math.NaN()})
	compareLines(t, decisionState("x"), &Decision{Stage: policy.StageData, Reasons: []policy.Reason{{Rule: "r", Score: math.Inf(1)}}})
	st := decisionState("x")
	st.SetResult("hook", make(chan int))
	compareLines(t, st, &Decision{Stage: policy.StageData})
}

func FuzzDecisionLine(f *testing.F) {
	f.Add("plain", "a@b.test", "<&>", 1.5, int64(1500))
	f.Add("\xff\u2028\x00", "", "\"\\", -1e-9, int64(0))
	f.Fuzz(func(t *testing.T, s, rcpt, text string, score float64, dur int64) {
		st := decisionState(s)
		d := &Decision{Stage: policy.StageRcpt, Action: policy.ActionReject, Rcpt: rcpt, Rcpts: []string{rcpt, s},
			Reply: policy.Reply{Code: 550, Enhanced: "5.7.1", Text: text}, Score: score,
			Reasons:  []policy.Reason{{Rule: s, Score: score, Detail: text}},
			Upstream: &UpstreamResult{Addr: s, Reply: policy.Reply{Code: int(dur % 600), Text: text}, Error: rcpt},
			Size:     dur, Duration: time.Duration(dur)}
		compareLines(t, st, d)
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

type panicky struct{ p *int }

func (v panicky) MarshalJSON() ([]byte, error) { return []byte{byte(*v.p)}, nil }

// TestDecisionLinePanickyHook: a hook value whose MarshalJSON panics gets
// slog's line (the panic written in place of the checks), and the log
// goes on.
func TestDecisionLinePanickyHook(t *testing.T) {
	st := decisionState("x")
	st.SetResult("hook", panicky{})
	compareLines(t, st, &Decision{Stage: policy.StageData})
}

// TestDecisionLineOneLock: direct lines and the lines left to slog are
// written under one lock (run with -race; a bytes.Buffer is not safe for
// concurrent writes).
func TestDecisionLineOneLock(t *testing.T) {
	var buf bytes.Buffer
	dl := NewDecisionLogJSON(&buf)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 50 {
				d := &Decision{Stage: policy.StageData}
				if i%2 == 0 {
					d.Score = math.NaN() // left to slog
				}
				dl.log(decisionState("x"), d)
			}
		})
	}
	wg.Wait()
	if n := bytes.Count(buf.Bytes(), []byte("\n")); n != 400 {
		t.Errorf("%d lines, want 400", n)
	}
}
