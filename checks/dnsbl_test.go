package checks

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

func newTestDNSBL(t *testing.T, r *Resolver, zones ...ZoneConfig) (*DNSBL, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	bl, err := NewDNSBL(DNSBLConfig{Zones: zones}, r, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return bl, &logs
}

func resultFor(t *testing.T, rs []ZoneResult, zone string) ZoneResult {
	t.Helper()
	for _, r := range rs {
		if r.Zone == zone {
			return r
		}
	}
	t.Fatalf("no result for zone %s in %+v", zone, rs)
	return ZoneResult{}
}

func TestDNSBLIP(t *testing.T) {
	srv := startDNS(t, "dnsbl.zone")
	srv.Timeout("17.2.0.192.bl.example")
	r := newResolver(t, srv, 300*time.Millisecond)
	w := 2.5
	bl, logs := newTestDNSBL(t, r,
		ZoneConfig{Zone: "bl.example", Weight: &w, Reason: "{subject} listed in {zone} ({code})"},
		ZoneConfig{Zone: "exact.example", Codes: []string{"127.0.0.2"}},
		ZoneConfig{Zone: "range.example", Codes: []string{"127.0.0.2-127.0.0.11"}},
		ZoneConfig{Zone: "mask.example", Codes: []string{"mask:0x04"}},
		ZoneConfig{Zone: "wl.example", Type: TypeAllow},
		ZoneConfig{Zone: "dbl.example", Kind: KindDomain},
	)

	type want struct {
		status ListStatus
		codes  []string
		reason string // substring
	}
	cases := []struct {
		ip    string
		zones map[string]want
	}{
		{"192.0.2.10", map[string]want{
			"bl.example":    {Listed, []string{"127.0.0.2"}, "see https://bl.example/q?192.0.2.10"},
			"exact.example": {Listed, []string{"127.0.0.2"}, "listed in exact.example"},
			"range.example": {Listed, []string{"127.0.0.2"}, ""},
			"mask.example":  {NotListed, nil, ""},
			"wl.example":    {Listed, []string{"127.0.10.3"}, "known good sender"},
		}},
		{"192.0.2.11", map[string]want{ // 127.0.0.4
			"bl.example":    {Listed, []string{"127.0.0.4"}, "192.0.2.11 listed in bl.example (127.0.0.4)"},
			"exact.example": {NotListed, nil, ""},
			"range.example": {Listed, []string{"127.0.0.4"}, ""},
			"mask.example":  {Listed, []string{"127.0.0.4"}, ""},
			"wl.example":    {NotListed, nil, ""},
		}},
		{"192.0.2.14", map[string]want{ // 127.0.0.11, .12 in mask.example
			"exact.example": {NotListed, nil, ""},
			"range.example": {Listed, []string{"127.0.0.11"}, ""},
			"mask.example":  {Listed, []string{"127.0.0.12"}, ""},
		}},
		{"192.0.2.15", map[string]want{ // 127.0.0.20 (.17 in mask.example): outside every filter
			"exact.example": {NotListed, nil, ""},
			"range.example": {NotListed, nil, ""},
			"mask.example":  {NotListed, nil, ""},
		}},
		{"192.0.2.12", map[string]want{ // 127.255.255.254: open resolver
			"bl.example": {ListError, []string{"127.255.255.254"}, ""},
		}},
		{"192.0.2.13", map[string]want{ // 10.0.0.1: outside 127/8
			"bl.example": {ListError, []string{"10.0.0.1"}, ""},
		}},
		{"192.0.2.16", map[string]want{ // a listing mixed with an error code
			"bl.example": {ListError, []string{"127.0.0.2", "127.255.255.252"}, ""},
		}},
		{"192.0.2.17", map[string]want{ // timeout
			"bl.example": {ListTemp, nil, ""},
		}},
		{"192.0.2.99", map[string]want{
			"bl.example": {NotListed, nil, ""},
			"wl.example": {NotListed, nil, ""},
		}},
		{"2001:db8::1", map[string]want{
			"bl.example": {Listed, []string{"127.0.0.3"}, "IPv6 listed"},
		}},
		{"::ffff:192.0.2.10", map[string]want{ // IPv4-mapped: queried as IPv4
			"bl.example": {Listed, []string{"127.0.0.2"}, ""},
		}},
	}
	for _, c := range cases {
		t.Run(c.ip, func(t *testing.T) {
			ip := netip.MustParseAddr(c.ip)
			rs := bl.StartIP(context.Background(), ip).Wait(context.Background())
			if len(rs) != 5 {
				t.Fatalf("%d results, want 5 (the ip zones)", len(rs))
			}
			for zone, w := range c.zones {
				got := resultFor(t, rs, zone)
				if got.Status != w.status || got.Listed != (w.status == Listed) || !slices.Equal(got.Codes, w.codes) {
					t.Errorf("%s: status %s listed %v codes %v (%s); want %s %v", zone, got.Status,
						got.Listed, got.Codes, got.Error, w.status, w.codes)
				}
				if !strings.Contains(got.Reason, w.reason) {
					t.Errorf("%s: reason %q, want it to contain %q", zone, got.Reason, w.reason)
				}
				if w.status != Listed && got.Reason != "" {
					t.Errorf("%s: reason %q for a non-listing", zone, got.Reason)
				}
				if (w.status == ListError || w.status == ListTemp) && got.Error == "" {
					t.Errorf("%s: no error text", zone)
				}
			}
		})
	}
	rs := bl.StartIP(context.Background(), netip.MustParseAddr("192.0.2.10")).Wait(context.Background())
	if got := resultFor(t, rs, "bl.example"); got.Weight != 2.5 || got.Type != TypeBlock || got.Kind != KindIP ||
		got.Query != "10.2.0.192.bl.example" || got.Subject != "192.0.2.10" {
		t.Errorf("bl.example result = %+v", got)
	}
	if got := resultFor(t, rs, "wl.example"); got.Weight != -1 || got.Type != TypeAllow {
		t.Errorf("wl.example result = %+v, want default weight -1 and type allow", got)
	}
	// TXT reasons are fetched only for listings.
	if n := srv.QueryCount("99.2.0.192.bl.example", dns.TypeTXT); n != 0 {
		t.Errorf("TXT asked %d times for a name not listed", n)
	}
	st := bl.Stats()["bl.example"]
	if st.ZoneErrors != 3 || st.TempErrors != 1 {
		t.Errorf("bl.example stats = %+v, want 3 zone errors and 1 temp error", st)
	}
	if !strings.Contains(logs.String(), "dnsbl zone error") {
		t.Errorf("zone errors not logged:\n%s", logs)
	}
}

func TestDNSBLDomain(t *testing.T) {
	srv := startDNS(t, "dnsbl.zone")
	srv.Timeout("slow.example.com.dbl.example")
	r := newResolver(t, srv, 300*time.Millisecond)
	bl, _ := newTestDNSBL(t, r,
		ZoneConfig{Zone: "bl.example"},
		ZoneConfig{Zone: "dbl.example", Kind: KindDomain, Codes: []string{"127.0.1.2-127.0.1.99"}},
	)
	cases := []struct {
		domain string
		status ListStatus
		reason string
	}{
		{"spam.example.net", Listed, "spam.example.net sends spam"},
		{"SPAM.Example.NET.", Listed, "spam.example.net sends spam"},
		{"badhelo.example.org", Listed, "listed in dbl.example"},
		{"clean.example.com", NotListed, ""},
		{"slow.example.com", ListTemp, ""},
	}
	for _, c := range cases {
		rs := bl.StartDomain(context.Background(), c.domain).Wait(context.Background())
		if len(rs) != 1 {
			t.Fatalf("%s: %d results, want 1 (the domain zone)", c.domain, len(rs))
		}
		if rs[0].Status != c.status || !strings.Contains(rs[0].Reason, c.reason) {
			t.Errorf("%s: %s %q (%s), want %s %q", c.domain, rs[0].Status, rs[0].Reason, rs[0].Error, c.status, c.reason)
		}
	}
	for _, d := range []string{"", "[192.0.2.1]", "192.0.2.1", "localhost", "bad..name"} {
		if rs := bl.StartDomain(context.Background(), d).Wait(context.Background()); len(rs) != 0 {
			t.Errorf("StartDomain(%q) = %+v, want no lookups", d, rs)
		}
	}
}

// TestDNSBLWaitDeadline: a result needed before its zone answers is a
// temperror, never a listing; Wait can be called again later.
func TestDNSBLWaitDeadline(t *testing.T) {
	srv := startDNS(t, "dnsbl.zone")
	release := srv.Hold("10.2.0.192.bl.example")
	defer release()
	r := newResolver(t, srv, 0)
	bl, _ := newTestDNSBL(t, r, ZoneConfig{Zone: "bl.example"})
	p := bl.StartIP(context.Background(), netip.MustParseAddr("192.0.2.10"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rs := p.Wait(ctx)
	if rs[0].Status != ListTemp || rs[0].Listed {
		t.Errorf("before the answer: %+v, want temperror", rs[0])
	}
	release()
	<-p.Done()
	if rs := p.Wait(context.Background()); rs[0].Status != Listed {
		t.Errorf("after the answer: %+v, want listed", rs[0])
	}
}

func TestDNSBLHealth(t *testing.T) {
	srv := startDNS(t, "dnsbl.zone")
	srv.Timeout("2.0.0.127.slow.example")
	r := newResolver(t, srv, 300*time.Millisecond)
	bl, logs := newTestDNSBL(t, r,
		ZoneConfig{Zone: "bl.example"},
		ZoneConfig{Zone: "dbl.example", Kind: KindDomain},
		ZoneConfig{Zone: "listall.example"},
		ZoneConfig{Zone: "empty.example"},
		ZoneConfig{Zone: "refused.example"},
		ZoneConfig{Zone: "slow.example"},
		ZoneConfig{Zone: "wl.example", Type: TypeAllow, NoHealthCheck: true},
	)
	if !bl.Healthy() {
		t.Error("Healthy() before any check = false, want true")
	}
	got := map[string]HealthState{}
	for _, h := range bl.CheckHealth(context.Background()) {
		got[h.Zone] = h.State
		if h.State != HealthOK && h.State != HealthUnknown && h.Detail == "" {
			t.Errorf("%s: %s without detail", h.Zone, h.State)
		}
	}
	want := map[string]HealthState{
		"bl.example":      HealthOK,
		"dbl.example":     HealthOK,
		"listall.example": HealthBroken,
		"empty.example":   HealthBroken,
		"refused.example": HealthBroken,
		"slow.example":    HealthUnreachable,
		"wl.example":      HealthUnknown,
	}
	for z, w := range want {
		if got[z] != w {
			t.Errorf("%s: health %s, want %s", z, got[z], w)
		}
	}
	if bl.Healthy() {
		t.Error("Healthy() = true with broken zones")
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "listall.example") {
		t.Errorf("health failures not logged at ERROR:\n%s", logs)
	}
	if n := bl.Stats()["listall.example"].HealthFailures; n != 1 {
		t.Errorf("listall.example health failures = %d, want 1", n)
	}

	// A broken zone's listings are not trusted: zone error, not listed.
	rs := bl.StartIP(context.Background(), netip.MustParseAddr("192.0.2.10")).Wait(context.Background())
	if res := resultFor(t, rs, "listall.example"); res.Listed || res.Status != ListError ||
		!strings.Contains(res.Error, "health check") {
		t.Errorf("listall.example result = %+v, want an untrusted zone error", res)
	}
	if res := resultFor(t, rs, "bl.example"); !res.Listed {
		t.Errorf("bl.example result = %+v, want listed", res)
	}

	// The metrics show it.
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(bl, r)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	failures := map[string]float64{}
	healthy := 0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "gatewayd_dnsbl_health_failures_total":
				failures[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			case "gatewayd_dnsbl_zone_healthy":
				healthy++
			}
		}
	}
	if healthy != 7 || failures["listall.example"] != 1 || failures["bl.example"] != 0 || failures["slow.example"] != 1 {
		t.Errorf("metrics: %d health series, failures %v", healthy, failures)
	}

	// Run checks at once and stops with its context.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { bl.Run(ctx); close(done) }()
	for bl.Stats()["listall.example"].HealthFailures < 2 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
}

func TestCodeFilter(t *testing.T) {
	cases := []struct {
		filter  string
		err     string
		match   []string
		noMatch []string
	}{
		{"127.0.0.2", "", []string{"127.0.0.2"}, []string{"127.0.0.3", "127.0.0.1"}},
		{" 127.0.0.2-127.0.0.11 ", "", []string{"127.0.0.2", "127.0.0.5", "127.0.0.11"}, []string{"127.0.0.1", "127.0.0.12"}},
		{"mask:0x04", "", []string{"127.0.0.4", "127.0.0.6", "127.0.1.12"}, []string{"127.0.0.2", "10.0.0.4"}},
		{"mask 0x0C", "", []string{"127.0.0.4", "127.0.0.8"}, []string{"127.0.0.2"}},
		{"MASK:12", "", []string{"127.0.0.8"}, []string{"127.0.0.3"}},
		{"127.0.0.300", `"127.0.0.300" is not an IPv4 address`, nil, nil},
		{"::1", `"::1" is not an IPv4 address`, nil, nil},
		{"127.0.0.9-127.0.0.2", "ends before it starts", nil, nil},
		{"127.0.0.2-x", `"x" is not an IPv4 address`, nil, nil},
		{"mask:0", "bitmask", nil, nil},
		{"mask:256", "bitmask", nil, nil},
		{"", "is not an IPv4 address", nil, nil},
	}
	for _, c := range cases {
		f, err := ParseCodeFilter(c.filter)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseCodeFilter(%q) error = %v, want %q", c.filter, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseCodeFilter(%q): %v", c.filter, err)
			continue
		}
		for _, a := range c.match {
			if !f.Match(netip.MustParseAddr(a)) {
				t.Errorf("%q does not match %s", c.filter, a)
			}
		}
		for _, a := range c.noMatch {
			if f.Match(netip.MustParseAddr(a)) {
				t.Errorf("%q matches %s", c.filter, a)
			}
		}
	}
}

