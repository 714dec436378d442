package checks

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/authres"
	"github.com/miekg/dns"
)

func TestAuthenticationResults(t *testing.T) {
	in := AuthResultsInput{
		IPRev: &IPRevResult{Result: "pass", IP: netip.MustParseAddr("192.0.2.1"), Name: "mx.example.com"},
		SPF:   &SPFResult{Result: SPFPass, Identity: IdentityMailFrom, Sender: "bounce@example.com", Domain: "example.com"},
		DKIM: &DKIMResult{Signatures: []DKIMSignature{
			{Domain: "example.com", Selector: "sel1", Algorithm: "rsa-sha256", Identifier: "@example.com", Result: DKIMPass, BPrefix: "abcdEFGH"},
			{Domain: "list.example", Selector: "ed", Algorithm: "ed25519-sha256", Identifier: "@list.example", Result: DKIMFail,
				Reason: "dkim: body hash did not verify", BPrefix: "zyxw1234"},
		}},
		DMARC: &DMARCResult{Result: DMARCFail, Domain: "example.com", Policy: "reject", Applied: "quarantine"},
	}
	got := AuthenticationResults("gw.example.net", in)
	want := "gw.example.net; iprev=pass policy.iprev=192.0.2.1" +
		"; spf=pass smtp.mailfrom=bounce@example.com" +
		"; dkim=pass header.a=rsa-sha256 header.b=abcdEFGH header.d=example.com header.i=@example.com header.s=sel1" +
		"; dkim=fail reason=\"dkim: body hash did not verify\" header.a=ed25519-sha256 header.b=zyxw1234 header.d=list.example header.i=@list.example header.s=ed" +
		"; dmarc=fail header.from=example.com policy.dmarc=quarantine policy.published-domain-policy=reject"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	// It parses back.
	id, results, err := authres.Parse(got)
	if err != nil || id != "gw.example.net" || len(results) != 5 {
		t.Errorf("authres.Parse: %q, %d results, %v", id, len(results), err)
	}

	// HELO identity, no signatures, hostile values.
	got = AuthenticationResults("gw.example.net", AuthResultsInput{
		SPF:  &SPFResult{Result: SPFNone, Identity: IdentityHelo, Helo: "evil\r\nX: y"},
		DKIM: &DKIMResult{},
	})
	want = "gw.example.net; spf=none smtp.helo=\"evilX: y\"; dkim=none"
	if got != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
	if got := AuthenticationResults("gw.example.net", AuthResultsInput{}); got != "gw.example.net; none" {
		t.Errorf("no results: %q", got)
	}
}

func TestStripAuthResults(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"ours removed",
			"Received: x\r\nAuthentication-Results: gw.example.net; spf=pass\r\nSubject: s\r\n\r\n",
			"Received: x\r\nSubject: s\r\n\r\n"},
		{"others kept",
			"Authentication-Results: other.example; spf=pass\r\nSubject: s\r\n\r\n",
			"Authentication-Results: other.example; spf=pass\r\nSubject: s\r\n\r\n"},
		{"case and folding",
			"AUTHENTICATION-RESULTS:\r\n  GW.Example.NET;\r\n\tdkim=pass\r\nSubject: s\r\n\r\n",
			"Subject: s\r\n\r\n"},
		{"comment before id",
			"Authentication-Results: (forged (nested)) gw.example.net 1; none\r\n\r\n",
			"\r\n"},
		{"quoted id",
			"Authentication-Results: \"gw.example.net\"; none\r\n\r\n",
			"\r\n"},
		{"space before colon",
			"Authentication-Results : gw.example.net; none\r\nX: y\r\n",
			"X: y\r\n"},
		{"prefix of our id is not ours",
			"Authentication-Results: gw.example.net.evil; none\r\nAuthentication-Results: gw.example; none\r\n\r\n",
			"Authentication-Results: gw.example.net.evil; none\r\nAuthentication-Results: gw.example; none\r\n\r\n"},
		{"ARC-Authentication-Results kept",
			"ARC-Authentication-Results: i=1; gw.example.net; none\r\n\r\n",
			"ARC-Authentication-Results: i=1; gw.example.net; none\r\n\r\n"},
		{"several, body untouched",
			"Authentication-Results: gw.example.net; a\r\nFrom: f\r\nAuthentication-Results: gw.example.net; b\r\n\r\nAuthentication-Results: gw.example.net; body\r\n",
			"From: f\r\n\r\nAuthentication-Results: gw.example.net; body\r\n"},
		{"LF only",
			"Authentication-Results: gw.example.net; a\n b\nFrom: f\n\n",
			"From: f\n\n"},
		{"no final line ending",
			"From: f\r\nAuthentication-Results: gw.example.net; a",
			"From: f\r\n"},
		{"empty", "", ""},
	}
	for _, c := range cases {
		in := []byte(c.in)
		got := StripAuthResults(in, "gw.example.net")
		if string(got) != c.want {
			t.Errorf("%s:\ngot  %q\nwant %q", c.name, got, c.want)
		}
		if string(in) != c.in {
			t.Errorf("%s: input modified", c.name)
		}
	}
}

