package gateway

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestUpstreamExtraReplyInTransaction: an MTA that sends a reply too many
// inside a transaction (after RCPT, or after the 354 to DATA) is out of
// step with us: the reply to the message would be read one behind, and a
// stale 250 taken for the MTA's answer to a message it refused. The sender
// must get a 4xx, never 250.
func TestUpstreamExtraReplyInTransaction(t *testing.T) {
	for _, c := range []struct {
		name     string
		chunking bool
		rcpt     string // reply to RCPT ("" for 250)
		data     string // reply to DATA ("" for 354)
		late     bool   // the extra reply arrives after the one before was read
	}{
		{"bdat, after RCPT", true, "250 2.1.5 ok\r\n250 2.0.0 extra\r\n", "", false},
		{"bdat, after RCPT, arriving later", true, "250 2.1.5 ok\r\n\x00250 2.0.0 extra\r\n", "", true},
		{"data, after 354", false, "", "354 go ahead\r\n250 2.0.0 extra\r\n", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			base := plainMTA(c.rcpt, c.chunking)
			addr, _ := scriptedMTAData(t, func(line string) string {
				if c.data != "" && strings.HasPrefix(strings.ToUpper(line), "DATA") {
					return c.data
				}
				return base(line)
			}, func(int) string { return "554 5.6.0 refused\r\n" })
			up := NewSMTPUpstream(SMTPUpstreamConfig{Addrs: []string{addr}, Helo: "mx.test", MaxIdle: 4,
				CommandTimeout: 2 * time.Second, DataTimeout: 2 * time.Second})
			g := startGatewayUpstream(t, testConfig(), up, nil, nil)
			conn, err := net.Dial("tcp", g.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(20 * time.Second))
			r := bufio.NewReader(conn)
			reply := func() string {
				t.Helper()
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						t.Fatalf("reading reply: %v", err)
					}
					if len(line) >= 4 && line[3] == '-' {
						continue
					}
					return line
				}
			}
			reply() // greeting
			before := partsWritten.Load()
			for _, cmd := range []string{"EHLO client.test", "MAIL FROM:<a@sender.test>", "RCPT TO:<bob@example.com>"} {
				io.WriteString(conn, cmd+"\r\n")
				if got := reply(); !strings.HasPrefix(got, "250") {
					t.Fatalf("%s: %q", cmd, got)
				}
			}
			if c.late {
				// RCPT's reply with the extra one is in the gateway's
				// socket (loopback) before it sends BDAT.
				waitFor(t, "the extra reply to be written", func() bool { return partsWritten.Load() > before })
			}
			io.WriteString(conn, "DATA\r\n")
			if got := reply(); !strings.HasPrefix(got, "354") {
				t.Fatalf("DATA: %q", got)
			}
			io.WriteString(conn, simpleMsg+".\r\n")
			if got := reply(); !strings.HasPrefix(got, "4") {
				t.Fatalf("MTA refused the message (554) after an extra reply: sender got %q, want a 4xx", got)
			}
		})
	}
}
