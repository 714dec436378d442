package greylist

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// step is one attempt in a scenario: advance the clock, then check.
type step struct {
	advance    time.Duration
	ip         string
	from, to   string
	want       Action
	reason     Reason
	autoPasses int // if > 0, the network's pass count must be this
}

const (
	ip1  = "192.0.2.10"
	from = "alice@example.org"
	to   = "bob@example.net"
)

var semanticCases = []struct {
	name  string
	cfg   func(*Config)
	steps []step
}{
	{
		name: "first try deferred",
		steps: []step{
			{ip: ip1, from: from, to: to, want: Defer, reason: ReasonFirstSeen},
		},
	},
	{
		name: "early retry deferred and keeps first sight",
		steps: []step{
			{ip: ip1, from: from, to: to, want: Defer, reason: ReasonFirstSeen},
			{advance: time.Minute, ip: ip1, from: from, to: to, want: Defer, reason: ReasonTooEarly},
			{advance: 3*time.Minute + 59*time.Second, ip: ip1, from: from, to: to, want: Defer, reason: ReasonTooEarly},
			{advance: time.Second, ip: ip1, from: from, to: to, want: Pass, reason: ReasonRetried},
		},
	},
	{
		name: "retry after the delay passes and is remembered, refreshed on each pass",
		steps: []step{
			{ip: ip1, from: from, to: to, want: Defer, reason: ReasonFirstSeen},
			{advance: 6 * time.Minute, ip: ip1, from: from, to: to, want: Pass, reason: ReasonRetried},
			{advance: 30 * 24 * time.Hour, ip: ip1, from: from, to: to, want: Pass, reason: ReasonKnown},
			{advance: 34 * 24 * time.Hour, ip: ip1, from: from, to: to, want: Pass, reason: ReasonKnown},
			{advance: 35*24*time.Hour + time.Minute, ip: ip1, from: from, to: to, want: Defer, reason: ReasonFirstSeen},
		},
	},
	{
		name: "retry after the window starts over",
		steps: []step{
			{ip: ip1, from: from, to: to, want: Defer, reason: ReasonFirstSeen},
			{advance: 48*time.Hour + time.Second, ip: ip1, from: from, to: to, want: Defer, reason: ReasonFirstSeen},
			{advance: time.Minute, ip: ip1, from: from, to: to, want: Defer, reason: ReasonTooEarly},
			{advance: 4 * time.Minute, ip: ip1, from: from, to: to, want: Pass, reason: ReasonRetried},
		},
	},
	{
		name: "retry just inside the window passes",
		steps: []step{
			{ip: ip1, from: from, to: to, want: Defer, reason: ReasonFirstSeen},
			{advance: 48*time.Hour - time.Second, ip: ip1, from: from, to: to, want: Pass, reason: ReasonRetried},
		},
	},
	{
		name: "auto-allow after five passes counted at most once an hour",
		steps: []step{
			{ip: ip1, from: from, to: to, want: Defer, reason: ReasonFirstSeen},
			{advance: 5 * time.Minute, ip: ip1, from: from, to: to, want: Pass, reason: ReasonRetried, autoPasses: 1},
			// Within the hour: not counted again.
			{advance: 10 * time.Minute, ip: ip1, from: from, to: to, want: Pass, reason: ReasonKnown, autoPasses: 1},
			{advance: 49 * time.Minute, ip: ip1, from: from, to: to, want: Pass, reason: ReasonKnown, autoPasses: 1},
			{advance: time.Minute, ip: ip1, from: from, to: to, want: Pass, reason: ReasonKnown, autoPasses: 2},
			{advance: time.Hour, ip: "192.0.2.99", from: from, to: to, want: Pass, reason: ReasonKnown, autoPasses: 3},
			{advance: time.Hour, ip: ip1, from: from, to: to, want: Pass, reason: ReasonKnown, autoPasses: 4},
			// A new triplet from the network is still greylisted...
			{advance: time.Minute, ip: ip1, from: "carol@example.com", to: to, want: Defer, reason: ReasonFirstSeen, autoPasses: 4},
			{advance: time.Hour, ip: ip1, from: from, to: to, want: Pass, reason: ReasonKnown, autoPasses: 5},
			// ...until the fifth counted pass: now any triplet passes.
			{advance: time.Minute, ip: "192.0.2.200", from: "dave@example.com", to: "eve@example.net", want: AutoAllowed, reason: ReasonAutoAllow},
			{advance: 30 * 24 * time.Hour, ip: ip1, from: "x@y.example", to: to, want: AutoAllowed, reason: ReasonAutoAllow},
			// Another network is not allowed.
			{ip: "192.0.3.10", from: from, to: to, want: Defer, reason: ReasonFirstSeen},
			// Refreshed on each use: 30 more days are fine...
			{advance: 30 * 24 * time.Hour, ip: ip1, from: "z@y.example", to: to, want: AutoAllowed, reason: ReasonAutoAllow},
			// ...but 36 idle days end it, and counting starts over.
			{advance: 36 * 24 * time.Hour, ip: ip1, from: from, to: to, want: Defer, reason: ReasonFirstSeen, autoPasses: -1},
		},
	},
	{
		name: "auto-allow off",
		cfg:  func(c *Config) { c.AutoAllowAfter = 0 },
		steps: []step{
			{ip: ip1, from: from, to: to, want: Defer, reason: ReasonFirstSeen},
			{advance: 5 * time.Minute, ip: ip1, from: from, to: to, want: Pass, reason: ReasonRetried},
			{advance: 2 * time.Hour, ip: ip1, from: from, to: to, want: Pass, reason: ReasonKnown},
			{advance: 2 * time.Hour, ip: ip1, from: from, to: to, want: Pass, reason: ReasonKnown},
			{advance: 2 * time.Hour, ip: ip1, from: from, to: to, want: Pass, reason: ReasonKnown},
			{advance: 2 * time.Hour, ip: ip1, from: from, to: to, want: Pass, reason: ReasonKnown},
			{advance: 2 * time.Hour, ip: ip1, from: from, to: to, want: Pass, reason: ReasonKnown},
			{advance: 2 * time.Hour, ip: ip1, from: "new@example.org", to: to, want: Defer, reason: ReasonFirstSeen},
		},
	},
	{
		name: "IPv4 /24 grouping",
		steps: []step{
			{ip: "198.51.100.1", from: from, to: to, want: Defer, reason: ReasonFirstSeen},
			{advance: 5 * time.Minute, ip: "198.51.100.254", from: from, to: to, want: Pass, reason: ReasonRetried},
			{ip: "198.51.101.1", from: from, to: to, want: Defer, reason: ReasonFirstSeen},
			{ip: "::ffff:198.51.100.7", from: from, to: to, want: Pass, reason: ReasonKnown},
		},
	},
	{
		name: "IPv4 /32 grouping by config",
		cfg:  func(c *Config) { c.IPv4Prefix = 32 },
		steps: []step{
			{ip: "198.51.100.1", from: from, to: to, want: Defer, reason: ReasonFirstSeen},
			{advance: 5 * time.Minute, ip: "198.51.100.2", from: from, to: to, want: Defer, reason: ReasonFirstSeen},
		},
	},
	{
		name: "IPv6 /64 grouping",
		steps: []step{
			{ip: "2001:db8:1:2::1", from: from, to: to, want: Defer, reason: ReasonFirstSeen},
			{advance: 5 * time.Minute, ip: "2001:db8:1:2:ffff:ee:dd:cc", from: from, to: to, want: Pass, reason: ReasonRetried},
			{ip: "2001:db8:1:3::1", from: from, to: to, want: Defer, reason: ReasonFirstSeen},
		},
	},
	{
		name: "sender +tag and case",
		steps: []step{
			{ip: ip1, from: "<Alice+News@Example.ORG>", to: to, want: Defer, reason: ReasonFirstSeen},
			{advance: 5 * time.Minute, ip: ip1, from: "alice+other@example.org", to: to, want: Pass, reason: ReasonRetried},
			{ip: ip1, from: "alice@example.org", to: to, want: Pass, reason: ReasonKnown},
		},
	},
	{
		name: "SRS sender with a new hash and timestamp",
		steps: []step{
			{ip: ip1, from: "SRS0=HHH1=TT=orig.example=alice@fwd.example", to: to, want: Defer, reason: ReasonFirstSeen},
			{advance: 5 * time.Minute, ip: ip1, from: "srs0=zz9q=T2=orig.example=alice@fwd.example", to: to, want: Pass, reason: ReasonRetried},
			{ip: ip1, from: "SRS0=abcd=T3=other.example=alice@fwd.example", to: to, want: Defer, reason: ReasonFirstSeen},
		},
	},
	{
		name: "BATV sender with a new tag",
		steps: []step{
			{ip: ip1, from: "prvs=1234abcd5e=bob@example.com", to: to, want: Defer, reason: ReasonFirstSeen},
			{advance: 5 * time.Minute, ip: ip1, from: "prvs=9f8e7d6c5b=bob@example.com", to: to, want: Pass, reason: ReasonRetried},
			{ip: ip1, from: "bob@example.com", to: to, want: Pass, reason: ReasonKnown},
		},
	},
	{
		name: "VERP bounce address with a new id",
		steps: []step{
			{ip: ip1, from: "bounces-123-abc@lists.example.com", to: to, want: Defer, reason: ReasonFirstSeen},
			{advance: 5 * time.Minute, ip: ip1, from: "bounces-456-xyz@lists.example.com", to: to, want: Pass, reason: ReasonRetried},
			{ip: ip1, from: "list-bounces+bob=example.net@lists.example.com", to: to, want: Defer, reason: ReasonFirstSeen},
			{ip: ip1, from: "0100018c1a2b3c4d-5e6f7a8b-1111-2222-3333-444455556666-000000@ses.example.com", to: to, want: Defer, reason: ReasonFirstSeen},
			{advance: 5 * time.Minute, ip: ip1, from: "0100018cffee0011-99887766-aaaa-4bbb-8ccc-ddddeeee0f1f-000000@ses.example.com", to: to, want: Pass, reason: ReasonRetried},
		},
	},
	{
		name: "null sender is its own value",
		steps: []step{
			{ip: ip1, from: "", to: to, want: Defer, reason: ReasonFirstSeen},
			{advance: 5 * time.Minute, ip: ip1, from: "<>", to: to, want: Pass, reason: ReasonRetried},
			{ip: ip1, from: "mailer-daemon@example.org", to: to, want: Defer, reason: ReasonFirstSeen},
		},
	},
	{
		name: "recipient case, extension kept",
		steps: []step{
			{ip: ip1, from: from, to: "<Bob@Example.NET>", want: Defer, reason: ReasonFirstSeen},
			{advance: 5 * time.Minute, ip: ip1, from: from, to: "bob@example.net.", want: Pass, reason: ReasonRetried},
			{ip: ip1, from: from, to: "bob+x@example.net", want: Defer, reason: ReasonFirstSeen},
		},
	},
	{
		name: "short delay from config",
		cfg:  func(c *Config) { c.Delay = Duration(30 * time.Second); c.RetryWindow = Duration(time.Hour) },
		steps: []step{
			{ip: ip1, from: from, to: to, want: Defer, reason: ReasonFirstSeen},
			{advance: 30 * time.Second, ip: ip1, from: from, to: to, want: Pass, reason: ReasonRetried},
		},
	},
	{
		name: "static allow lists",
		cfg: func(c *Config) {
			c.AllowCIDRs = []string{"203.0.113.0/25", "2001:db8:ff::/48"}
			c.AllowDomains = []string{"partner.example"}
			c.AllowRecipients = []string{"postmaster@", "@open.example", "abuse@example.net"}
		},
		steps: []step{
			{ip: "203.0.113.5", from: from, to: to, want: Allowed, reason: ReasonAllowCIDR},
			{ip: "203.0.113.200", from: from, to: to, want: Defer, reason: ReasonFirstSeen},
			{ip: "2001:db8:ff:1::1", from: from, to: to, want: Allowed, reason: ReasonAllowCIDR},
			{ip: ip1, from: "x@mail.partner.example", to: to, want: Allowed, reason: ReasonAllowSender},
			{ip: ip1, from: "x@notpartner.example", to: to, want: Defer, reason: ReasonFirstSeen},
			{ip: ip1, from: from, to: "Postmaster@example.net", want: Allowed, reason: ReasonAllowRcpt},
			{ip: ip1, from: from, to: "anyone@open.example", want: Allowed, reason: ReasonAllowRcpt},
			{ip: ip1, from: from, to: "abuse@example.net", want: Allowed, reason: ReasonAllowRcpt},
			{ip: ip1, from: from, to: "abuse@example.com", want: Defer, reason: ReasonFirstSeen},
		},
	},
}

