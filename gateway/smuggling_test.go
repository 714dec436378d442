package gateway

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The SMTP smuggling end-of-data look-alikes (SEC Consult, December 2023;
// Hanno Böck's smtpsmug; the CR-condensation variants). Every one must stay
// content: one final reply for the one write, nothing from the smuggled
// sender at the internal MTA, and the message refused because it holds a
// bare CR, bare LF or NUL.
var smugglingSequences = []struct{ name, seq string }{
	{"lflf", "\n.\n"},
	{"lfcr", "\n.\r"},
	{"crlf-bare", "\r.\n"},
	{"crcr", "\r.\r"},
	{"lfcrlf", "\n.\r\n"},
	{"crcrlf", "\r.\r\n"},
	{"crlflf", "\r\n.\n"},
	{"crlfcr", "\r\n.\r"},
	{"nullbefore", "\r\n\x00.\r\n"},
	{"nullafter", "\r\n.\x00\r\n"},
	{"crlf-crcrlf", "\r\n.\r\r\n"},
	{"crcrlf-crcrlf", "\r\r\n.\r\r\n"},
	{"lf-only-line", "\r\n\n.\n"},
	{"dot-lf-after-crlf", "\r\n..\n"},
}

func TestSmugglingInbound(t *testing.T) {
	m := startMTA(t)
	g := startGateway(t, testConfig(), m, nil)
	for _, sq := range smugglingSequences {
		t.Run(sq.name, func(t *testing.T) {
			before := len(m.messages())
			write := "Subject: probe\r\n\r\nline before\r\n" + sq.seq +
				"mail FROM:<smuggled@test.example>\r\nrcpt TO:<bob@example.com>\r\ndata\r\n" +
				"Subject: smuggled\r\n\r\nsmuggled body\r\n.\r\n"
			dialog(t, g.addr, untilData+`
				>> `+strconv.Quote(write)+`
				< 550
				> QUIT
				< 221`)
			if len(m.messages()) != before {
				t.Errorf("a message with %q was relayed", sq.seq)
			}
			for _, f := range m.mailFroms() {
				if strings.Contains(f, "smuggled") {
					t.Fatalf("smuggled MAIL FROM reached the internal MTA")
				}
			}
		})
	}
	if !strings.Contains(g.log.String(), `"bare_newline"`) || !strings.Contains(g.log.String(), `"nul_octet"`) {
		t.Errorf("refusals not logged with their reason:\n%s", g.log.String())
	}
}

// TestRelayedBytesAreClean: what the gateway relays has every line ending in
// CRLF and one MAIL per message (the gateway as the "A" side of smuggling),
// in every relay mode: with BDAT the message goes unchanged in one chunk of
// the announced size; with DATA dot-stuffing is intact. Pipelining shows as
// MAIL and RCPT on the wire before the MTA's first reply to them.
func TestRelayedBytesAreClean(t *testing.T) {
	for _, mode := range relayModes {
		t.Run(mode.name, func(t *testing.T) {
			m := startMTA(t)
			g := startGatewayMode(t, testConfig(), m, nil, mode.noPipelining, mode.noChunking)
			msg := "Subject: dots\r\n\r\n.\r\n..\r\n. \r\n.x\r\nend\r\n"
			dialog(t, g.addr, untilData+`
				>> `+strconv.Quote(dotStuff(msg)+".\r\n")+`
				< 250 2.0.0
				> QUIT
				< 221`)
			msgs := m.messages()
			if len(msgs) != 1 {
				t.Fatalf("got %d messages", len(msgs))
			}
			if !strings.HasSuffix(string(msgs[0].Data), msg) {
				t.Errorf("relayed content differs:\n%q", msgs[0].Data)
			}
			raw := m.rawBytes()
			for i, c := range raw {
				if c == '\n' && (i == 0 || raw[i-1] != '\r') {
					t.Fatalf("bare LF on the relay connection at %d: %q", i, raw[max(0, i-20):i+1])
				}
				if c == '\r' && (i+1 >= len(raw) || raw[i+1] != '\n') {
					t.Fatalf("bare CR on the relay connection at %d", i)
				}
				if c == 0 {
					t.Fatalf("NUL on the relay connection")
				}
			}
			if n := bytes.Count(bytes.ToUpper(raw), []byte("MAIL FROM:")); n != 1 {
				t.Errorf("%d MAIL commands on the relay connection, want 1", n)
			}
			pipelined := regexp.MustCompile(`MAIL FROM:<a@sender.test>\r\nRCPT TO:<bob@example.com>\r\n250 `).Match(raw)
			if pipelined == mode.noPipelining {
				t.Errorf("MAIL and RCPT pipelined: %v, want %v:\n%q", pipelined, !mode.noPipelining, raw)
			}
			if mode.noChunking {
				if !bytes.Contains(raw, []byte("\r\n..\r\n...\r\n.. \r\n..x\r\nend\r\n.\r\n")) {
					t.Errorf("dot-stuffing not applied on the relay connection:\n%q", raw)
				}
				if bytes.Contains(raw, []byte("BDAT")) {
					t.Errorf("BDAT used with chunking off:\n%q", raw)
				}
				return
			}
			// One chunk, LAST, of exactly the message's size, the message unstuffed.
			bdat := regexp.MustCompile(`\r\nBDAT ([0-9]+) LAST\r\n`).FindSubmatchIndex(raw)
			if bdat == nil {
				t.Fatalf("no BDAT LAST on the relay connection:\n%q", raw)
			}
			n, _ := strconv.Atoi(string(raw[bdat[2]:bdat[3]]))
			chunk := raw[bdat[1]:min(len(raw), bdat[1]+n)]
			if string(chunk) != string(msgs[0].Data) {
				t.Errorf("BDAT chunk of %d octets is not the message the MTA stored:\n%q\n%q", n, chunk, msgs[0].Data)
			}
			// go-smtp copies a reply to its debug transcript after writing
			// it: the gateway, and this test, may see the reply first.
			waitFor(t, "the MTA's 250 after the chunk in its transcript", func() bool {
				raw := m.rawBytes()
				return len(raw) >= bdat[1]+n && bytes.HasPrefix(raw[bdat[1]+n:], []byte("250 "))
			})
		})
	}
}

func dotStuff(s string) string {
	lines := strings.SplitAfter(s, "\r\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ".") {
			lines[i] = "." + l
		}
	}
	return strings.Join(lines, "")
}
