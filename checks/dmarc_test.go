package checks

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

func dkimPass(domains ...string) DKIMResult {
	var r DKIMResult
	for _, d := range domains {
		r.Signatures = append(r.Signatures, DKIMSignature{Domain: d, Result: DKIMPass})
	}
	return r
}

func TestDMARC(t *testing.T) {
	srv := startDNS(t, "dmarc.zone")
	srv.Timeout("_dmarc.slow.example")
	r := newResolver(t, srv, 300*time.Millisecond)
	// pct sampling: a message is sampled when pct >= 50 in this test.
	d := NewDMARC(DMARCConfig{}, r, WithSampler(func(pct int) bool { return pct > 50 }))
	dSampled := NewDMARC(DMARCConfig{}, r, WithSampler(func(pct int) bool { return true }))

	spfPass := func(dom string) SPFResult { return SPFResult{Result: SPFPass, Domain: dom} }
	spfTemp := func(dom string) SPFResult { return SPFResult{Result: SPFTempError, Domain: dom} }
	dkimTemp := func(dom string) DKIMResult {
		return DKIMResult{Signatures: []DKIMSignature{{Domain: dom, Result: DKIMTempError}}}
	}
	cases := []struct {
		name    string
		from    string // the From field value; "-" for no From field
		spf     SPFResult
		dkim    DKIMResult
		sampled bool
		result  DMARCStatus
		policy  string // published policy that applies
		applied string // after pct
		reason  string // substring of Reason
	}{
		// Policies.
		{"reject", "a@reject.example", SPFResult{Result: SPFFail, Domain: "reject.example"}, DKIMResult{}, false, DMARCFail, "reject", "reject", ""},
		{"quarantine", "a@quar.example", SPFResult{}, DKIMResult{}, false, DMARCFail, "quarantine", "quarantine", ""},
		{"none", "a@none.example", SPFResult{}, DKIMResult{}, false, DMARCFail, "none", "none", ""},
		{"no record", "a@nodmarc.example", SPFResult{}, DKIMResult{}, false, DMARCNone, "", "", "no DMARC record"},
		// Passes.
		{"dkim aligned", "a@reject.example", SPFResult{}, dkimPass("reject.example"), false, DMARCPass, "reject", "", ""},
		{"spf aligned", "a@reject.example", spfPass("reject.example"), DKIMResult{}, false, DMARCPass, "reject", "", ""},
		{"dkim aligned but failed", "a@reject.example", SPFResult{},
			DKIMResult{Signatures: []DKIMSignature{{Domain: "reject.example", Result: DKIMFail}}}, false, DMARCFail, "reject", "reject", ""},
		{"spf softfail aligned", "a@reject.example", SPFResult{Result: SPFSoftFail, Domain: "reject.example"}, DKIMResult{}, false, DMARCFail, "reject", "reject", ""},
		{"second signature aligned", "a@reject.example", SPFResult{}, dkimPass("list.other.example", "reject.example"), false, DMARCPass, "reject", "", ""},
		// Relaxed alignment, each way.
		{"relaxed dkim parent", "a@mail.reject.example", SPFResult{}, dkimPass("reject.example"), false, DMARCPass, "reject", "", ""},
		{"relaxed spf child", "a@reject.example", spfPass("bounces.reject.example"), DKIMResult{}, false, DMARCPass, "reject", "", ""},
		// Strict alignment, each way.
		{"strict dkim parent", "a@strict.example", SPFResult{}, dkimPass("mail.strict.example"), false, DMARCFail, "reject", "reject", ""},
		{"strict spf child", "a@strict.example", spfPass("bounces.strict.example"), DKIMResult{}, false, DMARCFail, "reject", "reject", ""},
		{"strict exact", "a@strict.example", spfPass("strict.example"), DKIMResult{}, false, DMARCPass, "reject", "", ""},
		{"strict tag value upper case", "a@upper.example", SPFResult{}, dkimPass("sub.upper.example"), false, DMARCFail, "reject", "reject", ""},
		{"psl boundary", "a@example.co.uk", spfPass("other.co.uk"), dkimPass("co.uk"), false, DMARCFail, "reject", "reject", ""},
		{"domain case", "a@REJECT.Example", SPFResult{}, dkimPass("Reject.EXAMPLE"), false, DMARCPass, "reject", "", ""},
		// Internationalised domains: looked up and aligned as A-labels.
		{"IDN From, policy under its A-label", "ceo@bücher.example", spfPass("attacker.example"), DKIMResult{}, false, DMARCFail, "reject", "reject", ""},
		{"IDN From, aligned A-label SPF", "ceo@Bücher.example", spfPass("xn--bcher-kva.example"), DKIMResult{}, false, DMARCPass, "reject", "", ""},
		{"IDN From, aligned U-label DKIM", "ceo@bücher.example", SPFResult{}, dkimPass("mail.BÜCHER.example"), false, DMARCPass, "reject", "", ""},
		{"A-label From, aligned U-label DKIM", "ceo@xn--bcher-kva.example", SPFResult{}, dkimPass("bücher.example"), false, DMARCPass, "reject", "", ""},
		{"IDN From, unaligned lookalike DKIM", "ceo@bücher.example", SPFResult{}, dkimPass("bucher.example"), false, DMARCFail, "reject", "reject", ""},
		{"From domain not a valid A-label", "ceo@xn--zz.example", spfPass("xn--zz.example"), DKIMResult{}, false, DMARCPermError, "", "", "idna"},
		{"From domain with a disallowed character", "ceo@bank_x.example", spfPass("bank_x.example"), DKIMResult{}, false, DMARCPermError, "", "", "idna"},
		{"From address literal", "ceo@[192.0.2.1]", spfPass("example.com"), DKIMResult{}, false, DMARCPermError, "", "", "idna"},
		// Organizational domain: sp applies to subdomains.
		{"subdomain sp", "a@sub.org.example", SPFResult{}, DKIMResult{}, false, DMARCFail, "reject", "reject", ""},
		{"org domain itself p", "a@org.example", SPFResult{}, DKIMResult{}, false, DMARCFail, "none", "none", ""},
		{"subdomain without sp gets p", "a@deep.sub.nosp.example", SPFResult{}, DKIMResult{}, false, DMARCFail, "quarantine", "quarantine", ""},
		{"subdomain own record wins", "a@own.org.example", SPFResult{}, DKIMResult{}, false, DMARCFail, "quarantine", "quarantine", ""},
		// pct.
		{"pct=0 reject becomes quarantine", "a@pct0.example", SPFResult{}, DKIMResult{}, false, DMARCFail, "reject", "quarantine", ""},
		{"pct=50 not sampled", "a@pct50.example", SPFResult{}, DKIMResult{}, false, DMARCFail, "reject", "quarantine", ""},
		{"pct=50 sampled", "a@pct50.example", SPFResult{}, DKIMResult{}, true, DMARCFail, "reject", "reject", ""},
		{"pct=50 quarantine not sampled", "a@pct50q.example", SPFResult{}, DKIMResult{}, false, DMARCFail, "quarantine", "none", ""},
		// Records.
		{"two records", "a@two.example", SPFResult{}, DKIMResult{}, false, DMARCNone, "", "", "2 DMARC records"},
		{"other TXT ignored", "a@other.example", SPFResult{}, DKIMResult{}, false, DMARCFail, "reject", "reject", ""},
		{"version case-sensitive", "a@lowerv.example", SPFResult{}, DKIMResult{}, false, DMARCNone, "", "", ""},
		{"no p, no rua: nonexistent", "a@nop.example", SPFResult{}, DKIMResult{}, false, DMARCNone, "", "", "treated as nonexistent"},
		{"no p, rua: p=none", "a@rua.example", SPFResult{}, DKIMResult{}, false, DMARCFail, "none", "none", "p=none"},
		{"bad terms ignored", "a@bad.example", SPFResult{}, DKIMResult{}, false, DMARCFail, "quarantine", "quarantine", "ignored"},
		{"split strings", "a@split.example", SPFResult{}, DKIMResult{}, false, DMARCFail, "reject", "reject", ""},
		{"timeout", "a@slow.example", SPFResult{}, DKIMResult{}, false, DMARCTempError, "", "", "timeout"},
		// The sender's SPF or DKIM check failed for now: no final fail.
		{"aligned SPF temperror", "a@reject.example", spfTemp("reject.example"), DKIMResult{}, false, DMARCTempError, "reject", "", "SPF temperror"},
		{"aligned SPF temperror, relaxed", "a@reject.example", spfTemp("bounces.reject.example"), DKIMResult{}, false, DMARCTempError, "reject", "", "SPF temperror"},
		{"aligned DKIM temperror", "a@reject.example", SPFResult{Result: SPFFail, Domain: "reject.example"}, dkimTemp("reject.example"), false,
			DMARCTempError, "reject", "", "DKIM temperror"},
		{"aligned temperror, quarantine", "a@quar.example", spfTemp("quar.example"), DKIMResult{}, false, DMARCTempError, "quarantine", "", "SPF temperror"},
		{"aligned temperror, reject sampled to quarantine", "a@pct0.example", spfTemp("pct0.example"), DKIMResult{}, false, DMARCTempError, "reject", "", "SPF temperror"},
		{"aligned temperror, p=none: the fail stands", "a@none.example", spfTemp("none.example"), DKIMResult{}, false, DMARCFail, "none", "none", "fail stands"},
		{"aligned temperror and an aligned pass", "a@reject.example", spfTemp("reject.example"), dkimPass("reject.example"), false, DMARCPass, "reject", "", ""},
		{"unaligned SPF temperror", "a@reject.example", spfTemp("other.example"), DKIMResult{}, false, DMARCFail, "reject", "reject", ""},
		{"unaligned DKIM temperror", "a@reject.example", SPFResult{}, dkimTemp("other.example"), false, DMARCFail, "reject", "reject", ""},
		{"SPF temperror, strict alignment", "a@strict.example", spfTemp("bounces.strict.example"), DKIMResult{}, false, DMARCFail, "reject", "reject", ""},
		// Author domain problems.
		{"two From addresses", "Bad <spoof@none.example>, Good <a@reject.example>", SPFResult{}, dkimPass("none.example"), false,
			DMARCFail, "reject", "reject", "2 From addresses"},
		{"two From addresses, both pass", "x@reject.example, y@strict.example", SPFResult{}, dkimPass("reject.example", "strict.example"), false,
			DMARCPass, "", "", "2 From addresses"},
		{"two From addresses, temperror beats a fail that asks nothing", "x@none.example, y@slow.example", SPFResult{}, DKIMResult{}, false,
			DMARCTempError, "", "", "2 From addresses"},
		{"two From addresses, temperror beats quarantine", "x@quar.example, y@reject.example", spfTemp("reject.example"), DKIMResult{}, false,
			DMARCTempError, "reject", "", "SPF temperror"},
		{"two From addresses, reject beats temperror", "x@slow.example, y@reject.example", SPFResult{}, DKIMResult{}, false,
			DMARCFail, "reject", "reject", "2 From addresses"},
		{"no From address", `"Test User"`, spfPass("reject.example"), DKIMResult{}, false, DMARCPermError, "", "", "From"},
		{"no From field", "-", spfPass("reject.example"), DKIMResult{}, false, DMARCPermError, "", "", "no From header field"},
		{"empty group", "undisclosed-recipients:;", SPFResult{}, DKIMResult{}, false, DMARCPermError, "", "", "no address"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hdr := "Subject: test\r\nTo: x@y.example\r\n"
			if c.from != "-" {
				hdr = "From: " + c.from + "\r\n" + hdr
			}
			dd := d
			if c.sampled {
				dd = dSampled
			}
			got := dd.Check(context.Background(), DMARCInput{Header: []byte(hdr + "\r\n"), SPF: c.spf, DKIM: c.dkim})
			if got.Result != c.result || (c.policy != "" && got.Policy != c.policy) || got.Applied != c.applied {
				t.Errorf("%s policy %q applied %q (reason %q), want %s %q %q", got.Result, got.Policy, got.Applied,
					got.Reason, c.result, c.policy, c.applied)
			}
			if !strings.Contains(got.Reason, c.reason) {
				t.Errorf("reason %q, want it to contain %q", got.Reason, c.reason)
			}
		})
	}
}