// TestSemantics runs the same scenarios against every store.
func TestSemantics(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind.name, func(t *testing.T) {
			for _, tc := range semanticCases {
				t.Run(tc.name, func(t *testing.T) {
					cfg := testConfig()
					if tc.cfg != nil {
						tc.cfg(&cfg)
					}
					runSteps(t, cfg, kind.new(t), tc.steps)
				})
			}
		})
	}
}

func runSteps(t *testing.T, cfg Config, st Store, steps []step) {
	t.Helper()
	clk := newClock()
	g := newGreylister(t, cfg, st, clk)
	for i, s := range steps {
		clk.Advance(s.advance)
		d := check(t, g, s.ip, s.from, s.to)
		if d.Action != s.want || d.Reason != s.reason {
			t.Fatalf("step %d (%s %s→%s): got %v/%s, want %v/%s (decision %+v)",
				i, s.ip, s.from, s.to, d.Action, d.Reason, s.want, s.reason, d)
		}
		if d.Action == Defer {
			if want := d.FirstSeen.Add(cfg.Delay.D()); !d.RetryAt.Equal(want) {
				t.Errorf("step %d: RetryAt %v, want first seen + delay %v", i, d.RetryAt, want)
			}
			if d.RetryAt.Before(clk.Now()) {
				t.Errorf("step %d: RetryAt %v before now %v", i, d.RetryAt, clk.Now())
			}
		}
		if s.reason == ReasonFirstSeen && !d.FirstSeen.Equal(clk.Now()) {
			t.Errorf("step %d: FirstSeen %v, want now %v", i, d.FirstSeen, clk.Now())
		}
		if s.autoPasses > 0 && d.Passes != s.autoPasses {
			t.Errorf("step %d: passes %d, want %d", i, d.Passes, s.autoPasses)
		}
		if s.autoPasses < 0 && d.Passes != 0 {
			t.Errorf("step %d: passes %d, want counting to start over", i, d.Passes)
		}
	}
}

