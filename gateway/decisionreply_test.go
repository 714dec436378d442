package gateway

// Every reply that refuses or ends something is explained by exactly one
// decision line carrying that reply (README "Decision log").

import (
	"context"
	"encoding/json"
	"net"
	"testing"
	"time"

	"github.com/mxgate/gatewayd/policy"
)

type logLine struct {
	Stage    string          `json:"stage"`
	Action   string          `json:"action"`
	Code     int             `json:"code"`
	Enhanced string          `json:"enhanced"`
	Text     string          `json:"text"`
	Reasons  []policy.Reason `json:"reasons"`
	Rcpts    []string        `json:"rcpts"`
}

func parseLines(t *testing.T, g *testGateway) []logLine {
	t.Helper()
	var out []logLine
	for _, l := range g.log.lines() {
		var e logLine
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("decision line not JSON: %q", l)
		}
		out = append(out, e)
	}
	return out
}

// linesWithCode returns the lines whose reply code is code.
func linesWithCode(ls []logLine, code int) []logLine {
	var out []logLine
	for _, l := range ls {
		if l.Code == code {
			out = append(out, l)
		}
	}
	return out
}

func hasRule(l logLine, rule string) bool {
	for _, r := range l.Reasons {
		if r.Rule == rule {
			return true
		}
	}
	return false
}

// TestShutdownAfterTransactionLogged: a session inside a transaction as
// Shutdown comes finishes it; its next command outside one is answered
// 421 4.3.2 and the session ends: a session cut off by the shutdown,
// which has its line (rule shutdown) like the idle session Shutdown
// interrupts.
func TestShutdownAfterTransactionLogged(t *testing.T) {
	g := startGateway(t, testConfig(), nil, nil)
	c, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	runDialog(t, c, "< 220\n> EHLO c\n< 250\n> MAIL FROM:<a@sender.test>\n< 250\n> RCPT TO:<bob@example.com>\n< 250")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- g.srv.Shutdown(ctx) }()
	waitFor(t, "draining", func() bool { return g.srv.draining.Load() })
	runDialog(t, c, "> RSET\n< 250\n< 421 4.3.2 Service shutting down\n<EOF")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ls := linesWithCode(parseLines(t, g), 421)
	if len(ls) != 1 {
		t.Fatalf("want one line for the 421, got %d:\n%s", len(ls), g.log.String())
	}
	if l := ls[0]; l.Enhanced != "4.3.2" || l.Text != "Service shutting down, try again later" || l.Action != "defer" || !hasRule(l, "shutdown") {
		t.Errorf("421 line: %+v", l)
	}
}
