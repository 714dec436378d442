package policy_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/mxgate/gatewayd/policy"
)

func TestListMatching(t *testing.T) {
	tests := []struct {
		typ     policy.ListType
		entries string
		yes, no []string
	}{
		{policy.ListCIDR, "10.0.0.0/8\n192.0.2.1\n2001:db8::/32\n::ffff:198.51.100.0/120\n0.0.0.0/32",
			[]string{"10.0.0.0", "10.255.255.255", "192.0.2.1", "2001:db8::1", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
				"::ffff:10.1.2.3", "198.51.100.200", "0.0.0.0"},
			[]string{"11.0.0.0", "9.255.255.255", "192.0.2.2", "2001:db9::", "", "junk", "fe80::1%eth0", "::"}},
		{policy.ListCIDR, "0.0.0.0/0", []string{"1.2.3.4", "255.255.255.255"}, []string{"::1"}},
		{policy.ListCIDR, "::/0", []string{"::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}, []string{"1.2.3.4"}},
		{policy.ListCIDR, "255.255.255.254/31\nffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127\n8000::/1",
			[]string{"255.255.255.255", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "8000::"}, []string{"255.255.255.253", "7fff::"}},
		// Adjacent and overlapping networks merge.
		{policy.ListCIDR, "10.0.0.0/25\n10.0.0.128/25\n10.0.0.64/26\n10.0.1.0/24\n2001:db8::/64\n2001:db8:0:1::/64",
			[]string{"10.0.0.0", "10.0.0.200", "10.0.1.255", "2001:db8:0:1:ffff::"}, []string{"10.0.2.0", "2001:db8:0:2::"}},
		{policy.ListDomain, "example.com\n*.sub.example.net\n.all.example.org\nTrailing.Dot.",
			[]string{"example.com", "EXAMPLE.COM.", "a.sub.example.net", "x.y.sub.example.net", "all.example.org", "a.all.example.org", "trailing.dot"},
			[]string{"www.example.com", "sub.example.net", "example.org", "xall.example.org", "", "com"}},
		{policy.ListAddress, "Alice@Example.com\n<bob@example.net>",
			[]string{"alice@example.com", "ALICE@EXAMPLE.COM", "bob@example.net", "<bob@example.net>"},
			[]string{"alice@example.org", "example.com", ""}},
		{policy.ListRegex, "^[0-9]+\\.dyn\\.\n(?i)^unknown$\nfoo#bar",
			[]string{"12.dyn.isp.test", "UNKNOWN", "xfoo#bar"}, []string{"a12.dyn.isp.test", "unknownx", ""}},
	}
	for _, tc := range tests {
		t.Run(string(tc.typ)+" "+strings.ReplaceAll(tc.entries, "\n", " "), func(t *testing.T) {
			l, err := policy.ParseList("l", tc.typ, strings.NewReader(tc.entries))
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range tc.yes {
				if !l.Contains(v) {
					t.Errorf("%q not matched", v)
				}
			}
			for _, v := range tc.no {
				if l.Contains(v) {
					t.Errorf("%q matched", v)
				}
			}
		})
	}
}

func TestListFileSyntax(t *testing.T) {
	src := "# a comment\n\n  10.0.0.0/8   # trailing comment\n\t192.0.2.1\r\n#10.1.0.0/16\n"
	entries, err := policy.ReadListEntries(strings.NewReader(src), policy.ListCIDR)
	if err != nil {
		t.Fatal(err)
	}
	want := []policy.ListEntry{{Value: "10.0.0.0/8", Line: 3, Column: 3}, {Value: "192.0.2.1", Line: 4, Column: 2}}
	if fmt.Sprint(entries) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", entries, want)
	}
	// In a regex list "#" is part of the expression unless it starts the line.
	entries, _ = policy.ReadListEntries(strings.NewReader("a #b\n# c\n"), policy.ListRegex)
	if len(entries) != 1 || entries[0].Value != "a #b" {
		t.Errorf("regex entries %v", entries)
	}
	_, err = policy.ParseList("bad", policy.ListDomain, strings.NewReader("ok.test\nno spaces.test\nx..y\n"))
	if err == nil || err.Error() != `list bad: 2:1: "no spaces.test" is not a domain name (character ' '); 3:1: "x..y" is not a domain name (empty or long label)` {
		t.Errorf("got %v", err)
	}
	if _, err := policy.ParseList("bad", policy.ListRegex, strings.NewReader("a(b\n")); err == nil {
		t.Error("bad regex accepted")
	}
	if _, err := policy.ParseList("bad", policy.ListAddress, strings.NewReader("nobody\n")); err == nil {
		t.Error("bad address accepted")
	}
}

// naiveCIDR is the obvious linear check the interval table must agree with.
type naiveCIDR []netip.Prefix

func (n naiveCIDR) contains(s string) bool {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range n {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func randomPrefix(r *rand.Rand) netip.Prefix {
	if r.IntN(3) == 0 {
		var b [16]byte
		b[0], b[1], b[2] = 0x20, 0x01, byte(r.IntN(4)) // cluster, so that networks overlap
		for i := 3; i < 16; i++ {
			b[i] = byte(r.IntN(256))
		}
		return netip.PrefixFrom(netip.AddrFrom16(b), 16+r.IntN(113)).Masked()
	}
	a := netip.AddrFrom4([4]byte{10, byte(r.IntN(4)), byte(r.IntN(256)), byte(r.IntN(256))})
	return netip.PrefixFrom(a, 8+r.IntN(25)).Masked()
}

func randomAddr(r *rand.Rand) string {
	if r.IntN(3) == 0 {
		var b [16]byte
		b[0], b[1], b[2] = 0x20, 0x01, byte(r.IntN(4))
		for i := 3; i < 16; i++ {
			b[i] = byte(r.IntN(256))
		}
		return netip.AddrFrom16(b).String()
	}
	return netip.AddrFrom4([4]byte{10, byte(r.IntN(5)), byte(r.IntN(256)), byte(r.IntN(256))}).String()
}

func TestCIDRAgainstNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 50 {
		var naive naiveCIDR
		var sb strings.Builder
		for range 1 + r.IntN(60) {
			p := randomPrefix(r)
			naive = append(naive, p)
			sb.WriteString(p.String() + "\n")
		}
		l, err := policy.ParseList("l", policy.ListCIDR, strings.NewReader(sb.String()))
		if err != nil {
			t.Fatal(err)
		}
		for range 500 {
			a := randomAddr(r)
			if got, want := l.Contains(a), naive.contains(a); got != want {
				t.Fatalf("round %d: Contains(%s) = %v, want %v; list:\n%s", round, a, got, want, sb.String())
			}
		}
	}
}

// FuzzParseList: any input must parse or fail without panicking, and a
// parsed CIDR list must agree with the linear check.
func FuzzParseList(f *testing.F) {
	f.Add(uint8(0), "10.0.0.0/8\n2001:db8::/32\n192.0.2.1 # x\n", "10.1.2.3")
	f.Add(uint8(1), "example.com\n*.a.test\n.b.test\n", "x.b.test")
	f.Add(uint8(2), "a@b.test\n<c@d.test>\n", "A@B.test")
	f.Add(uint8(3), "^a.*b$\n(?i)x\n", "aXb")
	f.Add(uint8(0), "::ffff:1.2.3.0/120\n0.0.0.0/0\n", "1.2.3.4")
	types := []policy.ListType{policy.ListCIDR, policy.ListDomain, policy.ListAddress, policy.ListRegex}
	f.Fuzz(func(t *testing.T, which uint8, src, probe string) {
		typ := types[int(which)%len(types)]
		l, err := policy.ParseList("f", typ, strings.NewReader(src))
		if err != nil {
			return
		}
		got := l.Contains(probe)
		if typ != policy.ListCIDR {
			return
		}
		entries, _ := policy.ReadListEntries(strings.NewReader(src), typ)
		var naive naiveCIDR
		for _, e := range entries {
			s := e.Value
			if !strings.Contains(s, "/") {
				a := netip.MustParseAddr(s)
				s += fmt.Sprintf("/%d", a.BitLen())
			}
			p := netip.MustParsePrefix(s)
			if p.Addr().Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			naive = append(naive, p.Masked())
		}
		if want := naive.contains(probe); got != want {
			t.Errorf("Contains(%q) = %v, want %v", probe, got, want)
		}
	})
}

func BenchmarkCIDRList100k(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	var sb strings.Builder
	for range 100_000 {
		if r.IntN(4) == 0 {
			var a [16]byte
			for i := range a {
				a[i] = byte(r.IntN(256))
			}
			sb.WriteString(netip.PrefixFrom(netip.AddrFrom16(a), 32+r.IntN(97)).Masked().String())
		} else {
			a := netip.AddrFrom4([4]byte{byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))})
			sb.WriteString(netip.PrefixFrom(a, 16+r.IntN(17)).Masked().String())
		}
		sb.WriteByte('\n')
	}
	l, err := policy.ParseList("big", policy.ListCIDR, strings.NewReader(sb.String()))
	if err != nil {
		b.Fatal(err)
	}
	probes := make([]string, 1024)
	for i := range probes {
		probes[i] = randomAddr(r)
		if i%2 == 0 {
			probes[i] = netip.AddrFrom4([4]byte{byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))}).String()
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for i := range b.N {
		if l.Contains(probes[i%len(probes)]) {
			n++
		}
	}
	_ = n
}
