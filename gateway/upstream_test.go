package gateway

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
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
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := startMTA(t)
			addrs := tc.setup(t, m)
			up := NewSMTPUpstream(SMTPUpstreamConfig{Addrs: addrs, Helo: "mx.test",
				ConnectTimeout: time.Second, CommandTimeout: 500 * time.Millisecond, DataTimeout: 500 * time.Millisecond, MaxIdle: 2})
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
	m.srv.Close()
	l, err := net.Listen("tcp", m.addr)
	if err != nil {
		t.Fatalf("cannot rebind %s: %v", m.addr, err)
	}
	srv2 := smtp.NewServer(mtaBackend{m})
	srv2.ErrorLog = logDiscard{}
	go srv2.Serve(l)
	defer srv2.Close()
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
