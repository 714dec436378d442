package gateway

import (
	"bytes"
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
// CRLF, dot-stuffing intact, and one MAIL per message (the gateway as the
// "A" side of smuggling).
func TestRelayedBytesAreClean(t *testing.T) {
	m := startMTA(t)
	g := startGateway(t, testConfig(), m, nil)
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
	if !bytes.Contains(raw, []byte("\r\n..\r\n...\r\n.. \r\n..x\r\n")) {
		t.Errorf("dot-stuffing not applied on the relay connection:\n%q", raw)
	}
	if n := bytes.Count(bytes.ToUpper(raw), []byte("MAIL FROM:")); n != 1 {
		t.Errorf("%d MAIL commands on the relay connection, want 1", n)
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