func FuzzParseCodeFilter(f *testing.F) {
	for _, s := range []string{"127.0.0.2", "127.0.0.2-127.0.0.11", "mask:0x04", "mask 4", "1.2.3.4-", "-", "mask:"} {
		f.Add(s, "127.0.0.4")
	}
	f.Fuzz(func(t *testing.T, s, addr string) {
		cf, err := ParseCodeFilter(s)
		if err != nil {
			return
		}
		if a, err := netip.ParseAddr(addr); err == nil {
			m := cf.Match(a)
			if m && !a.Unmap().Is4() {
				t.Errorf("%q matches non-IPv4 %s", s, a)
			}
		}
		if cf.String() == "" {
			t.Errorf("empty String() for %q", s)
		}
	})
}

func TestReverseIP(t *testing.T) {
	cases := map[string]string{
		"192.0.2.1":   "1.2.0.192",
		"2001:db8::1": "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2",
	}
	for ip, want := range cases {
		if got := reverseIP(netip.MustParseAddr(ip)); got != want {
			t.Errorf("reverseIP(%s) = %s, want %s", ip, got, want)
		}
	}
}

func BenchmarkDNSBL(b *testing.B) {
	for _, c := range []struct {
		name  string
		cache int
	}{{"cached", 0}, {"uncached", -1}} {
		b.Run(c.name, func(b *testing.B) {
			srv := startDNS(b, "dnsbl.zone")
			r, err := NewResolver(DNSConfig{Servers: []string{srv.Addr()}, Timeout: testTimeout, CacheSize: c.cache})
			if err != nil {
				b.Fatal(err)
			}
			bl, err := NewDNSBL(DNSBLConfig{Zones: []ZoneConfig{{Zone: "bl.example"}, {Zone: "wl.example", Type: TypeAllow}}},
				r, slog.New(slog.DiscardHandler))
			if err != nil {
				b.Fatal(err)
			}
			ip := netip.MustParseAddr("192.0.2.10")
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				rs := bl.StartIP(ctx, ip).Wait(ctx)
				if !rs[0].Listed {
					b.Fatalf("%+v", rs)
				}
			}
		})
	}
}