// TestDMARCAuthorDomainBound: a From listing many domains costs no DNS
// query at all and leaves the message without a usable author domain
// (permerror, which the rules refuse), rather than checking some of them
// or costing two queries per domain.
func TestDMARCAuthorDomainBound(t *testing.T) {
	srv := startDNS(t, "dmarc.zone")
	d := NewDMARC(DMARCConfig{}, newResolver(t, srv, 0))
	for _, domains := range []int{MaxAuthorDomains + 1, 500} {
		var b strings.Builder
		b.WriteString("From: ")
		for i := range domains {
			fmt.Fprintf(&b, "u@s.d%d.example, ", i)
		}
		b.WriteString("ceo@reject.example\r\nSubject: x\r\n\r\n")
		srv.ResetQueries()
		r := d.Check(context.Background(), DMARCInput{Header: []byte(b.String()), SPF: SPFResult{Result: SPFPass, Domain: "d0.example"}})
		if r.Result != DMARCPermError || !strings.Contains(r.Reason, "author domains") {
			t.Errorf("%d domains: got %s (%s), want permerror", domains, r.Result, r.Reason)
		}
		if n := srv.Queries(); n != 0 {
			t.Errorf("%d domains: %d DNS queries, want none", domains, n)
		}
	}
}

func TestDMARCDetail(t *testing.T) {
	srv := startDNS(t, "dmarc.zone")
	d := NewDMARC(DMARCConfig{}, newResolver(t, srv, 0))
	got := d.Check(context.Background(), DMARCInput{
		Header: []byte("From: Joe <joe@mail.org.example>\r\n\r\n"),
		DKIM:   dkimPass("org.example"),
	})
	want := DMARCResult{Result: DMARCPass, Domain: "mail.org.example", OrgDomain: "org.example",
		RecordDomain: "org.example", Record: "v=DMARC1; p=none; sp=reject", Policy: "reject", Pct: 100,
		SPFAlignment: "relaxed", DKIMAlignment: "relaxed", DKIMAligned: true, AlignedDKIMDomain: "org.example",
		FromAddresses: 1}
	if got != want {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

// TestDMARCFromFields: every From field a reader of the message may see
// is checked, whatever surrounds it, and a display name DMARC cannot
// decode does not hide the address. Each case spoofs reject.example (no
// aligned pass) and must meet its p=reject; a From that let DMARC skip
// the domain (permerror, or a pass on another From's domain) would let
// the spoof through.
func TestDMARCFromFields(t *testing.T) {
	srv := startDNS(t, "dmarc.zone")
	d := NewDMARC(DMARCConfig{}, newResolver(t, srv, 0))
	spoof := SPFResult{Result: SPFPass, Domain: "none.example"} // the spoofer's own domain
	cases := []struct {
		name   string
		header string
		dkim   DKIMResult
		result DMARCStatus
		from   int // FromAddresses
	}{
		{"windows-1252 display name", "From: =?windows-1252?Q?Bank_S=E9curit=E9?= <ceo@reject.example>\r\n", DKIMResult{}, DMARCFail, 1},
		{"unknown charset", "From: =?x-no-such-charset?B?QmFuaw==?= <ceo@reject.example>\r\n", DKIMResult{}, DMARCFail, 1},
		{"raw Latin-1 display name", "From: \"S\xe9curit\xe9\" <ceo@reject.example>\r\n", DKIMResult{}, DMARCFail, 1},
		{"control character before From", "Subject: hi\x01\r\nFrom: ceo@reject.example\r\n", DKIMResult{}, DMARCFail, 1},
		{"line without colon before From", "X-Junk\r\nFrom: ceo@reject.example\r\n", DKIMResult{}, DMARCFail, 1},
		{"second From after a line without colon", "From: a@none.example\r\nX-Junk\r\nFrom: ceo@reject.example\r\n", DKIMResult{}, DMARCFail, 2},
		{"second From after a control character", "From: a@none.example\r\nX-A: \x00\r\nFrom: ceo@reject.example\r\n", DKIMResult{}, DMARCFail, 2},
		{"second From written From :", "From: a@none.example\r\nFrom : ceo@reject.example\r\n", DKIMResult{}, DMARCFail, 2},
		{"second From written from\\t:", "From: a@none.example\r\nfrom\t: ceo@reject.example\r\n", DKIMResult{}, DMARCFail, 2},
		// Legitimate mail with such a display name gets DMARC too.
		{"windows-1252 display name, aligned DKIM", "From: =?windows-1252?Q?Bank_S=E9curit=E9?= <ceo@reject.example>\r\n",
			dkimPass("reject.example"), DMARCPass, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hdr := c.header + "To: x@y.example\r\nSubject: test\r\n\r\n"
			got := d.Check(context.Background(), DMARCInput{Header: []byte(hdr), SPF: spoof, DKIM: c.dkim})
			if got.Result != c.result || got.FromAddresses != c.from {
				t.Errorf("%s on %q, %d From addresses (reason %q); want %s, %d", got.Result, got.Domain, got.FromAddresses, got.Reason, c.result, c.from)
			}
			if c.result == DMARCFail && (got.Domain != "reject.example" || got.Applied != "reject") {
				t.Errorf("fail on %q applied %q, want reject.example's reject", got.Domain, got.Applied)
			}
		})
	}
}

func TestCleanDMARCRecord(t *testing.T) {
	cases := []struct {
		in, out, err string
	}{
		{"v=DMARC1; p=reject", "v=DMARC1; p=reject", ""},
		{"v=DMARC1;p=Quarantine;ADKIM=s;adkim=S; aspf=R; pct=20; t=y; np=reject",
			"v=DMARC1; p=quarantine; adkim=s; aspf=r; pct=20", ""},
		{"v=DMARC1; p=none; sp=bogus; rua=mailto:a@b.example", "v=DMARC1; p=none; rua=mailto:a@b.example", ""},
		{"v=DMARC1; p=none; sp=bogus", "", "nonexistent"},
		{"v=DMARC1; p=reject; pct=200; ri=-1; fo=x; rf=iodef", "v=DMARC1; p=reject", ""},
		{"v=DMARC1; p=reject; reject", "v=DMARC1; p=reject", ""},
		{"v=DMARC1", "", "nonexistent"},
		{"p=reject; v=DMARC1", "", "does not start"},
	}
	for _, c := range cases {
		out, _, err := cleanDMARCRecord(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("cleanDMARCRecord(%q) error %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || out != c.out {
			t.Errorf("cleanDMARCRecord(%q) = %q, %v; want %q", c.in, out, err, c.out)
		}
	}
}

func TestFromDomains(t *testing.T) {
	cases := []struct {
		hdr     string
		domains string
		n       int
		err     string
	}{
		{"From: a@Example.COM\r\n\r\n", "example.com", 1, ""},
		{"From: \"Doe, John\" <john@example.com>\r\n", "example.com", 1, ""},
		{"From: =?utf-8?q?J=C3=B6rg?= <j@example.de>\r\n\r\n", "example.de", 1, ""},
		{"From: a@x.example,\r\n b@y.example\r\n\r\n", "x.example y.example", 2, ""},
		{"From: a@x.example, b@x.example\r\n\r\n", "x.example", 2, ""},
		{"From: a@x.example\r\nFrom: b@y.example\r\n\r\n", "x.example y.example", 2, ""},
		{"To: a@x.example\r\n\r\n", "", 0, "no From header field"},
		{"From: \"Test User\"\r\n\r\n", "", 0, "From header field"},
		// Does not parse (an unquoted comma): every domain after an "@".
		{"From: Smith, John <j@Example.com>\r\n\r\n", "example.com", 1, ""},
		{"From: ceo@bank.example <a@evil.example>\r\n\r\n", "bank.example evil.example", 2, ""},
		{"From: Smith, John <j@>\r\n\r\n", "", 0, "From header field"},
		// Comments and white space inside a domain (RFC 5322's obsolete
		// syntax) are read as a reader's software reads them.
		{"From: Bank <ceo@paypal .com>\r\n\r\n", "paypal.com", 1, ""},
		{"From: Bank <ceo@paypal\r\n .com>\r\n\r\n", "paypal.com", 1, ""},
		{"From: ceo@strict(x).test\r\n\r\n", "strict.test", 1, ""},
		{"From: a@x.example, ceo@(x)y.example\r\n\r\n", "x.example y.example", 2, ""},
		{"From: a@x.example, ceo@(unclosed\r\n\r\n", "", 0, "From header field"},
		// A "(" in a quoted display name is no comment; and every "@"
		// as written is read too.
		{"From: Smith, \"John (\" <ceo@paypal.com>, \"x)\" <me@evil.example>\r\n\r\n", "paypal.com evil.example", 2, ""},
		{"From: Smith, John (see ceo@bank.example) <j@x.example>\r\n\r\n", "x.example bank.example", 2, ""},
		// An "@" in an encoded display name, quotes around an address.
		{"From: =?UTF-8?Q?info@x.example?= <info@x.example>\r\n\r\n", "x.example", 2, ""},
		{"From: <'john@x.example'>\r\n\r\n", "x.example", 1, ""},
		// An absolute name, and a hyphenated label that is no A-label.
		{"From: ceo@x.example.\r\n\r\n", "x.example", 1, ""},
		{"From: news@ab--cd.example\r\n\r\n", "ab--cd.example", 1, ""},
		{"From: \r\n\r\n", "", 0, "From"},
		{"From: a@x.example", "x.example", 1, ""}, // no final CRLF
		{"From: =?windows-1252?Q?Fran=E7ois?= <f@x.example>\r\n\r\n", "x.example", 1, ""},
		{"From: \"Fran\xe7ois\" <f@x.example>\r\n\r\n", "x.example", 1, ""},
		{"X-Junk\r\nFrom: a@x.example\r\n\r\n", "x.example", 1, ""},
		{"Subject: \x01\r\nFrom: a@x.example\r\n\r\n", "x.example", 1, ""},
		{"From: a@x.example\r\nFrom : b@y.example\r\n\r\n", "x.example y.example", 2, ""},
		{"From: a@x.example\r\nX-Junk\r\nFROM:b@y.example\r\n\r\n", "x.example y.example", 2, ""},
		{"From: a@x.example\r\nFrom : \r\n\r\n", "", 0, "From"},                // a second, empty From
		{"From: a@x.example\r\n\r\nFrom: b@y.example\r\n", "x.example", 1, ""}, // the body is not the header
		{"From: ceo@Bücher.example, a@xn--bcher-kva.example\r\n\r\n", "xn--bcher-kva.example", 2, ""},
		{"From: a@ｅｘａｍｐｌｅ.com\r\n\r\n", "example.com", 1, ""}, // UTS #46 maps width
		{"From: a@" + strings.Repeat("x", 64) + ".example\r\n\r\n", "", 0, "63"},
		{"From: a@xn--zz.example\r\n\r\n", "", 0, "idna"},
		{"From: a@d1.example, b@d2.example, c@d3.example, d@d4.example, e@d5.example, f@d1.example\r\n\r\n",
			"d1.example d2.example d3.example d4.example d5.example", 6, ""},
		{"From: a@d1.example, b@d2.example, c@d3.example, d@d4.example, e@d5.example\r\nFrom: f@d6.example\r\n\r\n",
			"", 0, "more than 5 author domains"},
	}
	for _, c := range cases {
		ds, n, err := FromDomains([]byte(c.hdr))
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("FromDomains(%q) error %v, want %q", c.hdr, err, c.err)
			}
			continue
		}
		if err != nil || strings.Join(ds, " ") != c.domains || n != c.n {
			t.Errorf("FromDomains(%q) = %v, %d, %v; want %s, %d", c.hdr, ds, n, err, c.domains, c.n)
		}
	}
}

