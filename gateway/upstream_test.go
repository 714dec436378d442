package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/gatewayd/policy"
)

// freeAddr returns a loopback address where nothing listens.
func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

func codeOf(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	if err == nil {
		return 250
	}
	return -1
}

// TestUpstreamFaults: whatever the internal MTA does, nothing accepted is
// lost: the sender gets 250 only if the message is at the internal MTA,
// and a 4xx for every failure of ours or of the MTA's transport.
func TestUpstreamFaults(t *testing.T) {
	cases := []struct {
		name     string
		setup    func(t *testing.T, m *mta) []string // returns upstream addrs
		wantCode int
		wantText string
		stored   int // messages at the MTA afterwards
	}{
		{"upstream down", func(t *testing.T, m *mta) []string { return []string{freeAddr(t)} }, 451, "", 0},
		{"failover to the second address", func(t *testing.T, m *mta) []string { return []string{freeAddr(t), m.addr} }, 250, "", 1},
		{"recipient refused 5xx", func(t *testing.T, m *mta) []string {
			m.setRcptReply(func(string) error { return &smtpErr550 })
			return []string{m.addr}
		}, 550, "No such user", 0},
		{"recipient deferred 4xx", func(t *testing.T, m *mta) []string {
			m.setRcptReply(func(string) error {
				return &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "Mailbox busy"}
			})
			return []string{m.addr}
		}, 450, "Mailbox busy", 0},
		{"4xx at end of DATA", func(t *testing.T, m *mta) []string {
			m.setDataReply(func([]byte, *smtp.Conn) error {
				return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "Out of disk"}
			})
			return []string{m.addr}
		}, 452, "Out of disk", 0},
		{"5xx at end of DATA", func(t *testing.T, m *mta) []string {
			m.setDataReply(func([]byte, *smtp.Conn) error {
				return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Content refused"}
			})
			return []string{m.addr}
		}, 554, "Content refused", 0},
		{"connection dropped mid-DATA", func(t *testing.T, m *mta) []string {
			m.setDataReply(func(_ []byte, c *smtp.Conn) error {
				c.Conn().Close()
				return errors.New("dropped")
			})
			return []string{m.addr}
		}, 451, "", 0},
		{"stall past the deadline", func(t *testing.T, m *mta) []string {
			m.setDataReply(func(_ []byte, c *smtp.Conn) error {
				time.Sleep(1500 * time.Millisecond)
				return &smtp.SMTPError{Code: 554, Message: "too late"}
			})
			return []string{m.addr}
		}, 451, "", 0},
	}
	for _, mode := range relayModes {
		for _, tc := range cases {
			t.Run(mode.name+"/"+tc.name, func(t *testing.T) {
				m := startMTA(t)
				addrs := tc.setup(t, m)
				up := NewSMTPUpstream(SMTPUpstreamConfig{Addrs: addrs, Helo: "mx.test",
					ConnectTimeout: time.Second, CommandTimeout: 500 * time.Millisecond, DataTimeout: 500 * time.Millisecond, MaxIdle: 2,
					NoPipelining: mode.noPipelining, NoChunking: mode.noChunking})
				g := startGatewayUpstream(t, testConfig(), up, m, nil)
				err := sendMail(g.addr, "a@sender.test", []string{"bob@example.com"}, simpleMsg)
				code := codeOf(err)
				if code != tc.wantCode {
					t.Fatalf("sender got %v (code %d), want %d", err, code, tc.wantCode)
				}
				if tc.wantText != "" {
					var se *smtp.SMTPError
					if !errors.As(err, &se) || se.Message != tc.wantText {
						t.Errorf("sender got text %v, want the internal MTA's %q", err, tc.wantText)
					}
				}
				if got := len(m.messages()); got != tc.stored {
					t.Errorf("internal MTA holds %d messages, want %d", got, tc.stored)
				}
				// Nothing lost: 250 only with the message stored upstream.
				if code == 250 && len(m.messages()) == 0 {
					t.Fatal("250 to the sender without the message at the internal MTA")
				}
			})
		}
	}
}

// relayModes are the ways the relay can talk to the internal MTA: MAIL
// pipelined with RCPT and the message in one BDAT (the default when the MTA
// offers PIPELINING and CHUNKING), pipelined with DATA, and lockstep.
var relayModes = []struct {
	name                     string
	noPipelining, noChunking bool
}{
	{"bdat", false, false},
	{"data", false, true},
	{"lockstep", true, true},
}

