package gateway

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"

	"github.com/miekg/dns"
	"github.com/mxgate/gatewayd/checks"
	"github.com/mxgate/gatewayd/greylist"
	"github.com/mxgate/gatewayd/internal/dnstest"
	"github.com/mxgate/gatewayd/internal/fakeclock"
	"github.com/mxgate/gatewayd/internal/redistest"
	"github.com/mxgate/gatewayd/policy"
)

type judgeEnv struct {
	dns   *dnstest.Server
	g     *testGateway
	j     *Judge
	clock *fakeclock.Clock
}

// judgeSetup is what startJudgedWith builds the checks from, for a test to
// change first.
type judgeSetup struct {
	zones    []checks.ZoneConfig
	greylist greylist.Config
}

// startJudged runs a gateway with every check on, against the test DNS
// server, greylisting in the given store (memory when redisAddr is "").
func startJudged(t *testing.T, redisAddr string, glOn bool) *judgeEnv {
	t.Helper()
	return startJudgedPolicy(t, redisAddr, glOn, DefaultPolicy)
}

// startJudgedPolicy is startJudged with the given policy; opts change the
// checks before the gateway starts.
func startJudgedPolicy(t *testing.T, redisAddr string, glOn bool, ev Evaluator, opts ...func(*Checks)) *judgeEnv {
	t.Helper()
	return startJudgedWith(t, redisAddr, glOn, ev, nil, opts...)
}

