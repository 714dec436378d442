package gateway

// Every reply that refuses or ends something is explained by exactly one
// decision line carrying that reply (README "Decision log").

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
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

// panicUpstream panics when a transaction begins: a bug in the relay.
type panicUpstream struct{}

func (panicUpstream) Begin(context.Context, Address, MailOpts) (UpstreamTx, policy.Reply, error) {
	panic("boom in Begin")
}
func (panicUpstream) Close() error { return nil }

// TestSessionPanicLogged: a panic while judging a recipient ends the
// session with 421 4.3.0; its one line says so (rule local_error), and no
// line claims a reply that was never sent (the recipient's, unfinished).
func TestSessionPanicLogged(t *testing.T) {
	g := startGatewayUpstream(t, testConfig(), panicUpstream{}, nil, nil)
	dialog(t, g.addr, "< 220\n> EHLO c\n< 250\n> MAIL FROM:<a@sender.test>\n< 250\n> RCPT TO:<bob@example.com>\n< 421 4.3.0 Local error, closing connection\n<EOF")
	waitFor(t, "the session to end", func() bool {
		g.srv.mu.Lock()
		defer g.srv.mu.Unlock()
		return g.srv.total == 0
	})
	ls := parseLines(t, g)
	if len(ls) != 1 {
		t.Fatalf("want one line, got %d:\n%s", len(ls), g.log.String())
	}
	if l := ls[0]; l.Code != 421 || l.Enhanced != "4.3.0" || l.Text != "Local error, closing connection" ||
		l.Stage != "rcpt" || l.Action != "defer" || !hasRule(l, "local_error") {
		t.Errorf("line: %+v", l)
	}
}

// panicDataUpstream relays recipients, then panics sending the message.
type panicDataUpstream struct{ Upstream }
type panicDataTx struct{ UpstreamTx }

func (u panicDataUpstream) Begin(ctx context.Context, from Address, opts MailOpts) (UpstreamTx, policy.Reply, error) {
	tx, r, err := u.Upstream.Begin(ctx, from, opts)
	if tx != nil {
		tx = panicDataTx{tx}
	}
	return tx, r, err
}
func (panicDataTx) Data(context.Context, io.Reader) (policy.Reply, error) { panic("boom in Data") }

// TestSessionPanicInDataLogged: a panic relaying the message: the data
// line is the 421 4.3.0 the sender got, once.
func TestSessionPanicInDataLogged(t *testing.T) {
	m := startMTA(t)
	up := NewSMTPUpstream(SMTPUpstreamConfig{Addrs: []string{m.addr}, Helo: "mx.test"})
	g := startGatewayUpstream(t, testConfig(), panicDataUpstream{up}, m, nil)
	dialog(t, g.addr, untilData+"> Subject: x\n>\n> hi\n> .\n< 421 4.3.0 Local error, closing connection\n<EOF")
	waitFor(t, "the session to end", func() bool {
		g.srv.mu.Lock()
		defer g.srv.mu.Unlock()
		return g.srv.total == 0
	})
	ls := parseLines(t, g)
	if len(ls) != 2 {
		t.Fatalf("want the recipient's line and the message's, got %d:\n%s", len(ls), g.log.String())
	}
	if l := ls[1]; l.Code != 421 || l.Enhanced != "4.3.0" || l.Stage != "data" || l.Action != "defer" ||
		!hasRule(l, "local_error") || len(l.Rcpts) != 1 {
		t.Errorf("data line: %+v", l)
	}
}

// TestShutdownInDataLogged: a read of the message that Shutdown
// interrupted (a session it took for idle as pipelined commands took it
// into DATA) is answered 421 4.3.2, and its line names the shutdown.
func TestShutdownInDataLogged(t *testing.T) {
	g := startGateway(t, testConfig(), nil, nil)
	c, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	runDialog(t, c, untilData+"> Subject: x\n")
	// Interrupt it as Shutdown interrupts an idle one: its reads of the
	// message, now or to come, end.
	g.srv.mu.Lock()
	for s := range g.srv.sessions {
		s.mu.Lock()
		s.interrupted = true
		s.raw.SetReadDeadline(time.Now())
		s.mu.Unlock()
	}
	g.srv.mu.Unlock()
	runDialog(t, c, "< 421 4.3.2\n<EOF")
	waitFor(t, "the session to end", func() bool {
		g.srv.mu.Lock()
		defer g.srv.mu.Unlock()
		return g.srv.total == 0
	})
	ls := linesWithCode(parseLines(t, g), 421)
	if len(ls) != 1 {
		t.Fatalf("want one line for the 421, got %d:\n%s", len(ls), g.log.String())
	}
	if l := ls[0]; l.Stage != "data" || l.Action != "defer" || !hasRule(l, "shutdown") {
		t.Errorf("421 line: %+v", l)
	}
}