func TestASCIIDomain(t *testing.T) {
	cases := []struct{ in, out, err string }{
		{"Example.COM", "example.com", ""},
		{"bücher.example", "xn--bcher-kva.example", ""},
		{"xn--bcher-kva.example", "xn--bcher-kva.example", ""},
		{"x..example", "", "empty label"},
		{"x.example.", "", "empty label"},
		{"", "", "empty label"},
		{strings.Repeat("x", 64) + ".example", "", "63"},
		{strings.Repeat("x.", 127) + "xx", "", "253"},
		{"xn--zz.example", "", "idna"},
		{"[192.0.2.1]", "", "idna"},
	}
	for _, c := range cases {
		out, err := asciiDomain(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("asciiDomain(%q) = %q, %v; want an error with %q", c.in, out, err, c.err)
			}
			continue
		}
		if err != nil || out != c.out {
			t.Errorf("asciiDomain(%q) = %q, %v; want %q", c.in, out, err, c.out)
		}
	}
}

func FuzzFromDomains(f *testing.F) {
	f.Add([]byte("From: a@example.com\r\n\r\n"))
	f.Add([]byte("From: \"x\" <a@b>, c@d\r\nFrom: e@f\r\n"))
	f.Add([]byte("From:\r\n"))
	f.Fuzz(func(t *testing.T, hdr []byte) {
		ds, n, err := FromDomains(hdr)
		if err != nil {
			return
		}
		if len(ds) == 0 || n < len(ds) {
			t.Errorf("FromDomains(%q) = %v, %d", hdr, ds, n)
		}
		for _, d := range ds {
			if d == "" || d != strings.ToLower(d) {
				t.Errorf("FromDomains(%q): domain %q", hdr, d)
			}
		}
	})
}

func FuzzCleanDMARCRecord(f *testing.F) {
	f.Add("v=DMARC1; p=reject; sp=none; adkim=s; aspf=r; pct=50; rua=mailto:a@b")
	f.Add("v=DMARC1; rua=mailto:x@y; p=bogus")
	f.Add("v=DMARC1;;;=;p")
	f.Fuzz(func(t *testing.T, s string) {
		out, _, err := cleanDMARCRecord(s)
		if err != nil {
			return
		}
		// What we keep, the library must parse.
		if _, _, err := parseDMARCRecord(out); err != nil {
			t.Errorf("cleanDMARCRecord(%q) = %q, which does not parse: %v", s, out, err)
		}
	})
}