// startJudgedWith is startJudgedPolicy with the setup changed by adjust
// (when not nil) before the checks are built.
func startJudgedWith(t *testing.T, redisAddr string, glOn bool, ev Evaluator, adjust func(*judgeSetup), opts ...func(*Checks)) *judgeEnv {
	t.Helper()
	srv := dnstest.Start(t, "testdata/checks.zone")
	res, err := checks.NewResolver(checks.DNSConfig{Servers: []string{srv.Addr()}, Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	setup := judgeSetup{zones: []checks.ZoneConfig{
		{Zone: "zen.test"},
		{Zone: "wl.test", Type: checks.TypeAllow},
	}, greylist: greylist.DefaultConfig()}
	if adjust != nil {
		adjust(&setup)
	}
	bl, err := checks.NewDNSBL(checks.DNSBLConfig{Zones: setup.zones}, res, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	clock := fakeclock.New(time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC))
	c := Checks{Resolver: res, DNSBL: bl, SPF: checks.NewSPF(checks.SPFConfig{}, res),
		DKIM: checks.NewDKIM(checks.DKIMConfig{}, res), DMARC: checks.NewDMARC(checks.DMARCConfig{}, res), IPRev: true}
	if glOn {
		cfg := setup.greylist
		cfg.Enabled = true
		if redisAddr != "" {
			cfg.Redis.Addrs = []string{redisAddr}
		}
		gl, err := greylist.Open(cfg, greylist.WithClock(clock.Now))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { gl.Close() })
		c.Greylist = gl
	}
	for _, o := range opts {
		o(&c)
	}
	j := &Judge{Checks: c, Policy: func() Evaluator { return ev }, Logger: slog.New(slog.DiscardHandler), Hostname: "mx.test"}
	return &judgeEnv{dns: srv, g: startGateway(t, testConfig(), nil, j), j: j, clock: clock}
}

// sendFrom sends a message from a chosen loopback source address.
func sendFrom(src, addr, from string, to []string, msg string) error {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	c.CommandTimeout = 10 * time.Second
	if err := c.Hello("mail.client.test"); err != nil {
		return err
	}
	if err := c.SendMail(from, to, strings.NewReader(msg)); err != nil {
		return err
	}
	return c.Quit()
}

func TestDNSBLRefusesAtConnect(t *testing.T) {
	e := startJudged(t, "", false)
	err := sendFrom("127.0.0.2", e.g.addr, "a@sender.test", []string{"bob@example.com"}, simpleMsg)
	if err == nil || !strings.Contains(err.Error(), "554") || !strings.Contains(err.Error(), "Listed in test SBL") {
		t.Fatalf("want 554 with the zone's TXT reason, got %v", err)
	}
	if !strings.Contains(e.g.log.String(), `"stage":"connect","action":"reject"`) || !strings.Contains(e.g.log.String(), `"zone":"zen.test"`) {
		t.Errorf("decision log:\n%s", e.g.log.String())
	}
	// A Spamhaus-style error code is not a listing.
	if err := sendFrom("127.0.0.3", e.g.addr, "a@sender.test", []string{"bob@example.com"}, simpleMsg); err != nil {
		t.Fatalf("error code treated as a listing: %v", err)
	}
	if !strings.Contains(e.g.log.String(), `"status":"zoneerror"`) {
		t.Errorf("zone error not logged:\n%s", e.g.log.String())
	}
}

// TestIPRevOnlyWhenARuleReadsIt: with rules that refuse a DNSBL-listed
// client before any rule reads iprev, a listed client costs no reverse
// DNS lookup; a client that gets past them is looked up before the rule
// that reads iprev, which sees the result.
func TestIPRevOnlyWhenARuleReadsIt(t *testing.T) {
	dir := t.TempDir()
	rules := `rules:
  - name: listed
    stage: connect
    if: dnsbl_listed("zen.test")
    action: reject
    reply: {code: 554, enhanced: 5.7.1, text: "listed here"}
  - name: rdns_pass
    stage: connect
    if: iprev.result == "pass" && client_name == "mail.client.test"
    action: defer
    reply: {code: 421, enhanced: 4.7.0, text: "rdns seen"}
`
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	eng, err := policy.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := startJudgedPolicy(t, "", false, eng)

	err = sendFrom("127.0.0.2", e.g.addr, "a@sender.test", []string{"bob@example.com"}, simpleMsg)
	if err == nil || !strings.Contains(err.Error(), "listed here") {
		t.Fatalf("listed client: %v", err)
	}
	if n := e.dns.QueryCount("2.0.0.127.in-addr.arpa.", dns.TypePTR); n != 0 {
		t.Errorf("listed client: %d PTR queries, want none", n)
	}
	if strings.Contains(e.g.log.String(), `"iprev"`) {
		t.Errorf("iprev logged for the listed client:\n%s", e.g.log.String())
	}

	// The rule reading iprev sees the lookup's result.
	err = sendFrom("127.0.0.1", e.g.addr, "a@sender.test", []string{"bob@example.com"}, simpleMsg)
	if err == nil || !strings.Contains(err.Error(), "rdns seen") {
		t.Fatalf("unlisted client: %v, want the rdns_pass rule's 421", err)
	}
	if n := e.dns.QueryCount("1.0.0.127.in-addr.arpa.", dns.TypePTR); n != 1 {
		t.Errorf("unlisted client: %d PTR queries, want 1", n)
	}
	if !strings.Contains(e.g.log.String(), `"iprev":{"result":"pass","name":"mail.client.test"}`) {
		t.Errorf("decision log:\n%s", e.g.log.String())
	}
}

func signedMessage(t *testing.T, e *judgeEnv, domain, from string) string {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	e.dns.AddRR(t, "sel._domainkey."+domain+". 300 IN TXT \"v=DKIM1; k=ed25519; p="+base64.StdEncoding.EncodeToString(pub)+"\"")
	msg := "From: Alice <" + from + ">\r\nTo: bob@example.com\r\nSubject: signed\r\n\r\nHello.\r\n"
	var out bytes.Buffer
	if err := dkim.Sign(&out, strings.NewReader(msg), &dkim.SignOptions{Domain: domain, Selector: "sel", Signer: priv}); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// TestAuthenticationResultsRelayed: what the internal MTA receives carries
// our verdicts on SPF, DKIM, DMARC and iprev.
func TestAuthenticationResultsRelayed(t *testing.T) {
	e := startJudged(t, "", false)
	msg := signedMessage(t, e, "sender.test", "alice@sender.test")
	if err := sendFrom("127.0.0.1", e.g.addr, "alice@sender.test", []string{"bob@example.com"}, msg); err != nil {
		t.Fatal(err)
	}
	data := string(e.g.mta.messages()[0].Data)
	ar := data[strings.Index(data, "Authentication-Results:"):]
	ar = ar[:strings.Index(ar, "\r\n")+2]
	for _, want := range []string{"mx.test;", "iprev=pass", "spf=pass smtp.mailfrom=alice@sender.test", "dkim=pass", "header.d=sender.test", "header.s=sel", "dmarc=pass header.from=sender.test"} {
		if !strings.Contains(unfold(data), want) {
			t.Errorf("Authentication-Results lacks %q:\n%s", want, data)
		}
	}
	if !strings.Contains(data, "Received: from mail.client.test (mail.client.test [127.0.0.1])") {
		t.Errorf("Received lacks the verified reverse name:\n%s", data)
	}
	if !strings.Contains(data, "Received-SPF: pass") {
		t.Errorf("no Received-SPF:\n%s", data)
	}
	_ = ar
	var relay map[string]any
	for _, l := range e.g.log.lines() {
		if strings.Contains(l, `"action":"relay"`) {
			json.Unmarshal([]byte(l), &relay)
		}
	}
	chk, _ := relay["checks"].(map[string]any)
	for _, k := range []string{"spf", "dkim", "dmarc", "iprev"} {
		if chk[k] == nil {
			t.Errorf("decision log lacks the %s result: %v", k, relay)
		}
	}
}

func unfold(s string) string { return strings.NewReplacer("\r\n\t", " ", "\r\n ", " ").Replace(s) }

func TestDMARCEnforcement(t *testing.T) {
	e := startJudged(t, "", false)
	e.dns.Timeout("_dmarc.slow.test.")
	cases := []struct {
		from     string
		wantCode int
		wantText string
		header   string
	}{
		{"x@strict.test", 550, "5.7.1", ""},
		{"x@slow.test", 451, "4.7.5", ""},
		{"x@quiet.test", 250, "", "X-Gatewayd-Quarantine: DMARC policy of quiet.test asks for quarantine"},
	}
	for _, c := range cases {
		before := len(e.g.mta.messages())
		msg := "From: " + c.from + "\r\nSubject: t\r\n\r\nbody\r\n"
		err := sendFrom("127.0.0.1", e.g.addr, c.from, []string{"bob@example.com"}, msg)
		if code := codeOf(err); code != c.wantCode {
			t.Errorf("%s: got %v, want %d", c.from, err, c.wantCode)
			continue
		}
		if c.wantText != "" {
			var se *smtp.SMTPError
			if !errors.As(err, &se) || fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2]) != c.wantText {
				t.Errorf("%s: got %v, want %s", c.from, err, c.wantText)
			}
		}
		if c.header != "" {
			msgs := e.g.mta.messages()
			if len(msgs) != before+1 || !strings.Contains(string(msgs[len(msgs)-1].Data), c.header) {
				t.Errorf("%s: header %q not added", c.from, c.header)
			}
		}
	}
}