func FuzzStripAuthResults(f *testing.F) {
	f.Add([]byte("Authentication-Results: gw.example.net; spf=pass\r\nSubject: s\r\n\r\nbody"), "gw.example.net")
	f.Add([]byte("Authentication-Results: (c\\) \"gw\"; x\r\n \r\n"), "gw")
	f.Add([]byte("\r\n"), "")
	f.Fuzz(func(t *testing.T, hdr []byte, id string) {
		orig := bytes.Clone(hdr)
		out := StripAuthResults(hdr, id)
		if !bytes.Equal(hdr, orig) {
			t.Fatal("input modified")
		}
		if len(out) > len(hdr) {
			t.Fatalf("output longer than input")
		}
		// Stripping is idempotent, and what is left is a subsequence of
		// whole fields: no field of ours survives.
		if again := StripAuthResults(out, id); !bytes.Equal(again, out) {
			t.Fatalf("not idempotent:\n%q\n%q", out, again)
		}
		end := len(out)
		if i := bytes.Index(out, []byte("\r\n\r\n")); i >= 0 {
			end = i
		}
		for _, f := range HeaderFields(append(bytes.Clone(out[:end]), "\r\n"...)) {
			if id != "" && strings.EqualFold(f.Name, "Authentication-Results") && strings.EqualFold(authservIDOf(f.Value), id) {
				t.Fatalf("field of ours kept: %q", f.Raw)
			}
		}
	})
}

func TestIPRev(t *testing.T) {
	srv := startDNS(t, "dns.zone")
	srv.Timeout("9.2.0.192.in-addr.arpa")
	srv.Timeout("dual4.cache.example", dns.TypeAAAA)
	srv.Timeout("dual6.cache.example", dns.TypeAAAA)
	srv.Timeout("slow4.cache.example", dns.TypeA)
	// 192.0.2.11's reverse name exists with no PTR record (NODATA).
	srv.AddRR(t, "11.2.0.192.in-addr.arpa. 300 IN TXT \"no PTR here\"")
	r := newResolver(t, srv, 300*time.Millisecond)
	cases := []struct {
		ip, result, name string
	}{
		{"192.0.2.1", "pass", "host.cache.example"},
		{"192.0.2.5", "fail", "liar.cache.example"},
		// No PTR data (NXDOMAIN, or NODATA) is permerror, not fail (RFC
		// 8601 section 2.7.3): fail is for names that do not resolve
		// back to the address.
		{"192.0.2.7", "permerror", ""},
		{"192.0.2.11", "permerror", ""},
		{"2001:db8::7", "permerror", ""},
		{"192.0.2.9", "temperror", ""},
		{"2001:db8::1", "pass", "host.cache.example"},
		{"192.0.2.6", "pass", "dual4.cache.example"},
		{"2001:db8::6", "temperror", ""},
		{"192.0.2.8", "temperror", ""},
	}
	for _, c := range cases {
		got := IPRev(context.Background(), r, netip.MustParseAddr(c.ip))
		if got.Result != c.result || got.Name != c.name {
			t.Errorf("IPRev(%s) = %+v, want %s %q", c.ip, got, c.result, c.name)
		}
	}
	// An IPv4 client's names are asked for A alone (RFC 8601 section 3).
	if n := srv.QueryCount("dual4.cache.example", dns.TypeAAAA); n != 0 {
		t.Errorf("IPRev of an IPv4 client asked AAAA %d times", n)
	}
}

