package checks

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestSPF(t *testing.T) {
	srv := startDNS(t, "spf.zone")
	srv.Timeout("slow.spf.example")
	srv.Timeout("a6.spf.example", dns.TypeAAAA)
	srv.Timeout("mail6.spf.example", dns.TypeAAAA)
	srv.Timeout("a4.spf.example", dns.TypeA)
	s := NewSPF(SPFConfig{}, newResolver(t, srv, 300*time.Millisecond))

	cases := []struct {
		name, ip, helo, from string
		result               SPFStatus
		identity, domain     string
		errText              string // substring of Err
	}{
		{"pass", "192.0.2.10", "mx.client.example", "user@pass.spf.example", SPFPass, IdentityMailFrom, "pass.spf.example", ""},
		{"pass ipv6", "2001:db8::25", "mx.client.example", "user@pass.spf.example", SPFPass, IdentityMailFrom, "pass.spf.example", ""},
		{"fail", "198.51.100.1", "mx.client.example", "user@pass.spf.example", SPFFail, IdentityMailFrom, "pass.spf.example", ""},
		{"softfail", "198.51.100.1", "mx.client.example", "user@softfail.spf.example", SPFSoftFail, IdentityMailFrom, "softfail.spf.example", ""},
		{"neutral", "198.51.100.1", "mx.client.example", "user@neutral.spf.example", SPFNeutral, IdentityMailFrom, "neutral.spf.example", ""},
		{"none no record", "192.0.2.10", "mx.client.example", "user@nospf.spf.example", SPFNone, IdentityMailFrom, "nospf.spf.example", ""},
		{"none nxdomain", "192.0.2.10", "mx.client.example", "user@absent.spf.example", SPFNone, IdentityMailFrom, "absent.spf.example", ""},
		{"none single label", "192.0.2.10", "mx.client.example", "user@localhost", SPFNone, IdentityMailFrom, "localhost", "multi-label"},
		{"mx pass", "192.0.2.30", "mx.client.example", "user@mx.spf.example", SPFPass, IdentityMailFrom, "mx.spf.example", ""},
		{"include pass", "192.0.2.10", "mx.client.example", "user@inc.spf.example", SPFPass, IdentityMailFrom, "inc.spf.example", ""},
		{"case", "192.0.2.10", "mx.client.example", "User@PASS.SPF.Example", SPFPass, IdentityMailFrom, "pass.spf.example", ""},
		{"case ASCII only", "192.0.2.10", "mx.client.example", "user@\u00c9.SPF.example", SPFNone, IdentityMailFrom, "\u00c9.spf.example", ""},
		{"temperror timeout", "192.0.2.10", "mx.client.example", "user@slow.spf.example", SPFTempError, IdentityMailFrom, "slow.spf.example", "timeout"},
		{"temperror include timeout", "192.0.2.10", "mx.client.example", "user@incslow.spf.example", SPFTempError, IdentityMailFrom, "incslow.spf.example", ""},
		{"permerror two records", "192.0.2.10", "mx.client.example", "user@twice.spf.example", SPFPermError, IdentityMailFrom, "twice.spf.example", "multiple"},
		{"permerror syntax", "192.0.2.10", "mx.client.example", "user@syntax.spf.example", SPFPermError, IdentityMailFrom, "syntax.spf.example", ""},
		{"permerror lookup limit", "192.0.2.1", "mx.client.example", "user@many.spf.example", SPFPermError, IdentityMailFrom, "many.spf.example", "lookup limit"},
		{"permerror void lookups", "192.0.2.1", "mx.client.example", "user@void.spf.example", SPFPermError, IdentityMailFrom, "void.spf.example", "void lookup limit"},
		{"two void lookups allowed", "192.0.2.1", "mx.client.example", "user@void2.spf.example", SPFPass, IdentityMailFrom, "void2.spf.example", ""},
		{"null sender uses helo", "192.0.2.20", "helo.spf.example", "", SPFPass, IdentityHelo, "helo.spf.example", ""},
		{"null sender helo fail", "198.51.100.1", "helo.spf.example", "", SPFFail, IdentityHelo, "helo.spf.example", ""},
		{"null sender helo literal", "192.0.2.20", "[192.0.2.20]", "", SPFNone, IdentityHelo, "[192.0.2.20]", "literal"},
		{"no local part", "192.0.2.10", "mx.client.example", "@pass.spf.example", SPFPass, IdentityMailFrom, "pass.spf.example", ""},
		// "a" and "mx" ask the client's address type alone (RFC 7208
		// sections 5.3, 5.4): a timeout of that type is temperror, though
		// the other type answers; a timeout of the other type is no matter.
		{"a AAAA timeout ipv6", "2001:db8::40", "mx.client.example", "user@a6.spf.example", SPFTempError, IdentityMailFrom, "a6.spf.example", "timeout"},
		{"a AAAA timeout ipv4", "192.0.2.40", "mx.client.example", "user@a6.spf.example", SPFPass, IdentityMailFrom, "a6.spf.example", ""},
		{"mx AAAA timeout ipv6", "2001:db8::41", "mx.client.example", "user@mx6.spf.example", SPFTempError, IdentityMailFrom, "mx6.spf.example", "timeout"},
		{"mx AAAA timeout ipv4", "192.0.2.41", "mx.client.example", "user@mx6.spf.example", SPFPass, IdentityMailFrom, "mx6.spf.example", ""},
		{"a A timeout ipv4", "192.0.2.42", "mx.client.example", "user@a4.spf.example", SPFTempError, IdentityMailFrom, "a4.spf.example", "timeout"},
		{"a A timeout ipv6", "2001:db8::42", "mx.client.example", "user@a4.spf.example", SPFPass, IdentityMailFrom, "a4.spf.example", ""},
		{"exists ipv6 asks A", "2001:db8::99", "mx.client.example", "user@exists.spf.example", SPFPass, IdentityMailFrom, "exists.spf.example", ""},
		{"exists then a AAAA timeout ipv6", "2001:db8::40", "mx.client.example", "user@existsa6.spf.example", SPFTempError, IdentityMailFrom, "existsa6.spf.example", "timeout"},
		// exists asks A alone, for an IPv6 client too, and "a" the
		// client's type alone, even on the same name (see spfResolver).
		{"exists ipv6 AAAA only, IPv4-mapped", "2001:db8::99", "mx.client.example", "user@existsmapped.spf.example", SPFPass, IdentityMailFrom, "existsmapped.spf.example", ""},
		{"exists ipv4 AAAA only, IPv4-mapped", "192.0.2.1", "mx.client.example", "user@existsmapped.spf.example", SPFFail, IdentityMailFrom, "existsmapped.spf.example", ""},
		{"exists in include ipv6 AAAA only", "2001:db8::99", "mx.client.example", "user@incexists.spf.example", SPFPass, IdentityMailFrom, "incexists.spf.example", ""},
		{"exists ipv6 AAAA only is void", "2001:db8::99", "mx.client.example", "user@existsvoid.spf.example", SPFPermError, IdentityMailFrom, "existsvoid.spf.example", "void lookup limit"},
		{"exists AAAA timeout ipv6", "2001:db8::99", "mx.client.example", "user@exists6slow.spf.example", SPFPass, IdentityMailFrom, "exists6slow.spf.example", ""},
		{"exists A timeout ipv6", "2001:db8::99", "mx.client.example", "user@exists4slow.spf.example", SPFTempError, IdentityMailFrom, "exists4slow.spf.example", "timeout"},
		{"exists then a A timeout ipv6", "2001:db8::42", "mx.client.example", "user@existsa4.spf.example", SPFPass, IdentityMailFrom, "existsa4.spf.example", ""},
		{"a then exists on one name ipv6", "2001:db8::42", "mx.client.example", "user@existsboth.spf.example", SPFFail, IdentityMailFrom, "existsboth.spf.example", ""},
		{"exists then a on one name ipv6", "2001:db8::40", "mx.client.example", "user@bothexists.spf.example", SPFPass, IdentityMailFrom, "bothexists.spf.example", ""},
		{"exists expands to nothing ipv6", "2001:db8::1", "mx.client.example", "-@emptyexists.spf.example", SPFPermError, IdentityMailFrom, "emptyexists.spf.example", "invalid domain"},
		{"exists expands to nothing ipv4", "192.0.2.1", "mx.client.example", "-@emptyexists.spf.example", SPFPermError, IdentityMailFrom, "emptyexists.spf.example", "invalid domain"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := s.Check(context.Background(), netip.MustParseAddr(c.ip), c.helo, c.from)
			if r.Result != c.result || r.Identity != c.identity || r.Domain != c.domain {
				t.Errorf("got %s identity %s domain %s (err %q), want %s %s %s",
					r.Result, r.Identity, r.Domain, r.Err, c.result, c.identity, c.domain)
			}
			if c.errText != "" && !strings.Contains(r.Err, c.errText) {
				t.Errorf("Err = %q, want it to contain %q", r.Err, c.errText)
			}
			// A check its caller stopped waiting for is reported for the
			// same identity, sender and domain (DMARC aligns the domain).
			u := SPFUnfinished(netip.MustParseAddr(c.ip), c.helo, c.from, "did not finish")
			if u.Result != SPFTempError || u.Identity != r.Identity || u.Sender != r.Sender || u.Domain != r.Domain || u.Helo != r.Helo {
				t.Errorf("SPFUnfinished = %s %s %s %s, want temperror for Check's %s %s %s",
					u.Result, u.Identity, u.Sender, u.Domain, r.Identity, r.Sender, r.Domain)
			}
		})
	}
}