// TestDMARCDefersAuthenticationTempError: the sender's own SPF record, or
// its DKIM key, cannot be fetched for now (SERVFAIL) and nothing else
// aligned passes. Its p=reject must not make that a permanent 550: the
// message is deferred, as for any DNS failure.
func TestDMARCDefersAuthenticationTempError(t *testing.T) {
	e := startJudged(t, "", false)
	e.dns.AddRR(t, `_dmarc.tempspf.test. 300 IN TXT "v=DMARC1; p=reject"`)
	e.dns.ServFail("tempspf.test.")
	e.dns.AddRR(t, `tempdkim.test. 300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"`)
	e.dns.AddRR(t, `_dmarc.tempdkim.test. 300 IN TXT "v=DMARC1; p=reject"`)
	signed := signedMessage(t, e, "tempdkim.test", "ceo@tempdkim.test")
	e.dns.ServFail("sel._domainkey.tempdkim.test.")
	for _, c := range []struct{ name, from, msg string }{
		{"SPF temperror", "ceo@tempspf.test", "From: ceo@tempspf.test\r\nSubject: t\r\n\r\nbody\r\n"},
		{"DKIM key temperror", "ceo@tempdkim.test", signed},
	} {
		err := sendFrom("127.0.0.1", e.g.addr, c.from, []string{"bob@example.com"}, c.msg)
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 451 || se.EnhancedCode != (smtp.EnhancedCode{4, 7, 5}) {
			t.Errorf("%s: got %v, want 451 4.7.5 (DMARC cannot be decided now)", c.name, err)
		}
	}
}