// TestUpstreamPoolReuse: connections are reused between transactions, and a
// pooled connection that went stale (the MTA restarted) is replaced without
// the sender noticing.
func TestUpstreamPoolReuse(t *testing.T) {
	m := startMTA(t)
	g := startGateway(t, testConfig(), m, nil)
	for i := 0; i < 3; i++ {
		if err := sendMail(g.addr, "a@sender.test", []string{"bob@example.com"}, simpleMsg); err != nil {
			t.Fatal(err)
		}
	}
	m.mu.Lock()
	sessions := m.sessions
	m.mu.Unlock()
	if sessions != 1 {
		t.Errorf("internal MTA saw %d connections for 3 messages, want 1 (pooled)", sessions)
	}
	// Restart the MTA on the same address: the pooled connection is dead.
	restartMTA(t, m)
	if err := sendMail(g.addr, "a@sender.test", []string{"bob@example.com"}, simpleMsg); err != nil {
		t.Fatalf("after the MTA restarted: %v", err)
	}
	if n := len(m.messages()); n != 4 {
		t.Errorf("internal MTA holds %d messages, want 4", n)
	}
}

// TestUpstreamAbortedTransactionReset: a transaction that ends without DATA
// is reset upstream before the connection is reused.
func TestUpstreamAbortedTransactionReset(t *testing.T) {
	m := startMTA(t)
	g := startGateway(t, testConfig(), m, nil)
	dialog(t, g.addr, `
		< 220
		> EHLO client.test
		< 250
		> MAIL FROM:<first@sender.test>
		< 250
		> RCPT TO:<bob@example.com>
		< 250
		> RSET
		< 250
		> MAIL FROM:<second@sender.test>
		< 250
		> RCPT TO:<carol@example.com>
		< 250
		> DATA
		< 354
		>> "Subject: x\r\n\r\nbody\r\n.\r\n"
		< 250
		> QUIT
		< 221`)
	msgs := m.messages()
	if len(msgs) != 1 || msgs[0].From != "second@sender.test" || len(msgs[0].Rcpts) != 1 || msgs[0].Rcpts[0] != "carol@example.com" {
		t.Fatalf("internal MTA got %+v", msgs)
	}
}

// TestUpstreamMailRefused: the internal MTA's refusal of MAIL reaches the
// sender (at RCPT, where the gateway opens the upstream transaction), and
// the next RCPT of the same transaction tries MAIL again.
func TestUpstreamMailRefused(t *testing.T) {
	for _, mode := range relayModes {
		t.Run(mode.name, func(t *testing.T) {
			m := startMTA(t)
			refused := 0
			m.setMailReply(func(string) error {
				if refused++; refused == 1 {
					return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Not now"}
				}
				return nil
			})
			g := startGatewayMode(t, testConfig(), m, nil, mode.noPipelining, mode.noChunking)
			dialog(t, g.addr, `
				< 220
				> EHLO client.test
				< 250
				> MAIL FROM:<a@sender.test>
				< 250
				> RCPT TO:<bob@example.com>
				< 451 4.3.2 Not now
				> RCPT TO:<carol@example.com>
				< 250 2.1.5
				> DATA
				< 354
				>> "Subject: x\r\n\r\nbody\r\n.\r\n"
				< 250 2.0.0
				> QUIT
				< 221`)
			msgs := m.messages()
			if len(msgs) != 1 || len(msgs[0].Rcpts) != 1 || msgs[0].Rcpts[0] != "carol@example.com" {
				t.Fatalf("internal MTA got %+v", msgs)
			}
			if froms := m.mailFroms(); len(froms) != 2 {
				t.Errorf("MTA saw MAIL %d times (%v), want 2: refused, then again", len(froms), froms)
			}
		})
	}
}

// scriptedMTA is a minimal SMTP server over TCP with canned replies, for
// MTAs go-smtp cannot play: one that refuses EHLO, and one answering in
// multi-line replies. It records what it read. A reply is written with
// writeParts when it has a NUL (a pause).
func scriptedMTA(t *testing.T, reply func(line string) string) (addr string, got func() string) {
	t.Helper()
	return scriptedMTAData(t, reply, nil)
}

