package checks

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// stray answers its questions from a script of answer records by name;
// rcode NXDOMAIN for names in nx.
func strayServer(t *testing.T, script map[string][]string, nx map[string]bool) *Resolver {
	t.Helper()
	r, _ := scriptedDNS(t, func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		name := req.Question[0].Name
		for _, s := range script[name] {
			rr, err := dns.NewRR(s)
			if err != nil {
				panic(err)
			}
			m.Answer = append(m.Answer, rr)
		}
		if nx[name] {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	return r
}

// TestResolverIgnoresOtherNames: records of the answer section owned by a
// name that is neither the one asked nor on its CNAME chain answer another
// question: they are not returned (a DNSBL listing of another address, a
// PTR name of another address), and an NXDOMAIN answer has no records.
func TestResolverIgnoresOtherNames(t *testing.T) {
	r := strayServer(t, map[string][]string{
		"other.test.": {"victim.test. 60 IN A 192.0.2.66"},
		"chain.test.": {"chain.test. 60 IN CNAME t.test.", "t.test. 60 IN A 192.0.2.9", "u.test. 60 IN A 192.0.2.10"},
		"case.test.":  {"CASE.Test. 60 IN A 192.0.2.11"},
		"nx.test.":    {"nx.test. 60 IN A 192.0.2.12"},
		"4.3.2.1.in-addr.arpa.": {
			"4.3.2.1.in-addr.arpa. 60 IN PTR mail.example.",
			"5.3.2.1.in-addr.arpa. 60 IN PTR forged.example.",
		},
	}, map[string]bool{"nx.test.": true})
	ctx := context.Background()
	for _, c := range []struct {
		name string
		want []string
	}{
		{"other.test", nil},
		{"chain.test", []string{"192.0.2.9"}},
		{"case.test", []string{"192.0.2.11"}},
		{"nx.test", nil},
	} {
		addrs, err := r.LookupA(ctx, c.name)
		var got []string
		for _, a := range addrs {
			got = append(got, a.String())
		}
		if len(got) != len(c.want) || len(got) > 0 && got[0] != c.want[0] {
			t.Errorf("LookupA(%s) = %v, %v; want %v", c.name, got, err, c.want)
		}
		if len(c.want) == 0 {
			if de, ok := err.(*net.DNSError); !ok || !de.IsNotFound {
				t.Errorf("LookupA(%s): error %v, want not found", c.name, err)
			}
		}
	}
	names, err := r.LookupAddr(ctx, "1.2.3.4")
	if err != nil || len(names) != 1 || names[0] != "mail.example." {
		t.Errorf("LookupAddr = %v, %v; want [mail.example.]", names, err)
	}

	// A DNSBL answer listing another address lists no one.
	dr := strayServer(t, map[string][]string{
		"4.3.2.1.bl.test.": {"5.3.2.1.bl.test. 60 IN A 127.0.0.2"},
	}, nil)
	bl, _ := newTestDNSBL(t, dr, ZoneConfig{Zone: "bl.test"})
	res := resultFor(t, bl.StartIP(ctx, netip.MustParseAddr("1.2.3.4")).Wait(ctx), "bl.test")
	if res.Status != NotListed {
		t.Errorf("DNSBL result %+v for another address's listing, want not listed", res)
	}
}

// TestResolverCNAMELoop: a CNAME loop (or an endless chain) is a server
// failure, as a recursive server reports it, not "no such name": a DNSBL
// must not take it for "not listed".
func TestResolverCNAMELoop(t *testing.T) {
	r := strayServer(t, map[string][]string{
		"loop.test.": {"loop.test. 60 IN CNAME loop2.test.", "loop2.test. 60 IN CNAME LOOP.test."},
		"4.3.2.1.bl.test.": {
			"4.3.2.1.bl.test. 60 IN CNAME x.bl.test.", "x.bl.test. 60 IN CNAME 4.3.2.1.bl.test.",
		},
	}, nil)
	ctx := context.Background()
	_, err := r.LookupA(ctx, "loop.test")
	if de, ok := err.(*net.DNSError); !ok || de.IsNotFound || !de.Temporary() {
		t.Errorf("CNAME loop: %v, want a temporary error", err)
	}
	bl, _ := newTestDNSBL(t, r, ZoneConfig{Zone: "bl.test"})
	res := resultFor(t, bl.StartIP(ctx, netip.MustParseAddr("1.2.3.4")).Wait(ctx), "bl.test")
	if res.Status != ListTemp {
		t.Errorf("DNSBL result %+v for a CNAME loop, want temperror", res)
	}
}

// TestResolverRefusesNonResponse: a message with our ID and question that
// is not a response (QR clear: the query echoed back, by a forwarding loop
// or anything else listening at the server's address) or not of opcode
// QUERY is no answer: a temporary failure, not NODATA (which a DNSBL takes
// for "not listed").
func TestResolverRefusesNonResponse(t *testing.T) {
	r, _ := scriptedDNS(t, func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		switch req.Question[0].Name {
		case "echo.test.", "4.3.2.1.bl.test.":
			m = req.Copy() // the query itself
		case "notify.test.":
			m.Opcode = dns.OpcodeNotify
		}
		w.WriteMsg(m)
	})
	ctx := context.Background()
	for _, name := range []string{"echo.test", "notify.test"} {
		_, err := r.LookupA(ctx, name)
		if de, ok := err.(*net.DNSError); !ok || de.IsNotFound || !de.Temporary() {
			t.Errorf("%s: %v, want a temporary error", name, err)
		}
	}
	bl, _ := newTestDNSBL(t, r, ZoneConfig{Zone: "bl.test"})
	res := resultFor(t, bl.StartIP(ctx, netip.MustParseAddr("1.2.3.4")).Wait(ctx), "bl.test")
	if res.Status != ListTemp {
		t.Errorf("DNSBL result %+v for an echoed query, want temperror", res)
	}
}