// movingUpstream's transactions move to another connection in Rcpt, as
// smtpTx does when its pooled connection was stale: the MTA that answers
// is not the one the transaction began on.
type movingUpstream struct{ Upstream }
type movingTx struct {
	UpstreamTx
	moved bool
}

func (u movingUpstream) Begin(ctx context.Context, from Address, opts MailOpts) (UpstreamTx, policy.Reply, error) {
	tx, r, err := u.Upstream.Begin(ctx, from, opts)
	if tx != nil {
		tx = &movingTx{UpstreamTx: tx}
	}
	return tx, r, err
}
func (t *movingTx) Rcpt(ctx context.Context, to Address) (policy.Reply, error) {
	t.moved = true
	return t.UpstreamTx.Rcpt(ctx, to)
}
func (t *movingTx) Addr() string {
	if t.moved {
		return "answered.test:25"
	}
	return "stale.test:25"
}

// TestRcptUpstreamAddrAnswered: the recipient's line names the MTA whose
// answer it carries.
func TestRcptUpstreamAddrAnswered(t *testing.T) {
	m := startMTA(t)
	m.setRcptReply(func(string) error { return &smtpErr550 })
	up := NewSMTPUpstream(SMTPUpstreamConfig{Addrs: []string{m.addr}, Helo: "mx.test"})
	g := startGatewayUpstream(t, testConfig(), movingUpstream{up}, m, nil)
	dialog(t, g.addr, "< 220\n> EHLO c\n< 250\n> MAIL FROM:<a@sender.test>\n< 250\n> RCPT TO:<bob@example.com>\n< 550 5.1.1 No such user\n> QUIT\n< 221")
	out := g.log.String()
	if !strings.Contains(out, `"upstream":{"addr":"answered.test:25","reply":{"code":550`) {
		t.Errorf("the line does not name the MTA that answered:\n%s", out)
	}
}

// TestDataNoRecipientUnlogged: DATA with no accepted recipient gets 554
// 5.5.1 and, as the README says, no line of its own: the recipient's
// line says why it was refused.
func TestDataNoRecipientUnlogged(t *testing.T) {
	g := startGateway(t, testConfig(), nil, nil)
	dialog(t, g.addr, "< 220\n> EHLO c\n< 250\n> MAIL FROM:<a@sender.test>\n< 250\n> RCPT TO:<bob@elsewhere.test>\n< 550 5.7.1\n> DATA\n< 554 5.5.1\n> QUIT\n< 221")
	ls := parseLines(t, g)
	if len(ls) != 1 || ls[0].Stage != "rcpt" || ls[0].Code != 550 || !hasRule(ls[0], "relay_denied") {
		t.Errorf("want only the recipient's line:\n%s", g.log.String())
	}
}

// TestDataDeadlineNotIdle: a sender that never pauses, cut off by the
// DATA deadline, is told (and the line says) that the data took too long,
// not that it was idle: the read deadline the idle timeout last set, up
// to a 64th of it before the DATA deadline, is not left in its place.
func TestDataDeadlineNotIdle(t *testing.T) {
	cfg := testConfig()
	cfg.IdleTimeout = 1280 * time.Millisecond // a 64th is 20 ms
	cfg.DataTimeout = 2 * time.Second
	g := startGateway(t, cfg, nil, nil)
	c, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	runDialog(t, c, untilData)
	got := make(chan string, 1)
	go func() {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		got <- line
	}()
	var reply string
	for i := 0; reply == ""; i++ {
		c.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := fmt.Fprintf(c, "line %d\r\n", i); err != nil {
			reply = <-got
			break
		}
		select {
		case reply = <-got:
		case <-time.After(3 * time.Millisecond):
		}
	}
	if !strings.HasPrefix(reply, "421 4.4.2 Message data took longer than allowed") {
		t.Fatalf("want the DATA deadline's 421 4.4.2, got %q", reply)
	}
	ls := linesWithCode(parseLines(t, g), 421)
	if len(ls) != 1 || !hasRule(ls[0], "data_timeout") {
		t.Errorf("want one data_timeout line:\n%s", g.log.String())
	}
}