// scriptedMTAData is scriptedMTA with the replies to the end of each
// message given by endOfData (message n, counting from 1, over every
// connection); nil answers a multi-line 250.
func scriptedMTAData(t *testing.T, reply func(line string) string, endOfData func(n int) string) (addr string, got func() string) {
	t.Helper()
	var messages atomic.Int32
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var mu sync.Mutex
	var seen strings.Builder
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.Write([]byte("220-internal.test\r\n220 ready\r\n"))
				r := bufio.NewReader(c)
				inData := false
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					mu.Lock()
					seen.WriteString(line)
					mu.Unlock()
					if inData {
						if line == ".\r\n" {
							inData = false
							out := "250-2.0.0 queued\r\n250 2.0.0 as X1\r\n"
							if endOfData != nil {
								out = endOfData(int(messages.Add(1)))
							}
							writeParts(c, out)
						}
						continue
					}
					if f := strings.Fields(line); len(f) >= 2 && strings.EqualFold(f[0], "BDAT") && endOfData != nil {
						n, _ := strconv.Atoi(f[1])
						if _, err := io.CopyN(io.Discard, r, int64(n)); err != nil {
							return
						}
						writeParts(c, endOfData(int(messages.Add(1))))
						continue
					}
					out := reply(strings.TrimRight(line, "\r\n"))
					if strings.HasPrefix(out, "354") {
						inData = true
					}
					if strings.Contains(out, "\x00") {
						writeParts(c, out)
					} else {
						c.Write([]byte(out))
					}
					if strings.HasPrefix(out, "221") {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String(), func() string { mu.Lock(); defer mu.Unlock(); return seen.String() }
}

// TestUpstreamOldMTA: an MTA that refuses EHLO gets HELO and a lockstep
// DATA transaction (no extensions, so no pipelining, no BDAT, no SIZE);
// its multi-line replies are read whole.
func TestUpstreamOldMTA(t *testing.T) {
	addr, seen := scriptedMTA(t, func(line string) string {
		switch verb, _, _ := strings.Cut(strings.ToUpper(line), " "); verb {
		case "EHLO":
			return "502 5.5.1 unrecognized\r\n"
		case "HELO", "MAIL", "RCPT", "RSET":
			return "250 ok\r\n"
		case "DATA":
			return "354 go ahead\r\n"
		case "QUIT":
			return "221 bye\r\n"
		}
		return "500 what\r\n"
	})
	up := NewSMTPUpstream(SMTPUpstreamConfig{Addrs: []string{addr}, Helo: "mx.test",
		ConnectTimeout: 2 * time.Second, CommandTimeout: 2 * time.Second, DataTimeout: 2 * time.Second, MaxIdle: 2})
	g := startGatewayUpstream(t, testConfig(), up, nil, nil)
	dialog(t, g.addr, untilData+`
		>> "Subject: x\r\n\r\n..dot\r\n.\r\n"
		< 250 2.0.0
		> QUIT
		< 221`)
	up.Close()
	got := seen()
	for _, want := range []string{"EHLO mx.test\r\nHELO mx.test\r\nMAIL FROM:<a@sender.test>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n", "\r\n..dot\r\n.\r\n", "QUIT\r\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("MTA did not read %q; it read:\n%s", want, got)
		}
	}
	if strings.Contains(got, "SIZE=") || strings.Contains(got, "BDAT") {
		t.Errorf("extension used with an MTA that offers none:\n%s", got)
	}
}

func TestParseReply(t *testing.T) {
	cases := []struct {
		code int
		msg  string
		want policy.Reply
	}{
		{250, "2.1.5 OK", policy.Reply{Code: 250, Enhanced: "2.1.5", Text: "OK"}},
		{550, "5.1.1 No such user\n5.1.1 see our policy", policy.Reply{Code: 550, Enhanced: "5.1.1", Text: "No such user see our policy"}},
		// A code of another class is dropped; a missing one is the class's.
		{550, "4.1.1 class differs", policy.Reply{Code: 550, Enhanced: "5.0.0", Text: "class differs"}},
		{451, "try later", policy.Reply{Code: 451, Enhanced: "4.0.0", Text: "try later"}},
		{554, "", policy.Reply{Code: 554, Enhanced: "5.0.0", Text: "(no text)"}},
		{554, "5.7.1", policy.Reply{Code: 554, Enhanced: "5.7.1", Text: "(no text)"}},
		{552, "5.3.4 too\tbig\x01", policy.Reply{Code: 552, Enhanced: "5.3.4", Text: "too big "}},
		{550, "5.1000.1 bad code", policy.Reply{Code: 550, Enhanced: "5.0.0", Text: "5.1000.1 bad code"}},
		{250, "2.+1.0 ok", policy.Reply{Code: 250, Enhanced: "2.0.0", Text: "2.+1.0 ok"}},
		// Our reply line stays within RFC 5321's 512 octets, cut at a
		// UTF-8 boundary.
		{550, "5.1.1 " + strings.Repeat("é", 300), policy.Reply{Code: 550, Enhanced: "5.1.1", Text: strings.Repeat("é", 200)}},
		{550, "5.1.1 a\n" + strings.Repeat("5.1.1 line\n", 100) + "5.1.1 end", policy.Reply{Code: 550, Enhanced: "5.1.1",
			Text: policy.Truncate("a"+strings.Repeat(" line", 100), maxRelayedText)}},
		// A first line past the bound is the whole text, as with one
		// line: what follows it is not read, even when the first line
		// is all space.
		{550, strings.Repeat(" ", 401) + "\nhidden", policy.Reply{Code: 550, Enhanced: "5.0.0", Text: "(no text)"}},
		{550, "5.1.1 a" + strings.Repeat(" ", 400) + "\n5.1.1 hidden", policy.Reply{Code: 550, Enhanced: "5.1.1", Text: "a"}},
	}
	for _, c := range cases {
		if got := parseReply(c.code, c.msg); got != c.want {
			t.Errorf("parseReply(%d, %q) = %+v, want %+v", c.code, c.msg, got, c.want)
		}
	}
}