// TestDNSBLCachedIsSynchronous: a second lookup of the same client is
// answered from the cache, complete when StartIP returns, and equal to the
// first.
func TestDNSBLCachedIsSynchronous(t *testing.T) {
	srv := startDNS(t, "dnsbl.zone")
	r := newResolver(t, srv, 300*time.Millisecond)
	bl, _ := newTestDNSBL(t, r, ZoneConfig{Zone: "bl.example"})
	ip := netip.MustParseAddr("192.0.2.10")
	first := bl.StartIP(context.Background(), ip).Wait(context.Background())
	before := srv.Queries()
	p := bl.StartIP(context.Background(), ip)
	select {
	case <-p.Done():
	default:
		t.Fatal("cached lookup still pending after StartIP returned")
	}
	second := p.Wait(context.Background())
	if !slices.EqualFunc(first, second, func(a, b ZoneResult) bool {
		return a.Status == b.Status && slices.Equal(a.Codes, b.Codes) && a.Reason == b.Reason
	}) {
		t.Errorf("cached answer differs:\n%v\n%v", first, second)
	}
	if srv.Queries() != before {
		t.Errorf("the cached lookup reached the server")
	}
	if !second[0].Listed {
		t.Errorf("want listed: %+v", second[0])
	}
}

func TestExpandReason(t *testing.T) {
	for _, tmpl := range []string{"", "plain", "{subject} listed in {zone} ({code})", "{zone}{zone}{", "{nope} {code", "{{subject}}", "x{code}y{subject}z"} {
		want := strings.NewReplacer("{subject}", "192.0.2.1", "{zone}", "bl.example", "{code}", "127.0.0.2").Replace(tmpl)
		if got := expandReason(tmpl, "192.0.2.1", "bl.example", "127.0.0.2"); got != want {
			t.Errorf("expandReason(%q) = %q, want %q", tmpl, got, want)
		}
	}
}

