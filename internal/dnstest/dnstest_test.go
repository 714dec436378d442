package dnstest

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func ask(t *testing.T, s *Server, network, name string, qtype uint16, edns uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	if edns > 0 {
		m.SetEdns0(edns, false)
	}
	c := &dns.Client{Net: network, Timeout: 2 * time.Second}
	in, _, err := c.Exchange(m, s.Addr())
	if err != nil {
		t.Fatalf("%s %s %s: %v", network, name, dns.TypeToString[qtype], err)
	}
	return in
}

func TestAnswers(t *testing.T) {
	s := Start(t, "testdata/example.zone")
	s.AddRR(t, `added.example.test. 120 IN TXT "from Go"`)

	cases := []struct {
		name    string
		qtype   uint16
		rcode   int
		answers int
		soa     bool
	}{
		{"www.example.test", dns.TypeA, dns.RcodeSuccess, 1, false},
		{"WWW.Example.Test", dns.TypeAAAA, dns.RcodeSuccess, 1, false},
		{"www.example.test", dns.TypeMX, dns.RcodeSuccess, 0, true}, // NODATA
		{"nope.example.test", dns.TypeA, dns.RcodeNameError, 0, true},
		{"alias.example.test", dns.TypeA, dns.RcodeSuccess, 2, false}, // CNAME + A
		{"x.wild.example.test", dns.TypeA, dns.RcodeSuccess, 1, false},
		{"b.deep.example.test", dns.TypeA, dns.RcodeSuccess, 0, true}, // empty non-terminal
		{"added.example.test", dns.TypeTXT, dns.RcodeSuccess, 1, false},
		{"other.invalid", dns.TypeA, dns.RcodeNameError, 0, false}, // no zone: no SOA
	}
	for _, c := range cases {
		for _, network := range []string{"udp", "tcp"} {
			in := ask(t, s, network, c.name, c.qtype, 0)
			if in.Rcode != c.rcode || len(in.Answer) != c.answers || (len(in.Ns) > 0) != c.soa {
				t.Errorf("%s %s %s: rcode %s, %d answers, %d ns; want %s, %d, soa %v",
					network, c.name, dns.TypeToString[c.qtype], dns.RcodeToString[in.Rcode],
					len(in.Answer), len(in.Ns), dns.RcodeToString[c.rcode], c.answers, c.soa)
			}
		}
	}
	in := ask(t, s, "udp", "split.example.test", dns.TypeTXT, 0)
	if got := in.Answer[0].(*dns.TXT).Txt; len(got) != 2 || got[0] != "part one " {
		t.Errorf("split TXT = %q", got)
	}
	if s.QueryCount("www.example.test", dns.TypeA) != 2 {
		t.Errorf("QueryCount(www A) = %d, want 2", s.QueryCount("www.example.test", dns.TypeA))
	}
	if s.Queries() != 2*len(cases)+1 {
		t.Errorf("Queries() = %d, want %d", s.Queries(), 2*len(cases)+1)
	}
	s.ResetQueries()
	if s.Queries() != 0 {
		t.Errorf("after ResetQueries, Queries() = %d", s.Queries())
	}
}

func TestTruncation(t *testing.T) {
	s := Start(t)
	for i := range 30 {
		s.AddRR(t, `big.example.test. IN TXT "`+strings.Repeat("x", 90)+string(rune('a'+i%26))+`"`)
	}
	in := ask(t, s, "udp", "big.example.test", dns.TypeTXT, 0)
	if !in.Truncated {
		t.Errorf("UDP answer of 30 large TXT not truncated")
	}
	in = ask(t, s, "udp", "big.example.test", dns.TypeTXT, 4096)
	if in.Truncated || len(in.Answer) != 30 {
		t.Errorf("UDP with EDNS 4096: truncated %v, %d answers", in.Truncated, len(in.Answer))
	}
	in = ask(t, s, "tcp", "big.example.test", dns.TypeTXT, 0)
	if in.Truncated || len(in.Answer) != 30 {
		t.Errorf("TCP: truncated %v, %d answers", in.Truncated, len(in.Answer))
	}
}

func TestServFailTimeoutHold(t *testing.T) {
	s := Start(t, "testdata/example.zone")
	s.ServFail("www.example.test")
	if in := ask(t, s, "udp", "www.example.test", dns.TypeA, 0); in.Rcode != dns.RcodeServerFailure {
		t.Errorf("ServFail: rcode %s", dns.RcodeToString[in.Rcode])
	}
	s.Clear("www.example.test")
	if in := ask(t, s, "udp", "www.example.test", dns.TypeA, 0); in.Rcode != dns.RcodeSuccess {
		t.Errorf("after Clear: rcode %s", dns.RcodeToString[in.Rcode])
	}

	s.Timeout("txt.example.test")
	m := new(dns.Msg)
	m.SetQuestion("txt.example.test.", dns.TypeTXT)
	c := &dns.Client{Timeout: 100 * time.Millisecond}
	_, _, err := c.Exchange(m, s.Addr())
	var ne net.Error
	if err == nil || !errorsAs(err, &ne) || !ne.Timeout() {
		t.Errorf("Timeout: err = %v, want a timeout", err)
	}

	release := s.Hold("www.example.test")
	done := make(chan *dns.Msg)
	go func() {
		m := new(dns.Msg)
		m.SetQuestion("www.example.test.", dns.TypeA)
		in, _, _ := (&dns.Client{Timeout: 5 * time.Second}).Exchange(m, s.Addr())
		done <- in
	}()
	for s.QueryCount("www.example.test", dns.TypeA) < 3 {
		time.Sleep(time.Millisecond)
	}
	release()
	release()
	if in := <-done; in == nil || len(in.Answer) != 1 {
		t.Errorf("held query: %v", in)
	}
}

func errorsAs(err error, target *net.Error) bool {
	ne, ok := err.(net.Error)
	if ok {
		*target = ne
	}
	return ok
}

func TestNewAndErrors(t *testing.T) {
	if _, err := New("testdata/missing.zone"); err == nil {
		t.Error("New with a missing file: no error")
	}
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Add(`bad record`); err == nil {
		t.Error("Add(bad record): no error")
	}
	if err := s.Add(""); err == nil {
		t.Error(`Add(""): no error`)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func FuzzParseZone(f *testing.F) {
	f.Add("$ORIGIN example.test.\n@ IN SOA ns hm 1 2 3 4 5\nwww 60 IN A 192.0.2.1\n")
	f.Add(`x.test. IN TXT "a" "b\"c"` + "\n")
	f.Add("$INCLUDE /etc/passwd\n")
	f.Fuzz(func(t *testing.T, zone string) {
		rrs, err := ParseZone(strings.NewReader(zone), "", "fuzz")
		if err != nil {
			return
		}
		s := &Server{rrs: map[string][]dns.RR{}}
		for _, rr := range rrs {
			s.addLocked(rr)
		}
	})
}