// FuzzParseReply: whatever an internal MTA answers, the reply passed on to
// a sender is one line of printable text.
func FuzzParseReply(f *testing.F) {
	f.Add(250, "2.0.0 ok\nmore")
	f.Add(550, "5.1.1\x00\r")
	f.Fuzz(func(t *testing.T, code int, msg string) {
		r := parseReply(code, msg)
		if r.Text == "" {
			t.Fatal("empty text")
		}
		for _, c := range r.Text + r.Enhanced {
			if c < 0x20 || c == 0x7f {
				t.Fatalf("control character in %+v", r)
			}
		}
		if len(r.Text) > maxRelayedText {
			t.Fatalf("text of %d octets", len(r.Text))
		}
		if utf8.ValidString(msg) && !utf8.ValidString(r.Text) {
			t.Fatalf("valid UTF-8 cut in the middle of a character: %q", r.Text)
		}
		if code >= 200 && code <= 599 && (!looksEnhanced(r.Enhanced) || r.Enhanced[0] != byte('0'+code/100)) {
			t.Fatalf("enhanced code %q for %d", r.Enhanced, code)
		}
	})
}

// TestUpstreamStartTLS: with starttls require the relay starts TLS before
// MAIL and verifies the MTA's certificate; an MTA that does not offer
// STARTTLS, or whose certificate does not verify, gets nothing and the
// sender a 4xx.
func TestUpstreamStartTLS(t *testing.T) {
	cert := selfSigned(t)
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	cases := []struct {
		name     string
		mtaTLS   bool
		roots    *x509.CertPool
		wantCode int
	}{
		{"verified", true, roots, 250},
		{"not offered", false, roots, 451},
		{"unknown certificate", true, x509.NewCertPool(), 451},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := startMTA(t)
			if tc.mtaTLS {
				m.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
			}
			up := NewSMTPUpstream(SMTPUpstreamConfig{Addrs: []string{m.addr}, Helo: "mx.test",
				ConnectTimeout: 2 * time.Second, CommandTimeout: 2 * time.Second, DataTimeout: 2 * time.Second, MaxIdle: 2,
				StartTLS: "require", TLSConfig: &tls.Config{RootCAs: tc.roots, ServerName: "mx.test"}})
			g := startGatewayUpstream(t, testConfig(), up, m, nil)
			code := codeOf(sendMail(g.addr, "a@sender.test", []string{"bob@example.com"}, simpleMsg))
			if code != tc.wantCode {
				t.Fatalf("sender got %d, want %d", code, tc.wantCode)
			}
			raw := string(m.rawBytes())
			if tc.wantCode == 250 {
				if len(m.messages()) != 1 {
					t.Fatal("message not at the MTA")
				}
				// The MTA's debug copy shows the dialog decrypted: STARTTLS
				// answered, then EHLO again, then MAIL.
				tlsAt, mailAt := strings.Index(raw, "STARTTLS\r\n220 "), strings.Index(raw, "MAIL FROM")
				if tlsAt < 0 || mailAt < tlsAt || !strings.Contains(raw[tlsAt:mailAt], "EHLO mx.test") {
					t.Errorf("MAIL not after STARTTLS and a new EHLO:\n%s", raw)
				}
			}
			if tc.wantCode != 250 && strings.Contains(raw, "MAIL FROM") {
				t.Errorf("MAIL sent without TLS:\n%s", raw)
			}
		})
	}
}