// TestDNSBLZoneOnce: one zone configured as both an ip and a domain zone
// is refused: its two metrics series would carry the same labels, and
// Gather (the /metrics scrape) would fail for every metric.
func TestDNSBLZoneOnce(t *testing.T) {
	srv := startDNS(t, "dnsbl.zone")
	r := newResolver(t, srv, 0)
	_, err := NewDNSBL(DNSBLConfig{Zones: []ZoneConfig{{Zone: "dbl.example"}, {Zone: "dbl.example", Kind: KindDomain}}},
		r, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), `dnsbl.zones[1].zone: "dbl.example" is also dnsbl.zones[0]`) {
		t.Fatalf("NewDNSBL with dbl.example as ip and domain zone: %v, want an error naming the key and the zone", err)
	}
	bl, _ := newTestDNSBL(t, r, ZoneConfig{Zone: "bl.example"}, ZoneConfig{Zone: "dbl.example", Kind: KindDomain})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(bl)
	if _, err := reg.Gather(); err != nil {
		t.Errorf("Gather: %v", err)
	}
}

// TestDNSBLLowerASCII: names are lower-cased in ASCII only (RFC 4343):
// the Kelvin sign is not the letter k, and a byte that is not UTF-8 is
// asked as it is, not as U+FFFD.
func TestDNSBLLowerASCII(t *testing.T) {
	srv := startDNS(t, "dnsbl.zone")
	r := newResolver(t, srv, 0)
	bl, _ := newTestDNSBL(t, r, ZoneConfig{Zone: "DBL.Example.", Kind: KindDomain})
	// ASCII letters are lowered byte by byte; an internationalised name
	// is asked as its A-label (UTS #46 maps it: the Kelvin sign is a K),
	// the form lists publish; one that is not a name is not asked.
	cases := map[string]string{ // domain: the name asked ("" none)
		"SPAM.Example.NET.":        "spam.example.net.dbl.example",
		"\u212Aevin.example.net":   "kevin.example.net.dbl.example",
		"\u00C9T\u00C9.example":    "xn--t-9fab.example.dbl.example",
		"\xffSPAM.example.net":     "",
		"xn--zz.example\u00e9.net": "",
	}
	for domain, want := range cases {
		rs := bl.StartDomain(context.Background(), domain).Wait(context.Background())
		if want == "" {
			if len(rs) != 0 {
				t.Errorf("StartDomain(%q) asked %+v, want nothing", domain, rs)
			}
			continue
		}
		if len(rs) != 1 || rs[0].Query != want || rs[0].Subject != strings.TrimSuffix(want, ".dbl.example") {
			t.Errorf("StartDomain(%q) asked %+v, want %q", domain, rs, want)
		}
	}
	// Two zones that differ outside ASCII are two zones.
	if _, err := NewDNSBL(DNSBLConfig{Zones: []ZoneConfig{{Zone: "\u212A.example"}, {Zone: "k.example"}}}, r, nil); err != nil {
		t.Errorf("zones \\u212A.example and k.example: %v", err)
	}
}

