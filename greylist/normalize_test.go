package greylist

import (
	"net/netip"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestNormalizeSender(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "<>"},
		{"<>", "<>"},
		{" < > ", "<>"},
		{"Alice@Example.ORG", "alice@example.org"},
		{"<alice@example.org>", "alice@example.org"},
		{"alice@example.org.", "alice@example.org"},
		{"alice+news@example.org", "alice@example.org"},
		{"+alice@example.org", "+alice@example.org"},
		{"@relay.example:alice@example.org", "alice@example.org"},
		// SRS
		{"SRS0=HHH=TT=orig.example=alice@fwd.example", "srs=orig.example=alice@fwd.example"},
		{"srs0+abcd=ZZ=orig.example=alice+tag@fwd.example", "srs=orig.example=alice@fwd.example"},
		{"SRS1=HHH=fwd1.example==HHH=TT=orig.example=alice@fwd2.example", "srs=orig.example=alice@fwd2.example"},
		{"srs0=broken@fwd.example", "srs#=broken@fwd.example"},
		// BATV
		{"prvs=1234abcd5e=bob@example.com", "bob@example.com"},
		{"msprvs1=17736abcde=bob@example.com", "bob@example.com"},
		{"btv1=123abc=bob@example.com", "bob@example.com"},
		{"bob=prvs=1234abcd5e@example.com", "bob@example.com"},
		// VERP and ids
		{"bounces-123-abc@lists.example.com", "bounces-#@lists.example.com"},
		{"bounce-mc.us5_123.456-bob=example.net@mcsv.example", "bounce-#@mcsv.example"},
		{"list-bounces+bob=example.net@lists.example.com", "list-bounces@lists.example.com"},
		{"newsletter-20240101@example.com", "newsletter-#@example.com"},
		{"john.smith1980@example.com", "john.smith#@example.com"},
		{"msg-a1b2c3d4e5@example.com", "msg-#@example.com"},
		{"0100018c1a2b3c4d-5e6f7a8b-1111-2222-3333-444455556666-000000@ses.example", "#@ses.example"},
		{"id-123-456-789-x@example.com", "id-#-x@example.com"},
		{"plain.name@example.com", "plain.name@example.com"},
		{"noat", "noat@"},
		{`"Quoted 123"@example.com`, `"quoted 123"@example.com`},
	}
	for _, tt := range tests {
		if got := NormalizeSender(tt.in); got != tt.want {
			t.Errorf("NormalizeSender(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestNormalizeRecipient(t *testing.T) {
	tests := []struct{ in, want string }{
		{"<Bob@Example.NET>", "bob@example.net"},
		{"bob+x@example.net.", "bob+x@example.net"},
		{"Postmaster", "postmaster"},
		{"<@relay.example:Bob@Example.NET>", "bob@example.net"}, // source route dropped
	}
	for _, tt := range tests {
		if got := NormalizeRecipient(tt.in); got != tt.want {
			t.Errorf("NormalizeRecipient(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	long := strings.Repeat("a", 1000) + "@example.net"
	if n := len(NormalizeRecipient(long)); n > maxPartLen {
		t.Errorf("long recipient kept %d bytes", n)
	}
}

func TestClientNetwork(t *testing.T) {
	tests := []struct {
		ip   string
		v4   int
		v6   int
		want string
	}{
		{"192.0.2.77", 24, 64, "192.0.2.0/24"},
		{"::ffff:192.0.2.77", 24, 64, "192.0.2.0/24"},
		{"192.0.2.77", 32, 64, "192.0.2.77/32"},
		{"2001:db8:1:2:3:4:5:6", 24, 64, "2001:db8:1:2::/64"},
		{"2001:db8:1:2:3:4:5:6", 24, 48, "2001:db8:1::/48"},
		{"fe80::1%eth0", 24, 64, "fe80::/64"},
	}
	for _, tt := range tests {
		if got := ClientNetwork(netip.MustParseAddr(tt.ip), tt.v4, tt.v6).String(); got != tt.want {
			t.Errorf("ClientNetwork(%s,/%d,/%d) = %s, want %s", tt.ip, tt.v4, tt.v6, got, tt.want)
		}
	}
}

func TestParseNetwork(t *testing.T) {
	good := map[string]string{
		"192.0.2.7":            "192.0.2.0/24",
		"192.0.2.0/24":         "192.0.2.0/24",
		"192.0.2.9/32":         "192.0.2.0/24",
		" 2001:db8::1 ":        "2001:db8::/64",
		"2001:db8::/64":        "2001:db8::/64",
		"::ffff:192.0.2.1":     "192.0.2.0/24",
		"::ffff:192.0.2.1/128": "192.0.2.0/24",
	}
	for in, want := range good {
		p, err := ParseNetwork(in, 24, 64)
		if err != nil || p.String() != want {
			t.Errorf("ParseNetwork(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
	for _, in := range []string{"", "192.0.2.0/16", "2001:db8::/32", "example.com", "192.0.2.300"} {
		if p, err := ParseNetwork(in, 24, 64); err == nil {
			t.Errorf("ParseNetwork(%q) = %v, want an error", in, p)
		}
	}
}

func TestParseDuration(t *testing.T) {
	good := map[string]time.Duration{
		"5m": 5 * time.Minute, "300ms": 300 * time.Millisecond, "35d": 35 * 24 * time.Hour,
		"1d12h": 36 * time.Hour, "-1h": -time.Hour, "0": 0, "-2d": -48 * time.Hour,
	}
	for in, want := range good {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "5", "1d-1h", "5x", "99999999999999999999d", "106751d23h47m16s854775808ns"} {
		if got, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", in, got)
		}
	}
}

func FuzzNormalizeSender(f *testing.F) {
	for _, s := range []string{
		"", "<>", "Alice+x@Example.org", "SRS0=a=b=c=d@e", "SRS1=a=b==c=d=e=f@g",
		"prvs=1=2@x", "a=prvs=1@x", "bounces-1-2@x", "@a,@b:c@d", `"q"@x`, "0-0-0-0@x",
		"srs0=srs0=a=b=c=d=e@f",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := NormalizeSender(s)
		if got == "" {
			t.Fatalf("NormalizeSender(%q) is empty", s)
		}
		if len(got) > maxPartLen {
			t.Fatalf("NormalizeSender(%q) = %d bytes", s, len(got))
		}
		if got != NormalizeSender(s) {
			t.Fatalf("NormalizeSender(%q) not deterministic", s)
		}
		// ASCII case never matters.
		if utf8.ValidString(s) {
			up := strings.Map(func(r rune) rune {
				if r >= 'a' && r <= 'z' {
					return r - 'a' + 'A'
				}
				return r
			}, s)
			if g2 := NormalizeSender(up); g2 != got {
				t.Fatalf("case changes the result: %q → %q, %q → %q", s, got, up, g2)
			}
		}
		if got != NullSender && !strings.Contains(got, "@") && len(got) < maxPartLen {
			t.Fatalf("NormalizeSender(%q) = %q has no @", s, got)
		}
		_ = NormalizeRecipient(s)
	})
}

func FuzzParseNetwork(f *testing.F) {
	for _, s := range []string{"192.0.2.1", "192.0.2.0/24", "2001:db8::/64", "::ffff:1.2.3.4/120", "1.2.3.4/33", "fe80::1%x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseNetwork(s, 24, 64)
		if err != nil {
			return
		}
		want := 64
		if p.Addr().Is4() {
			want = 24
		}
		if p.Bits() != want || p != p.Masked() || p.Addr().Zone() != "" {
			t.Fatalf("ParseNetwork(%q) = %v: not a masked /%d", s, p, want)
		}
		// The result parses to itself.
		if q, err := ParseNetwork(p.String(), 24, 64); err != nil || q != p {
			t.Fatalf("ParseNetwork(%q) = %v, %v", p.String(), q, err)
		}
	})
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"5m", "35d", "1d2h", "-3d", "1.5h", "d", "9223372036854775807ns"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			return
		}
		// What String writes reads back the same.
		if d2, err := ParseDuration(d.String()); err != nil || d2 != d {
			t.Fatalf("ParseDuration(%q) = %v; reparse %v, %v", s, d, d2, err)
		}
	})
}

// TestTripletKeysDistinct: the ':' between sender and recipient cannot be
// forged by either part; splitTriplet gives both parts back.
func TestTripletKeysDistinct(t *testing.T) {
	n := netip.MustParsePrefix("192.0.2.0/24")
	a := Normalized{Network: n, Sender: "evil@spam.example", Recipient: "x:bob@example.net"}
	b := Normalized{Network: n, Sender: "evil@spam.example:x", Recipient: "bob@example.net"}
	if TripletKey(a) == TripletKey(b) {
		t.Fatalf("two triplets share the key %s", TripletKey(a))
	}
	for _, tr := range []Normalized{a, b, {Network: n, Sender: "a%3a@x", Recipient: "b%@y"}} {
		rest := strings.TrimPrefix(TripletKey(tr), netTag(n)+":t:")
		if s, r := splitTriplet(rest); s != tr.Sender || r != tr.Recipient {
			t.Errorf("splitTriplet(%q) = %q, %q; want %q, %q", rest, s, r, tr.Sender, tr.Recipient)
		}
	}
	plain := Normalized{Network: n, Sender: "alice@example.org", Recipient: "bob@example.net"}
	if got := TripletKey(plain); got != "gl:{192.0.2.0/24}:t:alice@example.org:bob@example.net" {
		t.Errorf("plain key changed: %s", got)
	}
}