// unfoldAR undoes AuthenticationResultsField's folding.
func unfoldAR(field string) string {
	return strings.ReplaceAll(strings.TrimSuffix(field, "\r\n"), "\r\n\t", " ")
}

// TestAuthenticationResultsField: the field is folded, one result a line
// and no line past 78 octets where no single value is longer, and unfolds
// to the value; a sender's many signatures or long values never make a
// line longer than RFC 5322's 998 octets.
func TestAuthenticationResultsField(t *testing.T) {
	var six []DKIMSignature
	for i := range 6 {
		six = append(six, DKIMSignature{Result: DKIMFail, Reason: "dkim: body hash did not verify",
			Algorithm: "rsa-sha256", BPrefix: fmt.Sprintf("AbCdEf%02d", i), Domain: "lists.example.org",
			Identifier: "@lists.example.org", Selector: "20230601"})
	}
	long := strings.Repeat("é", 1500)
	cases := []struct {
		name   string
		in     AuthResultsInput
		max    int // longest line allowed
		breaks int // at least this many line breaks
	}{
		{"none", AuthResultsInput{}, 78, 0},
		{"six failed signatures", AuthResultsInput{
			SPF:   &SPFResult{Result: SPFPass, Identity: IdentityMailFrom, Sender: "bounces+123@em.example.org"},
			DKIM:  &DKIMResult{Signatures: six},
			DMARC: &DMARCResult{Result: DMARCPass, Domain: "example.org", Policy: "reject"}}, 78, 8},
		{"long values", AuthResultsInput{
			SPF:  &SPFResult{Result: SPFPass, Identity: IdentityMailFrom, Sender: strings.Repeat("a", 3000) + "@x.example"},
			DKIM: &DKIMResult{Signatures: []DKIMSignature{{Result: DKIMFail, Reason: long, Domain: long}}}}, 998, 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := AuthenticationResultsField("mx.example.net", c.in)
			if !strings.HasPrefix(f, "Authentication-Results: ") || !strings.HasSuffix(f, "\r\n") {
				t.Fatalf("field %q", f)
			}
			if got, want := unfoldAR(f), "Authentication-Results: "+AuthenticationResults("mx.example.net", c.in); got != want {
				t.Errorf("unfolds to\n%q\nwant\n%q", got, want)
			}
			lines := strings.Split(strings.TrimSuffix(f, "\r\n"), "\r\n")
			if len(lines)-1 < c.breaks {
				t.Errorf("%d line breaks, want at least %d:\n%s", len(lines)-1, c.breaks, f)
			}
			for i, l := range lines {
				if len(l) > c.max {
					t.Errorf("line %d is %d octets, want at most %d: %q", i, len(l), c.max, l)
				}
				if i > 0 && !strings.HasPrefix(l, "\t") {
					t.Errorf("line %d does not begin with white space: %q", i, l)
				}
			}
			if _, results, err := authres.Parse(strings.TrimPrefix(unfoldAR(f), "Authentication-Results: ")); err != nil || len(results) == 0 && c.in != (AuthResultsInput{}) {
				t.Errorf("authres.Parse: %d results, %v", len(results), err)
			}
		})
	}
}