// TestUpstreamLargeMessage: a message held in a temporary file (larger than
// the memory threshold, many times the relay's buffers) reaches the MTA
// octet for octet in every relay mode, lines starting with dots included.
func TestUpstreamLargeMessage(t *testing.T) {
	var body strings.Builder
	for i := 0; body.Len() < 300<<10; i++ {
		if i%50 == 0 {
			body.WriteString(".a line that starts with a dot\r\n")
		}
		body.WriteString("Line " + strings.Repeat("x", i%90) + "\r\n")
	}
	msg := "Subject: big\r\n\r\n" + body.String()
	for _, held := range []struct {
		name      string
		threshold int
	}{{"file", 4096}, {"memory", 1 << 20}} {
		for _, mode := range relayModes {
			t.Run(held.name+"/"+mode.name, func(t *testing.T) {
				m := startMTA(t)
				cfg := testConfig()
				cfg.MemoryThreshold = held.threshold
				cfg.MaxMessageSize = 1 << 20
				g := startGatewayMode(t, cfg, m, nil, mode.noPipelining, mode.noChunking)
				if err := sendMail(g.addr, "a@sender.test", []string{"bob@example.com"}, msg); err != nil {
					t.Fatal(err)
				}
				msgs := m.messages()
				if len(msgs) != 1 {
					t.Fatalf("MTA holds %d messages", len(msgs))
				}
				if !strings.HasSuffix(string(msgs[0].Data), msg) {
					t.Fatalf("relayed message differs (%d octets at the MTA, %d sent)", len(msgs[0].Data), len(msg))
				}
			})
		}
	}
}

// TestUpstreamReuseAfterRefusal: after the MTA refused a message at its
// end (BDAT LAST or the final dot) or refused a recipient, the pooled
// connection is in a clean state and carries the next message.
func TestUpstreamReuseAfterRefusal(t *testing.T) {
	for _, mode := range relayModes {
		t.Run(mode.name, func(t *testing.T) {
			m := startMTA(t)
			g := startGatewayMode(t, testConfig(), m, nil, mode.noPipelining, mode.noChunking)
			m.setDataReply(func([]byte, *smtp.Conn) error {
				return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Content refused"}
			})
			if code := codeOf(sendMail(g.addr, "a@sender.test", []string{"bob@example.com"}, simpleMsg)); code != 554 {
				t.Fatalf("first message: %d, want the MTA's 554", code)
			}
			m.setDataReply(nil)
			m.setRcptReply(func(to string) error {
				if to == "nobody@example.com" {
					return &smtpErr550
				}
				return nil
			})
			if err := sendMail(g.addr, "a@sender.test", []string{"nobody@example.com", "bob@example.com"}, simpleMsg); err == nil {
				t.Fatal("want the refusal of nobody@ reported")
			}
			// The sender hung up after the refusal; the session resets the
			// upstream transaction (RSET) and pools the connection after
			// that, which the next message must not overtake.
			up := g.srv.upstream.Load().u.(*SMTPUpstream)
			waitFor(t, "the upstream connection back in the pool", func() bool {
				up.mu.Lock()
				defer up.mu.Unlock()
				return len(up.idle) == 1
			})
			if err := sendMail(g.addr, "a@sender.test", []string{"bob@example.com"}, simpleMsg); err != nil {
				t.Fatalf("message after refusals: %v", err)
			}
			msgs := m.messages()
			if len(msgs) != 1 || msgs[0].Rcpts[0] != "bob@example.com" || len(msgs[0].Rcpts) != 1 {
				t.Fatalf("MTA holds %+v", msgs)
			}
			m.mu.Lock()
			sessions := m.sessions
			m.mu.Unlock()
			if sessions != 1 {
				t.Errorf("MTA saw %d connections, want 1 (reused after each refusal)", sessions)
			}
		})
	}
}

