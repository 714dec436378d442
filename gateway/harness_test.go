package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// ---- The internal MTA stand-in: a real SMTP server (go-smtp) on loopback.

// received is one message the internal MTA accepted.
type received struct {
	From  string
	Rcpts []string
	Data  []byte
}

// mta is a real SMTP server standing in for the internal MTA. Its behaviour
// per recipient and per message is set by the test through the fault hooks.
type mta struct {
	addr string
	srv  *smtp.Server

	mu       sync.Mutex
	msgs     []received
	mails    []string // every MAIL FROM seen
	sessions int
	raw      bytes.Buffer // every octet the MTA read and wrote

	// Faults, read under mu.
	mailReply func(from string) error               // nil: accept
	rcptReply func(to string) error                 // nil: accept
	dataReply func(data []byte, c *smtp.Conn) error // nil: accept
}

type mtaBackend struct{ m *mta }

func (b mtaBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	b.m.mu.Lock()
	b.m.sessions++
	b.m.mu.Unlock()
	return &mtaSession{m: b.m, c: c}, nil
}

type mtaSession struct {
	m     *mta
	c     *smtp.Conn
	from  string
	rcpts []string
}

func (s *mtaSession) Reset()        { s.from, s.rcpts = "", nil }
func (s *mtaSession) Logout() error { return nil }
func (s *mtaSession) Mail(from string, opts *smtp.MailOptions) error {
	s.m.mu.Lock()
	s.m.mails = append(s.m.mails, from)
	f := s.m.mailReply
	s.m.mu.Unlock()
	if f != nil {
		if err := f(from); err != nil {
			return err
		}
	}
	s.from = from
	return nil
}
func (s *mtaSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	s.m.mu.Lock()
	f := s.m.rcptReply
	s.m.mu.Unlock()
	if f != nil {
		if err := f(to); err != nil {
			return err
		}
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}
func (s *mtaSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.m.mu.Lock()
	f := s.m.dataReply
	s.m.mu.Unlock()
	if f != nil {
		if err := f(data, s.c); err != nil {
			return err
		}
	}
	s.m.mu.Lock()
	s.m.msgs = append(s.m.msgs, received{From: s.from, Rcpts: append([]string(nil), s.rcpts...), Data: data})
	s.m.mu.Unlock()
	return nil
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func startMTA(t testing.TB) *mta {
	t.Helper()
	return startMTAWith(t, nil)
}

// startMTAWith is startMTA with the go-smtp server set up further by set
// (its extensions) before it serves.
func startMTAWith(t testing.TB, set func(*smtp.Server)) *mta {
	t.Helper()
	m := &mta{}
	srv := smtp.NewServer(mtaBackend{m})
	srv.Domain = "internal.test"
	srv.MaxRecipients = 1000
	srv.ErrorLog = logDiscard{}
	if set != nil {
		set(srv)
	}
	srv.Debug = lockedWriter{&m.mu, &m.raw}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.addr = l.Addr().String()
	m.srv = srv
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return m
}

type logDiscard struct{}

func (logDiscard) Printf(string, ...interface{}) {}
func (logDiscard) Println(...interface{})        {}

func (m *mta) messages() []received {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]received(nil), m.msgs...)
}

func (m *mta) mailFroms() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.mails...)
}

func (m *mta) rawBytes() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]byte(nil), m.raw.Bytes()...)
}

func (m *mta) setMailReply(f func(string) error) {
	m.mu.Lock()
	m.mailReply = f
	m.mu.Unlock()
}

func (m *mta) setRcptReply(f func(string) error) {
	m.mu.Lock()
	m.rcptReply = f
	m.mu.Unlock()
}

func (m *mta) setDataReply(f func([]byte, *smtp.Conn) error) {
	m.mu.Lock()
	m.dataReply = f
	m.mu.Unlock()
}

// ---- The gateway under test.

type testGateway struct {
	addr string
	srv  *Server
	log  *syncBuffer
	mta  *mta
}

// syncBuffer collects the decision log.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// lines returns the decision log lines.
func (s *syncBuffer) lines() []string {
	out := strings.Split(strings.TrimSpace(s.String()), "\n")
	if len(out) == 1 && out[0] == "" {
		return nil
	}
	return out
}

func testConfig() Config {
	return Config{
		Hostname:       "mx.test",
		AuthservID:     "mx.test",
		Domains:        []string{"example.com", "example.org"},
		MaxMessageSize: 64 << 10,
		IdleTimeout:    5 * time.Second,
		DataTimeout:    5 * time.Second,
	}
}

// startGateway runs a gateway relaying to m (a new stand-in MTA when nil).
func startGateway(t testing.TB, cfg Config, m *mta, hook Hook) *testGateway {
	t.Helper()
	return startGatewayMode(t, cfg, m, hook, false, false)
}