// TestDMARCDefersUnfinishedSPF: the SPF check of the sender's domain is
// still waiting for DNS when the gateway stops waiting for it (Checks.Wait,
// shorter here than the resolver's timeout). The SPF temperror it records
// must be for that domain, aligned with From, so that DMARC defers: an SPF
// result of no domain was an unaligned fail, and p=reject made it a 550.
func TestDMARCDefersUnfinishedSPF(t *testing.T) {
	e := startJudgedPolicy(t, "", false, DefaultPolicy, func(c *Checks) { c.Wait = 100 * time.Millisecond })
	e.dns.AddRR(t, `heldspf.test. 300 IN TXT "v=spf1 ip4:127.0.0.0/8 -all"`)
	e.dns.AddRR(t, `_dmarc.heldspf.test. 300 IN TXT "v=DMARC1; p=reject"`)
	t.Cleanup(e.dns.Hold("heldspf.test."))
	msg := "From: ceo@heldspf.test\r\nSubject: t\r\n\r\nbody\r\n"
	err := sendFrom("127.0.0.1", e.g.addr, "ceo@heldspf.test", []string{"bob@example.com"}, msg)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 451 || se.EnhancedCode != (smtp.EnhancedCode{4, 7, 5}) {
		t.Errorf("got %v, want 451 4.7.5 (DMARC cannot be decided now)", err)
	}
	if !strings.Contains(e.g.log.String(), `"spf":{"result":"temperror","domain":"heldspf.test"`) {
		t.Errorf("decision log lacks the SPF temperror for heldspf.test:\n%s", e.g.log.String())
	}
}

// TestDMARCSeesEveryFromField: a spoofed From of a p=reject domain
// (strict.test, bücher.test: SPF fails for loopback) is refused however
// it is written or hidden; the envelope is the spoofer's own sender.test,
// whose SPF passes.
func TestDMARCSeesEveryFromField(t *testing.T) {
	e := startJudged(t, "", false)
	for _, c := range []struct{ name, hdr, domain string }{
		{"windows-1252 display name", "From: =?windows-1252?Q?Strict_Bank?= <ceo@strict.test>\r\n", "strict.test"},
		{"second From after a line without colon", "From: a@sender.test\r\nX-Junk\r\nFrom: ceo@strict.test\r\n", "strict.test"},
		{"second From with WSP before the colon", "From: a@sender.test\r\nFrom : ceo@strict.test\r\n", "strict.test"},
		{"control character before From", "Subject: hi\x01\r\nFrom: ceo@strict.test\r\n", "strict.test"},
		{"internationalised From domain", "From: ceo@bücher.test\r\n", "xn--bcher-kva.test"},
		// Fields that do not parse are read loosely: every domain after an @.
		{"From that does not parse", "From: Strict, Bank <ceo@strict.test>\r\n", "strict.test"},
		{"second From that does not parse", "From: a@sender.test\r\nFrom: <ceo@strict.test\r\n", "strict.test"},
		{"white space in the domain", "From: Bank <ceo@strict .test>\r\n", "strict.test"},
		{"a comment in the domain", "From: ceo@strict(x).test\r\n", "strict.test"},
		{"a comment after the @", "From: a@sender.test, ceo@(x)strict.test\r\n", "strict.test"},
	} {
		msg := c.hdr + "Subject: t\r\n\r\nbody\r\n"
		err := sendFrom("127.0.0.1", e.g.addr, "x@sender.test", []string{"bob@example.com"}, msg)
		if codeOf(err) != 550 || !strings.Contains(err.Error(), c.domain) {
			t.Errorf("%s: got %v, want 550 for the DMARC policy of %s", c.name, err, c.domain)
		}
	}
}