func TestReceivedSPF(t *testing.T) {
	cases := []struct {
		r    SPFResult
		want string
	}{
		{SPFResult{Result: SPFPass, Identity: IdentityMailFrom, Sender: "user@example.com", Domain: "example.com",
			Helo: "mx.example.com", IP: netip.MustParseAddr("192.0.2.1")},
			`pass (gw.example.net: domain of user@example.com designates 192.0.2.1 as permitted sender)` +
				` client-ip=192.0.2.1; envelope-from="user@example.com"; helo=mx.example.com; identity=mailfrom; receiver=gw.example.net;`},
		{SPFResult{Result: SPFTempError, Identity: IdentityHelo, Sender: "postmaster@h.example", Domain: "h.example",
			Helo: "h.example", IP: netip.MustParseAddr("2001:db8::1"), Err: "spf: lookup h.example: i/o timeout"},
			`temperror (gw.example.net: error in processing during lookup of domain of h.example)` +
				` client-ip="2001:db8::1"; envelope-from=""; helo=h.example; problem="spf: lookup h.example: i/o timeout"; identity=helo; receiver=gw.example.net;`},
		{SPFResult{Result: SPFFail, Identity: IdentityMailFrom, Sender: "a\"b@x(y).example", Domain: "x(y).example",
			Helo: "evil\r\nX-Injected: 1", IP: netip.MustParseAddr("192.0.2.1")},
			`fail (gw.example.net: domain of a"b@x\(y\).example does not designate 192.0.2.1 as permitted sender)` +
				` client-ip=192.0.2.1; envelope-from="a\"b@x(y).example"; helo="evilX-Injected: 1"; identity=mailfrom; receiver=gw.example.net;`},
	}
	for _, c := range cases {
		if got := c.r.ReceivedSPF("gw.example.net"); got != c.want {
			t.Errorf("ReceivedSPF =\n%s\nwant\n%s", got, c.want)
		}
	}
}