// TestDNSBLHealthUncached: the health check asks the test entries of the
// servers every time. Through the cache, the NXDOMAIN of 1.0.0.127 (kept
// for the SOA's hour here, up to 24 hours) hid a zone that began listing
// everything, while every new client was refused as listed.
func TestDNSBLHealthUncached(t *testing.T) {
	srv := startDNS(t)
	srv.AddRR(t, "hc.example. 3600 IN SOA ns.hc.example. h.hc.example. 1 3600 600 86400 3600")
	srv.AddRR(t, "2.0.0.127.hc.example. 300 IN A 127.0.0.2")
	clock := newFakeClock()
	r := newResolver(t, srv, 0, WithClock(clock.Now))
	bl, _ := newTestDNSBL(t, r, ZoneConfig{Zone: "hc.example"})
	if h := bl.CheckHealth(context.Background()); h[0].State != HealthOK {
		t.Fatalf("first check: %+v", h)
	}
	for _, q := range []string{"2.0.0.127.hc.example", "1.0.0.127.hc.example"} {
		if r.Cached(q, dns.TypeA) {
			t.Errorf("the health check put %s into the cache", q)
		}
	}
	// A lookup of 127.0.0.1 by a client puts its NXDOMAIN into the cache
	// for an hour; the next check must not read it.
	if rs := bl.StartIP(context.Background(), netip.MustParseAddr("127.0.0.1")).Wait(context.Background()); rs[0].Status != NotListed {
		t.Fatalf("127.0.0.1: %+v", rs[0])
	}
	// The zone now lists the world, 127.0.0.1 included (the wildcard alone
	// would not cover 1.0.0.127, under the existing 0.0.127: RFC 4592).
	srv.AddRR(t, "*.hc.example. 300 IN A 127.0.0.2")
	srv.AddRR(t, "1.0.0.127.hc.example. 300 IN A 127.0.0.2")
	clock.Advance(DefaultHealthInterval)
	if !r.Cached("1.0.0.127.hc.example", dns.TypeA) {
		t.Fatal("test setup: the NXDOMAIN of 1.0.0.127 is no longer cached")
	}
	h := bl.CheckHealth(context.Background())
	if h[0].State != HealthBroken || !strings.Contains(h[0].Detail, "1.0.0.127.hc.example is listed") {
		t.Errorf("health after the zone lists everything: %+v, want broken", h[0])
	}
	if n := srv.QueryCount("1.0.0.127.hc.example", dns.TypeA); n != 3 {
		t.Errorf("1.0.0.127.hc.example asked %d times, want 3 (two checks and the client)", n)
	}
	rs := bl.StartIP(context.Background(), netip.MustParseAddr("198.51.100.1")).Wait(context.Background())
	if rs[0].Listed || rs[0].Status != ListError {
		t.Errorf("a new client of the broken zone: %+v, want an untrusted zone error", rs[0])
	}
}