// TestDMARCOddButLegitimateFrom: From fields that do not parse but name
// their domain plainly are relayed when that domain passes.
func TestDMARCOddButLegitimateFrom(t *testing.T) {
	e := startJudged(t, "", false)
	for _, from := range []string{
		"=?UTF-8?Q?info@sender.test?= <info@sender.test>",
		"Smith, John <john@sender.test>",
		"<john@sender.test.>",
	} {
		msg := "From: " + from + "\r\nSubject: t\r\n\r\nbody\r\n"
		if err := sendFrom("127.0.0.1", e.g.addr, "x@sender.test", []string{"bob@example.com"}, msg); err != nil {
			t.Errorf("From: %s: %v, want it relayed", from, err)
		}
	}
}

// TestDMARCUnusableFromRefused: a message whose From gives DMARC no author
// domain (permerror) is refused by the default policy, as RFC 7489 section
// 6.6.1 says is usual: otherwise such a From would carry any spoofed name
// past p=reject.
func TestDMARCUnusableFromRefused(t *testing.T) {
	e := startJudged(t, "", false)
	for _, c := range []struct{ name, hdr string }{
		{"no From field", "To: bob@example.com\r\n"},
		{"From without an address", "From: undisclosed-recipients:;\r\n"},
		{"From with no domain anywhere", "From: Strict, Bank <ceo>\r\n"},
		{"more author domains than checked", "From: a@sender.test, b@a.test, c@b.test, d@c.test, e@d.test, f@e.test\r\n"},
	} {
		msg := c.hdr + "Subject: t\r\n\r\nbody\r\n"
		err := sendFrom("127.0.0.1", e.g.addr, "x@sender.test", []string{"bob@example.com"}, msg)
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) || !strings.Contains(se.Message, "From header field") {
			t.Errorf("%s: got %v, want 550 5.7.1 naming the From header field", c.name, err)
		}
	}
	if n := strings.Count(e.g.log.String(), `"rule":"dmarc_permerror"`); n != 4 {
		t.Errorf("decision log names dmarc_permerror %d times, want 4:\n%s", n, e.g.log.String())
	}
}

// TestGreylistThroughGateway: first try 451 4.7.1, retry before the delay
// 451, retry after the delay 250, with memory and Redis stores; a DNSWL
// client skips greylisting.
func TestGreylistThroughGateway(t *testing.T) {
	rs := redistest.Start(t)
	for _, store := range []struct{ name, addr string }{{"memory", ""}, {"redis", rs.Addr}} {
		t.Run(store.name, func(t *testing.T) {
			e := startJudged(t, store.addr, true)
			send := func() error {
				return sendFrom("127.0.0.1", e.g.addr, "alice@sender.test", []string{"bob@example.com"}, "From: alice@sender.test\r\nSubject: g\r\n\r\nbody\r\n")
			}
			err := send()
			if codeOf(err) != 451 || !strings.Contains(err.Error(), "Greylisted") {
				t.Fatalf("first try: %v", err)
			}
			e.clock.Advance(time.Minute)
			if codeOf(send()) != 451 {
				t.Fatal("early retry passed")
			}
			e.clock.Advance(5 * time.Minute)
			if err := send(); err != nil {
				t.Fatalf("retry after the delay: %v", err)
			}
			if len(e.g.mta.messages()) != 1 {
				t.Fatalf("internal MTA holds %d messages", len(e.g.mta.messages()))
			}
			if !strings.Contains(e.g.log.String(), `"greylist":{"action":"defer"`) {
				t.Errorf("greylist result not logged:\n%s", e.g.log.String())
			}
			// DNSWL-listed client: no greylisting.
			if err := sendFrom("127.0.0.4", e.g.addr, "carol@sender.test", []string{"bob@example.com"}, "From: carol@sender.test\r\nSubject: w\r\n\r\nb\r\n"); err != nil {
				t.Fatalf("DNSWL client greylisted: %v", err)
			}
		})
	}
}

var _ = context.Background

