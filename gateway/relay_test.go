package gateway

import (
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

// startMTAUTF8 is startMTA for an internal MTA that offers SMTPUTF8.
func startMTAUTF8(t testing.TB) *mta {
	t.Helper()
	return startMTAWith(t, func(srv *smtp.Server) { srv.EnableSMTPUTF8 = true })
}

// TestUTF8RecipientNeedsUpstreamSMTPUTF8: a non-ASCII recipient is not sent
// as raw octets to an internal MTA that does not offer SMTPUTF8 (RFC 6531
// section 3.4), where it could be read as something else ("\u0165" is C5
// A5, "E%" once the eighth bit is stripped: a percent hack). The client
// gets 553 5.6.7, as for a non-ASCII sender; ASCII recipients still pass.
func TestUTF8RecipientNeedsUpstreamSMTPUTF8(t *testing.T) {
	for _, noPipelining := range []bool{false, true} {
		g := startGatewayMode(t, testConfig(), nil, nil, noPipelining, false)
		dialog(t, g.addr, `
			< 220
			> EHLO client.test
			< 250
			> MAIL FROM:<a@sender.test> SMTPUTF8
			< 250
			> RCPT TO:<bob`+"\u0165"+`evil.test@example.com>
			< 553 5.6.7
			> RCPT TO:<bob@example.com>
			< 250 2.1.5
			> QUIT
			< 221`)
		raw := string(g.mta.rawBytes())
		if strings.Contains(raw, "\u0165") {
			t.Errorf("noPipelining=%v: non-ASCII recipient sent to an MTA without SMTPUTF8:\n%s", noPipelining, raw)
		}
		if !strings.Contains(raw, "RCPT TO:<bob@example.com>") {
			t.Errorf("noPipelining=%v: ASCII recipient not relayed:\n%s", noPipelining, raw)
		}
	}
}

// TestUTF8RecipientRelayedWithSMTPUTF8: to an MTA that offers SMTPUTF8 the
// same recipient goes on, with SMTPUTF8 on MAIL.
func TestUTF8RecipientRelayedWithSMTPUTF8(t *testing.T) {
	g := startGateway(t, testConfig(), startMTAUTF8(t), nil)
	dialog(t, g.addr, `
		< 220
		> EHLO client.test
		< 250
		> MAIL FROM:<a@sender.test> SMTPUTF8
		< 250
		> RCPT TO:<j`+"\u00f6"+`rg@example.com>
		< 250 2.1.5
		> QUIT
		< 221`)
	raw := string(g.mta.rawBytes())
	if !strings.Contains(raw, "MAIL FROM:<a@sender.test> SMTPUTF8\r\n") || !strings.Contains(raw, "RCPT TO:<j\u00f6rg@example.com>\r\n") {
		t.Errorf("MTA got:\n%s", raw)
	}
}

// TestRelayDeniedForLookalikeRoutingChars: with SMTPUTF8, a local part may
// hold a compatibility form of "@", "%" or "!" (fullwidth, small, vertical,
// or a double mark); NFKC, which an SMTPUTF8 MTA may apply to local parts,
// makes it the routing character, so it is denied like the ASCII one and
// never reaches the internal MTA.
func TestRelayDeniedForLookalikeRoutingChars(t *testing.T) {
	g := startGateway(t, testConfig(), startMTAUTF8(t), nil)
	for _, r := range "\uff20\ufe6b\uff05\ufe6a\uff01\ufe57\ufe15\u203c\u2048\u2049" {
		dialog(t, g.addr, `
			< 220
			> EHLO client.test
			< 250
			> MAIL FROM:<a@sender.test> SMTPUTF8
			< 250
			> RCPT TO:<victim`+string(r)+`evil.test@example.com>
			< 550 5.7.1 Relay access denied
			> RCPT TO:<"victim`+string(r)+`evil.test"@example.com>
			< 550 5.7.1 Relay access denied
			> RCPT TO:<victim@example.com>
			< 250 2.1.5
			> QUIT
			< 221`)
	}
	if raw := string(g.mta.rawBytes()); strings.Contains(raw, "evil.test") {
		t.Errorf("MTA got a lookalike routing address:\n%s", raw)
	}
}

// TestRelayIDNAFullStops: a domain whose IDNA mapping ends in a root dot or
// holds an empty label is a syntax error, as its ASCII spelling is, not a
// domain sent on; one that maps to an accepted domain is that domain.
func TestRelayIDNAFullStops(t *testing.T) {
	g := startGateway(t, testConfig(), startMTAUTF8(t), nil)
	// {FS} is U+3002 IDEOGRAPHIC FULL STOP, {SHY} U+00AD SOFT HYPHEN.
	unicode := strings.NewReplacer("{FS}", "\u3002", "{SHY}", "\u00ad")
	dialog(t, g.addr, unicode.Replace(`
		< 220
		> EHLO client.test
		< 250
		> MAIL FROM:<a@sender.test{FS}> SMTPUTF8
		< 501 5.1.7
		> MAIL FROM:<a@{SHY}> SMTPUTF8
		< 501 5.1.7
		> MAIL FROM:<a@sender.test> SMTPUTF8
		< 250
		> RCPT TO:<bob@example.com.>
		< 501 5.1.3
		> RCPT TO:<bob@example.com{FS}>
		< 501 5.1.3
		> RCPT TO:<bob@{FS}example.com>
		< 501 5.1.3
		> RCPT TO:<bob@example{FS}com>
		< 250 2.1.5
		> QUIT
		< 221`))
	raw := string(g.mta.rawBytes())
	if !strings.Contains(raw, "RCPT TO:<bob@example.com>\r\n") || strings.Count(raw, "RCPT TO:") != 1 {
		t.Errorf("MTA got:\n%s", raw)
	}
}

// TestAddressLiteralSmugglesNoParameter: the brackets of an address literal
// hold an IP address and nothing else. Taken as written, a quote in them
// hid a ">" from our parser and not from the internal MTA's, which read
// what followed as parameters of the MAIL command we sent it.
func TestAddressLiteralSmugglesNoParameter(t *testing.T) {
	g := startGateway(t, testConfig(), nil, nil)
	dialog(t, g.addr, `
		< 220
		> EHLO client.test
		< 250
		> MAIL FROM:<a@[x"> NOTIFY=NEVER "]>
		< 501 5.1.7
		> MAIL FROM:<a@[192.0.2.1 x]>
		< 501 5.1.7
		> MAIL FROM:<a@[192.0.2.1]>
		< 250
		> RCPT TO:<bob@[x"> NOTIFY=NEVER "]>
		< 501 5.1.3
		> RCPT TO:<bob@example.com>
		< 250 2.1.5
		> QUIT
		< 221`)
	raw := string(g.mta.rawBytes())
	if strings.Contains(strings.ToUpper(raw), "NOTIFY") || !strings.Contains(raw, "MAIL FROM:<a@[192.0.2.1]>\r\n") {
		t.Errorf("MTA got:\n%s", raw)
	}
}