// TestSPFLocalPartWithAt: the domain of MAIL FROM:<"a@b"@example> follows
// the last "@", and %{l} stays the sender's own (its "@" written "%40",
// see librarySender), while the results show the sender as given.
func TestSPFLocalPartWithAt(t *testing.T) {
	srv := startDNS(t, "spf.zone")
	srv.AddRecords(&dns.A{Hdr: dns.RR_Header{Name: `"a%40b".l.spf.example.`, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
		A: net.IPv4(127, 0, 0, 2)})
	s := NewSPF(SPFConfig{}, newResolver(t, srv, 0))
	ctx := context.Background()
	ip := netip.MustParseAddr("192.0.2.10")

	for _, c := range []struct {
		from   string
		result SPFStatus
		domain string
	}{
		{`"a@b"@pass.spf.example`, SPFPass, "pass.spf.example"},
		{`"a@b"@macro.spf.example`, SPFPass, "macro.spf.example"},
		{`"c@d"@macro.spf.example`, SPFFail, "macro.spf.example"},
		{`"@"@pass.spf.example`, SPFPass, "pass.spf.example"},
	} {
		r := s.Check(ctx, ip, "mx.client.example", c.from)
		if r.Result != c.result || r.Domain != c.domain || r.Sender != c.from || r.Identity != IdentityMailFrom {
			t.Errorf("%s: got %s domain %q sender %q identity %s (err %q), want %s %q",
				c.from, r.Result, r.Domain, r.Sender, r.Identity, r.Err, c.result, c.domain)
		}
	}
	if n := srv.QueryCount(`"c%40d".l.spf.example`, dns.TypeA); n != 1 {
		t.Errorf(`%%{l} of "c@d": "c%%40d".l.spf.example asked %d times, want 1`, n)
	}
}

// TestMarkExists: the exists terms of an SPF record, as the library reads
// them, and only they, have their domain-spec marked (see spfResolver).
func TestMarkExists(t *testing.T) {
	const m = existsMark
	for _, c := range []struct{ in, want string }{
		{"v=spf1 exists:%{i}.x.example -all", "v=spf1 exists:%{i}.x.example" + m + " -all"},
		{"V=SPF1 -EXISTS:a.example ~exists:b.example ?Exists:c +exists:d", "V=SPF1 -EXISTS:a.example" + m + " ~exists:b.example" + m + " ?Exists:c" + m + " +exists:d" + m},
		{"v=spf1  exists:a.example", "v=spf1  exists:a.example" + m},
		{"v=spf1 exists: -all", "v=spf1 exists: -all"},
		{"v=spf1 a:exists.example mx:exists:x include:exists.example -all", "v=spf1 a:exists.example mx:exists:x include:exists.example -all"},
		{"v=spf1 redirect=exists.example", "v=spf1 redirect=exists.example"},
		{"v=spf1", "v=spf1"},
		{"v=spf10 exists:a.example", "v=spf10 exists:a.example"},
		{"note exists:a.example", "note exists:a.example"},
	} {
		if got := markExists(c.in); got != c.want {
			t.Errorf("markExists(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