// TestUpstream421: an MTA that answers 421 is closing the connection. On a
// pooled connection (an MTA timing it out, say) the transaction starts
// over on a new one and the sender sees nothing; on a new connection the
// sender gets our 451, never the 421 that would tell it to hang up.
func TestUpstream421(t *testing.T) {
	closing := &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Timeout, closing"}
	for _, mode := range relayModes {
		t.Run(mode.name, func(t *testing.T) {
			m := startMTA(t)
			g := startGatewayMode(t, testConfig(), m, nil, mode.noPipelining, mode.noChunking)
			if err := sendMail(g.addr, "a@sender.test", []string{"bob@example.com"}, simpleMsg); err != nil {
				t.Fatal(err)
			}
			var once atomic.Bool
			m.setMailReply(func(string) error {
				if once.CompareAndSwap(false, true) {
					return closing
				}
				return nil
			})
			if err := sendMail(g.addr, "a@sender.test", []string{"bob@example.com"}, simpleMsg); err != nil {
				t.Fatalf("421 on the pooled connection reached the sender: %v", err)
			}
			if n := len(m.messages()); n != 2 {
				t.Fatalf("MTA holds %d messages, want 2", n)
			}
			m.setMailReply(func(string) error { return closing })
			if code := codeOf(sendMail(g.addr, "a@sender.test", []string{"bob@example.com"}, simpleMsg)); code != 451 {
				t.Fatalf("MTA always answering 421: sender got %d, want 451", code)
			}
		})
	}
}

// writeParts writes s, pausing 20 ms at each NUL (which is not written):
// a reply that arrives after the one before was read.
func writeParts(c net.Conn, s string) {
	for i, part := range strings.Split(s, "\x00") {
		if i > 0 {
			time.Sleep(20 * time.Millisecond)
		}
		c.Write([]byte(part))
	}
	partsWritten.Add(1)
}

// partsWritten counts writeParts calls done: a test waits on it for a
// late reply to be in the gateway's socket, rather than sleep and hope.
var partsWritten atomic.Int64

// plainMTA answers like an MTA offering PIPELINING, and CHUNKING when
// chunking (BDAT LAST only), with rcpt as the reply to RCPT ("" for 250).
func plainMTA(rcpt string, chunking bool) func(line string) string {
	return func(line string) string {
		switch cmd := strings.ToUpper(line); {
		case strings.HasPrefix(cmd, "EHLO") && chunking:
			return "250-internal.test\r\n250-CHUNKING\r\n250 PIPELINING\r\n"
		case strings.HasPrefix(cmd, "EHLO"):
			return "250-internal.test\r\n250 PIPELINING\r\n"
		case strings.HasPrefix(cmd, "RCPT") && rcpt != "":
			return rcpt
		case strings.HasPrefix(cmd, "DATA"):
			return "354 go ahead\r\n"
		case strings.HasPrefix(cmd, "QUIT"):
			return "221 bye\r\n"
		}
		return "250 2.0.0 OK\r\n"
	}
}

// TestUpstreamExtraReplyNotReused: an MTA that sends a reply too many is
// out of step with us; its connection must not carry the next message,
// whose replies would be read one behind (the sender told 250 for a
// message the MTA refused).
func TestUpstreamExtraReplyNotReused(t *testing.T) {
	for _, c := range []struct {
		name     string
		chunking bool
		extra    string // "\x00" first: it arrives after the reply was read
	}{
		{"bdat", true, "250 2.0.0 queued again\r\n"},
		{"data", false, "250 2.0.0 queued again\r\n"},
		{"bdat, arriving later", true, "\x00250 2.0.0 queued again\r\n"},
	} {
		chunking := c.chunking
		t.Run(c.name, func(t *testing.T) {
			addr, _ := scriptedMTAData(t, plainMTA("", chunking), func(n int) string {
				if n == 1 {
					return "250 2.0.0 queued\r\n" + c.extra
				}
				return "554 5.6.0 refused\r\n"
			})
			up := NewSMTPUpstream(SMTPUpstreamConfig{Addrs: []string{addr}, Helo: "mx.test", MaxIdle: 4,
				CommandTimeout: 5 * time.Second})
			g := startGatewayUpstream(t, testConfig(), up, nil, nil)
			before := partsWritten.Load()
			if err := sendMail(g.addr, "a@sender.test", []string{"bob@example.com"}, simpleMsg); err != nil {
				t.Fatal(err)
			}
			// The extra reply is in the gateway's socket once written
			// (loopback). One arriving after the next transaction began
			// cannot be told from that transaction's own replies.
			waitFor(t, "the extra reply to be written", func() bool { return partsWritten.Load() > before })
			if code := codeOf(sendMail(g.addr, "a@sender.test", []string{"bob@example.com"}, simpleMsg)); code != 554 {
				t.Fatalf("second message: sender got %d, want the MTA's 554", code)
			}
		})
	}
}