// TestRedisTTLs checks that every key the script writes carries a TTL
// matching its role.
func TestRedisTTLs(t *testing.T) {
	st := newRedisStore(t)
	srv := sharedRedis(t)
	clk := newClock()
	cfg := testConfig()
	g := newGreylister(t, cfg, st, clk)
	ctx := context.Background()

	pttl := func(key string) time.Duration {
		t.Helper()
		d, err := st.Client().PTTL(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	near := func(what string, got, want time.Duration) {
		t.Helper()
		if got > want || got < want-time.Minute {
			t.Errorf("%s: PTTL %v, want about %v", what, got, want)
		}
	}
	n, _ := g.Normalize(Triplet{IP: netip.MustParseAddr(ip1), Sender: from, Recipient: to})
	keys := st.Keys(n)

	check(t, g, ip1, from, to)
	near("pending triplet", pttl(keys[0]), cfg.RetryWindow.D())
	clk.Advance(5 * time.Minute)
	check(t, g, ip1, from, to)
	near("passed triplet", pttl(keys[0]), cfg.PassTTL.D())
	near("auto-allow record", pttl(keys[1]), cfg.PassTTL.D())
	if _, err := g.Allow(ctx, Query{Network: ip1}, 3*time.Hour); err != nil {
		t.Fatal(err)
	}
	near("operator allow", pttl(keys[2]), 3*time.Hour)

	// Every key under our prefix has a TTL.
	all, err := st.Client().Keys(ctx, st.prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 {
		t.Errorf("keys = %v, want triplet, auto-allow and operator keys", all)
	}
	for _, k := range all {
		if d := pttl(k); d <= 0 {
			t.Errorf("key %q has no TTL (%v)", k, d)
		}
		if !strings.HasPrefix(k, st.prefix+"gl:{192.0.2.0/24}:") {
			t.Errorf("unexpected key name %q", k)
		}
	}
	if got, want := keys[0], st.prefix+"gl:{192.0.2.0/24}:t:alice@example.org:bob@example.net"; got != want {
		t.Errorf("triplet key %q, want %q", got, want)
	}
	_ = srv
}

// TestMemoryExpiry checks that memory entries go away at their expiry.
func TestMemoryExpiry(t *testing.T) {
	st := NewMemoryStore(100)
	clk := newClock()
	cfg := testConfig()
	g := newGreylister(t, cfg, st, clk)
	ctx := context.Background()
	check(t, g, ip1, from, to)            // pending, window 48h
	check(t, g, "198.51.100.1", from, to) // pending
	clk.Advance(5 * time.Minute)
	check(t, g, "198.51.100.1", from, to) // passed: 35d, plus an auto-allow record
	c, err := g.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.Triplets != 2 || c.Pending != 1 || c.Passed != 1 || c.CountingNetworks != 1 {
		t.Fatalf("counts %+v", c)
	}
	clk.Advance(48 * time.Hour)
	c, _ = g.Counts(ctx)
	if c.Triplets != 1 || c.Pending != 0 {
		t.Fatalf("after the window: counts %+v, want the pending triplet gone", c)
	}
	clk.Advance(35 * 24 * time.Hour)
	c, _ = g.Counts(ctx)
	if c != (Counts{}) {
		t.Fatalf("after pass_ttl: counts %+v, want nothing", c)
	}
	// Meeting expired entries drops them.
	st.Show(ctx, Normalized{Network: ClientNetwork(netip.MustParseAddr(ip1), 24, 64), Sender: NormalizeSender(from), Recipient: to}, clk.Now(), g.params, 10)
	check(t, g, "198.51.100.1", from, to)
	if n := st.Len(); n != 1 {
		t.Errorf("entries after expiry and one new triplet: %d, want 1 (expired entries dropped when met)", n)
	}
}

// TestMemoryCap checks the entry cap and its eviction order.
func TestMemoryCap(t *testing.T) {
	st := NewMemoryStore(10)
	clk := newClock()
	cfg := testConfig()
	cfg.AutoAllowAfter = 0
	g := newGreylister(t, cfg, st, clk)
	for i := 0; i < 25; i++ {
		check(t, g, ip1, "s"+strings.Repeat("x", i)+"@example.org", to)
		if st.Len() > 10 {
			t.Fatalf("store grew to %d entries, cap 10", st.Len())
		}
	}
	// The newest ten are kept: the last one retries and passes, the first
	// was evicted and is new again.
	clk.Advance(5 * time.Minute)
	if d := check(t, g, ip1, "s"+strings.Repeat("x", 24)+"@example.org", to); d.Action != Pass {
		t.Errorf("newest triplet: %+v", d)
	}
	if d := check(t, g, ip1, "s@example.org", to); d.Reason != ReasonFirstSeen {
		t.Errorf("oldest triplet should have been evicted: %+v", d)
	}
	// Expired entries are evicted before live ones.
	clk.Advance(49 * time.Hour) // every pending triplet expired; the passed one lives
	for i := 0; i < 9; i++ {
		check(t, g, "198.51.100.1", "n"+strings.Repeat("y", i)+"@example.org", to)
	}
	if d := check(t, g, ip1, "s"+strings.Repeat("x", 24)+"@example.org", to); d.Reason != ReasonKnown {
		t.Errorf("live passed triplet evicted before expired ones: %+v", d)
	}
}

func TestDisabled(t *testing.T) {
	cfg := testConfig()
	cfg.Enabled = false
	g := newGreylister(t, cfg, NewMemoryStore(10), newClock())
	if d := check(t, g, ip1, from, to); d.Action != Pass || d.Reason != ReasonDisabled {
		t.Fatalf("disabled: %+v", d)
	}
}

func TestCheckInvalidIP(t *testing.T) {
	g := newGreylister(t, testConfig(), NewMemoryStore(10), newClock())
	if _, err := g.Check(context.Background(), Triplet{Sender: from, Recipient: to}); err == nil {
		t.Fatal("no error for a missing client address")
	}
}

func TestMetricsCounted(t *testing.T) {
	m := NewMetrics()
	g, err := New(testConfig(), NewMemoryStore(10), WithClock(newClock().Now), WithMetrics(m))
	if err != nil {
		t.Fatal(err)
	}
	check(t, g, ip1, from, to)
	check(t, g, ip1, from, to)
	if v := counterValue(t, m.Decisions); v != 2 {
		t.Errorf("decisions = %v, want 2", v)
	}
	if v := counterValue(t, m.Latency); v != 2 {
		t.Errorf("latency samples = %v, want 2", v)
	}
}

// TestMemoryCapKeepsAllows: a flood of new triplets past the cap evicts
// triplets, not the operator's allow nor a network auto-allowed now.
func TestMemoryCapKeepsAllows(t *testing.T) {
	st := NewMemoryStore(20)
	clk := newClock()
	cfg := testConfig()
	cfg.AutoAllowAfter = 1
	cfg.PassCache = 0 // every decision asks the store
	g := newGreylister(t, cfg, st, clk)
	ctx := context.Background()
	if _, err := g.Allow(ctx, Query{Network: ip1}, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	// A partner network auto-allowed after one pass.
	partner := "198.18.0.10"
	check(t, g, partner, "a@partner.example", to)
	clk.Advance(6 * time.Minute)
	if d := check(t, g, partner, "a@partner.example", to); d.Action != Pass {
		t.Fatalf("partner retry: %+v", d)
	}
	if d := check(t, g, partner, "b@partner.example", to); d.Action != AutoAllowed {
		t.Fatalf("partner not auto-allowed: %+v", d)
	}
	for i := range 100 {
		// Distinct domains: the normalization folds numbers in local parts.
		check(t, g, fmt.Sprintf("198.51.100.%d", i), fmt.Sprintf("spam@%c%c.example", 'a'+i/26, 'a'+i%26), to)
		if st.Len() > 20 {
			t.Fatalf("store grew to %d entries, cap 20", st.Len())
		}
	}
	if d := check(t, g, ip1, "x@anything.example", to); d.Reason != ReasonOperatorAllow {
		t.Errorf("operator-allowed network after the flood: %+v", d)
	}
	if d := check(t, g, partner, "c@partner.example", to); d.Action != AutoAllowed {
		t.Errorf("auto-allowed network after the flood: %+v", d)
	}
}

// TestIsAllowByKind: eviction tells allows by the key's kind, not its
// end: a triplet whose recipient is "m" or "a" is no allow.
func TestIsAllowByKind(t *testing.T) {
	n := netip.MustParsePrefix("192.0.2.0/24")
	for _, rcpt := range []string{"m", "a"} {
		e := &memEntry{key: TripletKey(Normalized{Network: n, Sender: "s@x.example", Recipient: rcpt}), until: 1 << 62}
		if e.isAllow(0) {
			t.Errorf("triplet %s taken for an allow", e.key)
		}
	}
	if !(&memEntry{key: OperatorKey(n)}).isAllow(0) || !(&memEntry{key: AutoKey(n), until: 10}).isAllow(0) {
		t.Error("allows not recognised")
	}
}

// TestMemorySetMax: the cap changes without losing what fits under it; a
// lower cap evicts the least recently written at once, never an operator's
// allow.
func TestMemorySetMax(t *testing.T) {
	st := NewMemoryStore(10)
	clk := newClock()
	cfg := testConfig()
	cfg.AutoAllowAfter = 0
	g := newGreylister(t, cfg, st, clk)
	ctx := context.Background()
	if _, err := g.Allow(ctx, Query{Network: "203.0.113.0/24"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 9; i++ {
		check(t, g, ip1, "s"+strings.Repeat("x", i)+"@example.org", to)
	}
	if st.Len() != 10 {
		t.Fatalf("%d entries, want 10", st.Len())
	}
	st.SetMax(20, clk.Now())
	for i := 9; i < 15; i++ {
		check(t, g, ip1, "s"+strings.Repeat("x", i)+"@example.org", to)
	}
	if st.Len() != 16 {
		t.Fatalf("raised cap: %d entries, want 16", st.Len())
	}
	st.SetMax(5, clk.Now())
	if st.Len() != 5 {
		t.Fatalf("lowered cap: %d entries, want 5", st.Len())
	}
	clk.Advance(5 * time.Minute)
	if d := check(t, g, ip1, "s"+strings.Repeat("x", 14)+"@example.org", to); d.Action != Pass {
		t.Errorf("newest triplet lost: %+v", d)
	}
	if d := check(t, g, ip1, "s"+strings.Repeat("x", 9)+"@example.org", to); d.Reason != ReasonFirstSeen {
		t.Errorf("an old triplet was kept over the cap: %+v", d)
	}
	if d := check(t, g, "203.0.113.9", "a@example.org", to); d.Reason != ReasonOperatorAllow {
		t.Errorf("the operator's allow was evicted: %+v", d)
	}
}