// TestSPFAnswerKeptForTheSession: a transaction that asks SPF the same
// question (HELO name and sender) as the session's last one gets its
// answer; another sender is asked anew, and a temporary error is not kept. The record has
// TTL 0, so the DNS cache keeps nothing and the queries count the checks.
func TestSPFAnswerKeptForTheSession(t *testing.T) {
	e := startJudged(t, "", false)
	e.dns.AddRR(t, `memo.test. 0 IN TXT "v=spf1 ip4:127.0.0.0/8 -all"`)
	e.dns.AddRR(t, `other.test. 0 IN TXT "v=spf1 ip4:127.0.0.0/8 -all"`)
	e.dns.ServFail("slow-spf.test.")
	c, err := smtp.Dial(e.g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("mail.client.test"); err != nil {
		t.Fatal(err)
	}
	for _, from := range []string{"a@memo.test", "b@memo.test", "a@memo.test", "a@memo.test", "x@other.test", "y@slow-spf.test", "y@slow-spf.test"} {
		msg := "From: <" + from + ">\r\nTo: bob@example.com\r\nSubject: memo\r\n\r\nHello.\r\n"
		err := c.SendMail(from, []string{"bob@example.com"}, strings.NewReader(msg))
		if err != nil && !strings.Contains(from, "slow-spf") {
			t.Fatalf("%s: %v", from, err)
		}
		if err != nil {
			c.Reset() // a temporary error may defer the message
		}
	}
	for _, q := range []struct {
		name string
		want int
	}{
		{"memo.test.", 3},     // a@, b@ (%{l} may differ), a@ again after b@; the fourth kept
		{"other.test.", 1},    // asked once
		{"slow-spf.test.", 2}, // a temporary error is asked again
	} {
		if got := e.dns.QueryCount(q.name, dns.TypeTXT); got < q.want || q.name != "slow-spf.test." && got != q.want {
			t.Errorf("%s: %d TXT queries, want %d", q.name, got, q.want)
		}
	}
}

// TestSPFAnswerOfADroppedTransaction: the SPF answer of a transaction
// dropped before it came (RSET) is not taken by the next transaction, nor
// kept for the ones after it.
func TestSPFAnswerOfADroppedTransaction(t *testing.T) {
	e := startJudged(t, "", false)
	e.dns.AddRR(t, `held.test. 0 IN TXT "v=spf1 ip4:127.0.0.0/8 -all"`)
	e.dns.AddRR(t, `victim.test. 0 IN TXT "v=spf1 -all"`)
	releaseHeld := e.dns.Hold("held.test.")
	releaseVictim := e.dns.Hold("victim.test.")
	c, err := net.Dial("tcp", e.g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	runDialog(t, c, `
		< 220
		> EHLO mail.client.test
		< 250
		> MAIL FROM:<a@held.test>
		< 250
		> RCPT TO:<bob@example.com>
		< 250
		> RSET
		< 250
		> MAIL FROM:<b@victim.test>
		< 250`)
	// The dropped transaction's answer comes first. (Given time to; on a
	// slow machine it may come later, and the test then shows less, but
	// it cannot fail wrongly.)
	releaseHeld()
	time.Sleep(50 * time.Millisecond) // well inside the resolver's 500 ms for the held victim query
	releaseVictim()
	message := `
		> RCPT TO:<bob@example.com>
		< 250
		> DATA
		< 354
		> From: <b@victim.test>
		> Subject: x
		>
		> hi
		> .
		< 250`
	// The second message's SPF answer comes from the session's memo.
	runDialog(t, c, message+"\n> MAIL FROM:<b@victim.test>\n< 250\n"+message+"\n> QUIT\n< 221")
	msgs := e.g.mta.messages()
	if len(msgs) != 2 {
		t.Fatalf("%d messages relayed", len(msgs))
	}
	for i, m := range msgs {
		if !strings.Contains(string(m.Data), "Received-SPF: fail") || strings.Contains(string(m.Data), "held.test") {
			t.Errorf("message %d carries another transaction's SPF answer:\n%s", i, m.Data)
		}
	}
}