// TestDNSBLListedBeforeTXT: a listing is published when its A answer
// comes, before its TXT is asked; a caller whose wait ends while the TXT
// lookup runs gets the listing with the zone's reason, not a temperror.
func TestDNSBLListedBeforeTXT(t *testing.T) {
	srv := startDNS(t, "dnsbl.zone")
	const q = "10.2.0.192.bl.example"
	srv.Timeout(q, dns.TypeTXT)
	r := newResolver(t, srv, 500*time.Millisecond)
	bl, _ := newTestDNSBL(t, r, ZoneConfig{Zone: "bl.example", Reason: "{subject} listed in {zone}"})
	p := bl.StartIP(context.WithoutCancel(context.Background()), netip.MustParseAddr("192.0.2.10"))
	// The TXT query reaching the server means the A answer was handled.
	for srv.QueryCount(q, dns.TypeTXT) == 0 {
		select {
		case <-p.Done():
			t.Fatalf("done before the TXT was asked: %+v", p.Wait(context.Background()))
		case <-time.After(time.Millisecond):
		}
	}
	select {
	case <-p.Done():
		t.Fatal("done while the TXT lookup runs")
	default:
	}
	want := ZoneResult{Status: Listed, Listed: true, Codes: []string{"127.0.0.2"}, Reason: "192.0.2.10 listed in bl.example"}
	same := func(got ZoneResult) bool {
		return got.Status == want.Status && got.Listed && slices.Equal(got.Codes, want.Codes) &&
			got.Reason == want.Reason && got.Error == ""
	}
	now, cancel := context.WithCancel(context.Background())
	cancel()
	if got := p.Wait(now)[0]; !same(got) {
		t.Errorf("wait ended during the TXT lookup: %+v, want %+v", got, want)
	}
	// The TXT times out: the template stays.
	if got := p.Wait(context.Background())[0]; !same(got) {
		t.Errorf("after the TXT timeout: %+v, want %+v", got, want)
	}
}