// startGatewayMode is startGateway with the relay's pipelining or BDAT
// switched off.
func startGatewayMode(t testing.TB, cfg Config, m *mta, hook Hook, noPipelining, noChunking bool) *testGateway {
	t.Helper()
	if m == nil {
		m = startMTA(t)
	}
	up := NewSMTPUpstream(SMTPUpstreamConfig{
		Addrs: []string{m.addr}, Helo: "mx.test",
		ConnectTimeout: 2 * time.Second, CommandTimeout: 2 * time.Second, DataTimeout: 2 * time.Second,
		MaxIdle: 4, NoPipelining: noPipelining, NoChunking: noChunking,
	})
	return startGatewayUpstream(t, cfg, up, m, hook)
}

func startGatewayUpstream(t testing.TB, cfg Config, up Upstream, m *mta, hook Hook) *testGateway {
	t.Helper()
	if cfg.TempDir == "" {
		cfg.TempDir = t.TempDir()
	}
	log := &syncBuffer{}
	srv := New(cfg, Options{
		Upstream:  up,
		Hook:      hook,
		Decisions: NewDecisionLogJSON(log),
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return &testGateway{addr: l.Addr().String(), srv: srv, log: log, mta: m}
}

// ---- Dialog scripts.

// untilData is the start of most dialogs: greeting, EHLO, one sender, one
// accepted recipient, and DATA answered with 354.
const untilData = `
< 220
> EHLO client.test
< 250
> MAIL FROM:<a@sender.test>
< 250
> RCPT TO:<bob@example.com>
< 250
> DATA
< 354
`

// dialog runs a script against addr. Lines:
//
//	> text     send text + CRLF
//	>> "go"    send a Go-quoted string as is (escapes allowed, no CRLF added)
//	< 250      expect the next reply to start with this (multi-line replies
//	           are read whole and matched on their last line)
//	<< 250     expect a reply, reading all pending lines of a multi-line one
//	<EOF       expect the server to close the connection
//	# ...      comment
//
// It returns the transcript for error messages.
func dialog(t testing.TB, addr, script string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	runDialog(t, c, script)
}

func runDialog(t testing.TB, c net.Conn, script string) {
	t.Helper()
	r := bufio.NewReader(c)
	var transcript strings.Builder
	for n, line := range strings.Split(script, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		switch {
		case strings.HasPrefix(line, ">> "):
			s, err := strconv.Unquote(strings.TrimPrefix(line, ">> "))
			if err != nil {
				t.Fatalf("script line %d: %v", n+1, err)
			}
			transcript.WriteString("C: " + strconv.Quote(s) + "\n")
			if _, err := c.Write([]byte(s)); err != nil {
				t.Fatalf("script line %d: write: %v\n%s", n+1, err, transcript.String())
			}
		case strings.HasPrefix(line, "> ") || line == ">":
			s := strings.TrimPrefix(strings.TrimPrefix(line, ">"), " ")
			transcript.WriteString("C: " + s + "\n")
			if _, err := c.Write([]byte(s + "\r\n")); err != nil {
				t.Fatalf("script line %d: write: %v\n%s", n+1, err, transcript.String())
			}
		case line == "<EOF":
			_, err := r.ReadString('\n')
			if err == nil {
				// Allow one last reply before the close.
				_, err = r.ReadString('\n')
			}
			if !errors.Is(err, io.EOF) && !isConnReset(err) {
				t.Fatalf("script line %d: want the connection closed, got %v\n%s", n+1, err, transcript.String())
			}
			transcript.WriteString("S: <closed>\n")
		case strings.HasPrefix(line, "< "):
			want := strings.TrimPrefix(line, "< ")
			got, err := readReply(r)
			transcript.WriteString("S: " + got + "\n")
			if err != nil {
				t.Fatalf("script line %d: want %q, read error %v\n%s", n+1, want, err, transcript.String())
			}
			if !strings.HasPrefix(got, want) {
				t.Fatalf("script line %d: want reply starting %q, got %q\n%s", n+1, want, got, transcript.String())
			}
		default:
			t.Fatalf("script line %d: cannot parse %q", n+1, line)
		}
	}
}

func isConnReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "use of closed"))
}

// readReply reads one (possibly multi-line) reply and returns its last line.
func readReply(r *bufio.Reader) (string, error) {
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return strings.TrimRight(line, "\r\n"), err
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) >= 4 && line[3] == '-' {
			continue
		}
		return line, nil
	}
}

// sendMail sends one message with go-smtp's client and returns its error.
func sendMail(addr, from string, to []string, msg string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.CommandTimeout = 10 * time.Second
	c.SubmissionTimeout = 10 * time.Second
	if err := c.Hello("client.test"); err != nil {
		return err
	}
	if err := c.SendMail(from, to, strings.NewReader(msg)); err != nil {
		return err
	}
	return c.Quit()
}

// waitFor polls cond until it holds or the test's patience ends. It waits
// for an asynchronous outcome; it does not measure time.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var _ = context.Background
var _ = fmt.Sprintf

var smtpErr550 = smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}

type netipPrefix = netip.Prefix

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