// TestUpstreamOddReplies: a reply that is no SMTP reply to the command (a
// 354 or 1xx to the end of the message or to RCPT, a 6xx) is a protocol
// error: the sender gets a 4xx, never the odd code.
func TestUpstreamOddReplies(t *testing.T) {
	for _, c := range []struct{ name, rcpt, end string }{
		{"354 at end of data", "", "354 2.0.0 send more\r\n"},
		{"199 at end of data", "", "199 hmm\r\n"},
		{"600 at end of data", "", "600 6.0.0 what\r\n"},
		{"354 to RCPT", "354 go ahead\r\n", ""},
		{"600 to RCPT", "600 6.0.0 what\r\n", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr, _ := scriptedMTAData(t, plainMTA(c.rcpt, true), func(int) string {
				if c.end != "" {
					return c.end
				}
				return "250 2.0.0 queued\r\n"
			})
			up := NewSMTPUpstream(SMTPUpstreamConfig{Addrs: []string{addr}, Helo: "mx.test", MaxIdle: 4,
				CommandTimeout: 5 * time.Second})
			g := startGatewayUpstream(t, testConfig(), up, nil, nil)
			err := sendMail(g.addr, "a@sender.test", []string{"bob@example.com"}, simpleMsg)
			if code := codeOf(err); code/100 != 4 {
				t.Fatalf("sender got %d (%v), want a 4xx", code, err)
			}
		})
	}
}

// TestUpstreamClosedPool: a connection given back after Close (a reload
// replaced the upstream while a session used it) is closed, not pooled.
func TestUpstreamClosedPool(t *testing.T) {
	m := startMTA(t)
	up := NewSMTPUpstream(SMTPUpstreamConfig{Addrs: []string{m.addr}, Helo: "mx.test", MaxIdle: 4})
	c, err := up.get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	up.Close()
	up.put(c)
	up.mu.Lock()
	n := len(up.idle)
	up.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d connections pooled after Close", n)
	}
	c.conn.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := c.conn.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("connection given back after Close still open: %v", err)
	}
}

// TestShutdownDuringUpstreamRcpt: an MTA that never answers RCPT does not
// hold a Shutdown past its deadline for the command timeout (an hour
// here): the session's context ends the wait.
func TestShutdownDuringUpstreamRcpt(t *testing.T) {
	reply := plainMTA("", false)
	addr, got := scriptedMTA(t, func(line string) string {
		if strings.HasPrefix(strings.ToUpper(line), "RCPT") {
			return "" // never answered
		}
		return reply(line)
	})
	up := NewSMTPUpstream(SMTPUpstreamConfig{Addrs: []string{addr}, Helo: "mx.test", MaxIdle: 4,
		CommandTimeout: time.Hour})
	g := startGatewayUpstream(t, testConfig(), up, nil, nil)
	c, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "EHLO client.test\r\nMAIL FROM:<a@sender.test>\r\nRCPT TO:<bob@example.com>\r\n")
	waitFor(t, "the MTA reading RCPT", func() bool { return strings.Contains(got(), "RCPT TO") })
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		done <- g.srv.Shutdown(ctx)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Shutdown still waiting for the upstream's RCPT reply")
	}
}

// TestUpstreamStalePoolAfterRestart: after an MTA restart every pooled
// connection is dead; they are found so before use (the MTA closed them),
// and the message goes over a new one, not a 451.
func TestUpstreamStalePoolAfterRestart(t *testing.T) {
	m := startMTA(t)
	up := NewSMTPUpstream(SMTPUpstreamConfig{Addrs: []string{m.addr}, Helo: "mx.test", MaxIdle: 4})
	g := startGatewayUpstream(t, testConfig(), up, m, nil)
	var conns []*upConn
	for range 3 {
		c, err := up.get(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		up.put(c)
	}
	restartMTA(t, m)
	time.Sleep(50 * time.Millisecond) // the old connections' FINs have arrived
	if err := sendMail(g.addr, "a@sender.test", []string{"bob@example.com"}, simpleMsg); err != nil {
		t.Fatalf("after the MTA restarted with %d pooled connections: %v", len(conns), err)
	}
}

// holdConn buffers writes while hold is set, so that several TLS records
// leave in one TCP segment.
type holdConn struct {
	net.Conn
	mu   sync.Mutex
	hold bool
	buf  bytes.Buffer
}

func (h *holdConn) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hold {
		return h.buf.Write(p)
	}
	return h.Conn.Write(p)
}