// TestDNSBLCachedListingUncachedTXT: a listing whose A answer is cached
// but whose TXT is not (here its shorter TTL ran out) is complete when
// StartIP returns, with the zone's reason: the TXT is asked in the
// background, for the next connection, and never waited for.
func TestDNSBLCachedListingUncachedTXT(t *testing.T) {
	srv := startDNS(t, "dnsbl.zone")
	const q = "10.2.0.192.ttl.example"
	srv.AddRR(t, "ttl.example. 3600 IN SOA ns.ttl.example. h.ttl.example. 1 3600 600 86400 60")
	srv.AddRR(t, q+`. 300 IN A 127.0.0.2`)
	srv.AddRR(t, q+`. 60 IN TXT "first reason"`)
	clock := newFakeClock()
	r := newResolver(t, srv, 0, WithClock(clock.Now))
	bl, _ := newTestDNSBL(t, r, ZoneConfig{Zone: "ttl.example", Reason: "{subject} listed in {zone}"},
		ZoneConfig{Zone: "bl.example"})
	ip := netip.MustParseAddr("192.0.2.10")
	ctx := context.WithoutCancel(context.Background()) // as the gateway starts them
	if rs := bl.StartIP(ctx, ip).Wait(context.Background()); rs[0].Reason != "first reason" {
		t.Fatalf("first lookup: %+v", rs[0])
	}

	clock.Advance(2 * time.Minute) // the TXT expires, the A does not
	srv.Remove(q)
	srv.AddRR(t, q+`. 300 IN A 127.0.0.2`)
	srv.AddRR(t, q+`. 300 IN TXT "second reason"`)
	release := srv.Hold(q) // only the TXT can reach the server
	defer release()
	before := r.Stats()
	p := bl.StartIP(ctx, ip)
	select {
	case <-p.Done():
	default:
		t.Fatal("a lookup with its A answer cached is pending after StartIP returned")
	}
	rs := p.Wait(context.Background())
	if got := resultFor(t, rs, "ttl.example"); got.Status != Listed || got.Reason != "192.0.2.10 listed in ttl.example" {
		t.Errorf("A cached, TXT not: %+v, want listed with the zone's reason", got)
	}
	if got := resultFor(t, rs, "bl.example"); !strings.Contains(got.Reason, "https://bl.example/q?192.0.2.10") {
		t.Errorf("A and TXT cached: %+v, want the TXT as reason", got)
	}
	if after := r.Stats(); after.Timeouts != before.Timeouts || after.Errors != before.Errors {
		t.Errorf("StartIP returned after the held TXT lookup ended: %+v, then %+v", before, after)
	}

	// The background lookup fills the cache once the server answers.
	release()
	for i := 0; !r.Cached(q, dns.TypeTXT); i++ {
		if i == 5000 {
			t.Fatal("the TXT was not asked in the background")
		}
		time.Sleep(time.Millisecond)
	}
	now, cancel := context.WithCancel(context.Background())
	cancel()
	if rs := bl.StartIP(ctx, ip).Wait(now); rs[0].Reason != "second reason" {
		t.Errorf("after the background TXT lookup: %+v", rs[0])
	}

	// A listing without TXT (a cached NODATA) asks nothing more.
	bl.StartIP(ctx, netip.MustParseAddr("192.0.2.11")).Wait(context.Background())
	n := srv.Queries()
	if rs := bl.StartIP(ctx, netip.MustParseAddr("192.0.2.11")).Wait(now); rs[1].Reason != "listed in bl.example" {
		t.Errorf("192.0.2.11 in bl.example: %+v", rs[1])
	}
	if srv.Queries() != n {
		t.Errorf("%d queries for a listing whose answers are all cached", srv.Queries()-n)
	}
}