func (h *holdConn) flush() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hold = false
	h.Conn.Write(h.buf.Bytes())
	h.buf.Reset()
}

// TestUpstreamTLSExtraReplyNotReused: TestUpstreamExtraReplyNotReused over
// STARTTLS, the extra reply in its own TLS record of the same segment.
func TestUpstreamTLSExtraReplyNotReused(t *testing.T) {
	cert := selfSigned(t)
	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var messages, conns atomic.Int32
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer nc.Close()
				hc := &holdConn{Conn: nc}
				r := bufio.NewReader(nc)
				io.WriteString(nc, "220 mx.test\r\n")
				r.ReadString('\n') // EHLO
				io.WriteString(nc, "250-mx.test\r\n250 STARTTLS\r\n")
				r.ReadString('\n') // STARTTLS
				io.WriteString(nc, "220 go\r\n")
				tc := tls.Server(hc, &tls.Config{Certificates: []tls.Certificate{cert}})
				if tc.Handshake() != nil {
					return
				}
				r = bufio.NewReader(tc)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					f := strings.Fields(line)
					switch cmd := strings.ToUpper(f[0]); cmd {
					case "EHLO":
						io.WriteString(tc, "250-mx.test\r\n250-PIPELINING\r\n250 CHUNKING\r\n")
					case "BDAT":
						n, _ := strconv.Atoi(f[1])
						io.CopyN(io.Discard, r, int64(n))
						if messages.Add(1) == 1 {
							hc.mu.Lock()
							hc.hold = true
							hc.mu.Unlock()
							io.WriteString(tc, "250 2.0.0 queued\r\n")
							io.WriteString(tc, "250 2.0.0 queued again\r\n")
							hc.flush()
						} else {
							io.WriteString(tc, "554 5.6.0 refused\r\n")
						}
					case "QUIT":
						io.WriteString(tc, "221 bye\r\n")
						return
					default:
						io.WriteString(tc, "250 2.0.0 OK\r\n")
					}
				}
			}()
		}
	}()
	up := NewSMTPUpstream(SMTPUpstreamConfig{Addrs: []string{l.Addr().String()}, Helo: "mx.test", MaxIdle: 4,
		CommandTimeout: 5 * time.Second, StartTLS: "require",
		TLSConfig: &tls.Config{RootCAs: roots, ServerName: "mx.test"}})
	g := startGatewayUpstream(t, testConfig(), up, nil, nil)
	if err := sendMail(g.addr, "a@sender.test", []string{"bob@example.com"}, simpleMsg); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if code := codeOf(sendMail(g.addr, "a@sender.test", []string{"bob@example.com"}, simpleMsg)); code != 554 {
		t.Fatalf("second message: sender got %d, want the MTA's 554 (MTA connections: %d)", code, conns.Load())
	}
}

// TestUpstreamPoolAfterReset: a connection given back after an aborted
// transaction (RSET within min(command timeout, 5 s)) is reused while
// younger than IdleTimeout.
func TestUpstreamPoolAfterReset(t *testing.T) {
	m := startMTA(t)
	up := NewSMTPUpstream(SMTPUpstreamConfig{Addrs: []string{m.addr}, Helo: "mx.test", MaxIdle: 4,
		CommandTimeout: 200 * time.Millisecond, IdleTimeout: 30 * time.Second})
	defer up.Close()
	ctx := context.Background()
	from := Address{Local: "a", Domain: "sender.test"}
	tx, _, err := up.Begin(ctx, from, MailOpts{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Rcpt(ctx, Address{Local: "bob", Domain: "example.com"}); err != nil {
		t.Fatal(err)
	}
	tx.End() // aborted: RSET, deadline now+200ms left on the conn
	time.Sleep(400 * time.Millisecond)
	c, err := up.get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	if !c.pooled {
		t.Fatalf("a 400 ms idle connection (IdleTimeout 30s) was not reused: idleClean fails on its expired read deadline")
	}
}

// restartMTA stops m's server, closing its connections, and serves m
// again on the same address.
func restartMTA(t *testing.T, m *mta) {
	t.Helper()
	m.srv.Close()
	l, err := net.Listen("tcp", m.addr)
	if err != nil {
		t.Fatalf("cannot rebind %s: %v", m.addr, err)
	}
	srv2 := smtp.NewServer(mtaBackend{m})
	srv2.ErrorLog = logDiscard{}
	go srv2.Serve(l)
	t.Cleanup(func() { srv2.Close() })
}
