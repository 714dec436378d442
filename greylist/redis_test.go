package greylist

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/gatewayd/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestRedisCluster runs the semantic suite through a ClusterClient and
// proves that every decision's keys share one hash slot.
func TestRedisCluster(t *testing.T) {
	c := redistest.StartCluster(t)
	st, err := NewRedisStore(RedisConfig{Addrs: c.Addrs, Cluster: true, KeyPrefix: "c:"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	cc, ok := st.Client().(*redis.ClusterClient)
	if !ok {
		t.Fatalf("client is %T, want *redis.ClusterClient", st.Client())
	}
	ctx := context.Background()

	// The semantic suite, each case under its own prefix.
	for i, tc := range semanticCases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			runSteps(t, cfg, NewRedisStoreClient(cc, fmt.Sprintf("c%d:", i)), tc.steps)
		})
	}

	// Many networks spread over the three masters; each decision's three
	// keys are in one slot, and the script ran without CROSSSLOT.
	clk := newClock()
	g := newGreylister(t, testConfig(), st, clk)
	slotsSeen := map[int64]bool{}
	nodesSeen := map[string]bool{}
	for i := 0; i < 60; i++ {
		ip := fmt.Sprintf("10.%d.%d.1", i/16, i%16)
		if i%2 == 1 {
			ip = fmt.Sprintf("2001:db8:%x::1", i)
		}
		d := check(t, g, ip, from, to)
		if d.Reason != ReasonFirstSeen {
			t.Fatalf("%s: %+v", ip, d)
		}
		clk.Advance(5 * time.Minute)
		if d := check(t, g, ip, from, to); d.Action != Pass {
			t.Fatalf("%s retry: %+v", ip, d)
		}
		if _, err := g.Allow(ctx, Query{Network: ip}, 24*time.Hour); err != nil {
			t.Fatal(err)
		}
		n, _ := g.Normalize(Triplet{IP: netip.MustParseAddr(ip), Sender: from, Recipient: to})
		var slot int64 = -1
		for _, k := range st.Keys(n) {
			if n, err := cc.Exists(ctx, k).Result(); err != nil || n != 1 {
				t.Fatalf("key %q missing: %v", k, err)
			}
			s, err := cc.ClusterKeySlot(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			if slot >= 0 && s != slot {
				t.Fatalf("keys of one decision in slots %d and %d: %v", slot, s, st.Keys(n))
			}
			slot = s
		}
		slotsSeen[slot] = true
		node, err := cc.MasterForKey(ctx, st.Keys(n)[0])
		if err != nil {
			t.Fatal(err)
		}
		nodesSeen[node.Options().Addr] = true
	}
	if len(nodesSeen) < 2 {
		t.Errorf("60 networks landed on %d node(s); the test proves little", len(nodesSeen))
	}

	// Operator operations work across the masters.
	cnt, err := g.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cnt.Passed != 60 || cnt.OperatorAllowedNetworks != 60 {
		t.Errorf("counts %+v, want 60 passed and 60 operator-allowed", cnt)
	}
	if sh, err := g.Show(ctx, Query{Network: "10.0.2.1"}); err != nil || len(sh.Triplets) != 1 || sh.OperatorAllowedUntil.IsZero() {
		t.Errorf("show: %+v %v", sh, err)
	}

	// The script itself refuses keys of different slots: the cluster does
	// check, so the tests above would have caught a bad key design.
	bad := []string{"c:gl:{10.0.0.0/24}:t:a:b", "c:gl:{10.9.9.0/24}:a", "c:gl:{10.0.0.0/24}:m"}
	err = decideScript.Run(ctx, cc, bad, 1, 1, 1, 1, 1, 1).Err()
	if err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Errorf("keys in different slots: err %v, want CROSSSLOT", err)
	}
}

// TestRedisSentinel decides through a Sentinel-found master.
func TestRedisSentinel(t *testing.T) {
	s := redistest.StartSentinel(t)
	st, err := NewRedisStore(RedisConfig{Addrs: []string{s.Addr}, MasterName: s.MasterName})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	runSteps(t, testConfig(), st, semanticCases[1].steps)
	// The state is in the master.
	if n, err := s.Master.Do("DBSIZE"); err != nil || n == "0" {
		t.Fatalf("master DBSIZE %q %v", n, err)
	}
}

// faultStore returns a greylister on a private redis-server, with a short
// deadline.
func faultSetup(t *testing.T, mode string) (*redistest.Server, *Greylister, *Metrics) {
	t.Helper()
	srv, g, m, _ := faultSetupClock(t, func(c *Config) { c.FailMode = mode })
	return srv, g, m
}

// faultSetupClock is faultSetup with the configuration changed by edit and
// the Greylister's clock returned.
func faultSetupClock(t *testing.T, edit func(*Config)) (*redistest.Server, *Greylister, *Metrics, *fakeClock) {
	t.Helper()
	srv, st := privateRedis(t)
	cfg := testConfig()
	cfg.Deadline = Duration(250 * time.Millisecond)
	edit(&cfg)
	m := NewMetrics()
	clock := newClock()
	g, err := New(cfg, st, WithClock(clock.Now), WithMetrics(m))
	if err != nil {
		t.Fatal(err)
	}
	return srv, g, m, clock
}

func wantStoreError(t *testing.T, d Decision, mode string) {
	t.Helper()
	if d.Reason != ReasonStoreError || d.Err == nil {
		t.Fatalf("want a store_error decision, got %+v", d)
	}
	switch mode {
	case FailOpen:
		if d.Action != Pass || !d.FailOpen {
			t.Fatalf("fail open: got %+v", d)
		}
	case FailClosed:
		if d.Action != Defer || d.FailOpen || d.RetryAt.IsZero() {
			t.Fatalf("fail closed: got %+v", d)
		}
	}
}

// waitHealthy retries decisions until the store answers again. It polls a
// real external event (a server coming back), bounded, not the rules.
func waitHealthy(t *testing.T, g *Greylister, ip string) Decision {
	t.Helper()
	for i := 0; i < 200; i++ {
		d := check(t, g, ip, from, to)
		if d.Reason != ReasonStoreError {
			return d
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("decisions did not recover after Redis came back")
	return Decision{}
}

func TestRedisDown(t *testing.T) {
	for _, mode := range []string{FailOpen, FailClosed} {
		t.Run(mode, func(t *testing.T) {
			srv, g, m := faultSetup(t, mode)
			if d := check(t, g, ip1, from, to); d.Reason != ReasonFirstSeen {
				t.Fatalf("healthy: %+v", d)
			}
			if err := srv.Stop(); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 3; i++ {
				wantStoreError(t, check(t, g, ip1, from, to), mode)
			}
			if v := counterValue(t, m.Failures.WithLabelValues(mode)); v != 3 {
				t.Errorf("failures{mode=%s} = %v, want 3", mode, v)
			}
			if v := counterValue(t, m.StoreErrors); v != 3 {
				t.Errorf("store errors = %v, want 3", v)
			}
			// Operator operations report the error rather than hang.
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if _, err := g.Counts(ctx); err == nil {
				t.Error("Counts on a stopped Redis: no error")
			}
		})
	}
}

func TestRedisStall(t *testing.T) {
	for _, mode := range []string{FailOpen, FailClosed} {
		t.Run(mode, func(t *testing.T) {
			srv, g, _ := faultSetup(t, mode)
			check(t, g, ip1, from, to) // a pooled connection exists
			if err := srv.Pause(); err != nil {
				t.Fatal(err)
			}
			d := check(t, g, ip1, from, to)
			wantStoreError(t, d, mode)
			if !errors.Is(d.Err, context.DeadlineExceeded) && !strings.Contains(d.Err.Error(), "timeout") {
				t.Errorf("stall error %v, want a deadline", d.Err)
			}
			if err := srv.Resume(); err != nil {
				t.Fatal(err)
			}
			if d := waitHealthy(t, g, ip1); d.Reason != ReasonTooEarly {
				t.Errorf("after resume: %+v, want the stored state back", d)
			}
		})
	}
}

func TestRedisDebugSleep(t *testing.T) {
	srv, g, _ := faultSetup(t, FailOpen)
	check(t, g, ip1, from, to)
	if err := srv.DebugSleep(1500 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	// The sleep command may not have reached the server's event loop yet;
	// one of a few decisions (250ms deadline each) must meet it.
	hit := false
	for i := 0; i < 5 && !hit; i++ {
		hit = check(t, g, ip1, from, to).Reason == ReasonStoreError
	}
	if !hit {
		t.Error("no decision missed the deadline while Redis slept")
	}
	waitHealthy(t, g, ip1)
}

func TestRedisRestart(t *testing.T) {
	srv, g, _ := faultSetup(t, FailOpen)
	if d := check(t, g, ip1, from, to); d.Reason != ReasonFirstSeen {
		t.Fatalf("before: %+v", d)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	wantStoreError(t, check(t, g, ip1, from, to), FailOpen)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	// Same Greylister, same client: it reconnects. The restarted server
	// has no data (no persistence), so the triplet is new again.
	if d := waitHealthy(t, g, ip1); d.Reason != ReasonFirstSeen {
		t.Fatalf("after restart: %+v", d)
	}
	if d := check(t, g, ip1, from, to); d.Reason != ReasonTooEarly {
		t.Fatalf("second decision after restart: %+v", d)
	}
}

// TestRedisStoreConfig checks the client chosen for each configuration.
func TestRedisStoreConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  RedisConfig
		want string
	}{
		{RedisConfig{Addrs: []string{"127.0.0.1:1"}}, "*redis.Client"},
		{RedisConfig{Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}}, "*redis.Client"},
		{RedisConfig{Addrs: []string{"127.0.0.1:1"}, Cluster: true}, "*redis.ClusterClient"},
		{RedisConfig{Addrs: []string{"127.0.0.1:1"}, MasterName: "m"}, "*redis.Client"},
	} {
		st, err := NewRedisStore(tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("%T", st.Client()); got != tc.want {
			t.Errorf("%+v: client %s, want %s", tc.cfg, got, tc.want)
		}
		_ = st.Close()
	}
	if _, err := NewRedisStore(RedisConfig{}); err == nil {
		t.Error("no addresses: no error")
	}
	if _, err := NewRedisStore(RedisConfig{Addrs: []string{"127.0.0.1:1"}, KeyPrefix: "{x}"}); err == nil {
		t.Error("braces in key prefix: no error")
	}
}

// TestPassCache: a pass the Redis store gave is answered from the gateway's
// own cache for greylist.pass_cache (even with Redis down), then the store
// is asked again; a deferral is never cached, so a retry before the delay
// still reaches the store.
func TestPassCache(t *testing.T) {
	srv, g, _, clock := faultSetupClock(t, func(c *Config) { c.PassCache = Duration(time.Minute) })
	delay := g.Config().Delay.D()
	if d := check(t, g, ip1, from, to); d.Action != Defer || d.Cached {
		t.Fatalf("first sight: %+v", d)
	}
	clock.Advance(time.Minute)
	if d := check(t, g, ip1, from, to); d.Reason != ReasonTooEarly || d.Cached {
		t.Fatalf("early retry: %+v (a deferral must not be cached)", d)
	}
	clock.Advance(delay)
	if d := check(t, g, ip1, from, to); d.Reason != ReasonRetried || d.Cached {
		t.Fatalf("retry after the delay: %+v", d)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	clock.Advance(30 * time.Second)
	d := check(t, g, ip1, from, to)
	if d.Action != Pass || d.Reason != ReasonKnown || !d.Cached || d.Err != nil {
		t.Fatalf("within pass_cache, Redis down: %+v, want a cached known pass", d)
	}
	if d := check(t, g, ip1, from, "other@example.com"); d.Reason != ReasonStoreError {
		t.Fatalf("another triplet with Redis down: %+v, want store_error (not cached)", d)
	}
	clock.Advance(30 * time.Second)
	if d := check(t, g, ip1, from, to); d.Reason != ReasonStoreError || d.Cached {
		t.Fatalf("pass_cache expired, Redis down: %+v, want store_error", d)
	}
}

func TestPassCacheBound(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	c := newPassCache(time.Minute, 3)
	o := Outcome{Action: Pass, Reason: ReasonRetried, NowAutoAllowed: true}
	for _, k := range []string{"a", "b", "c"} {
		c.put(k, now, o)
	}
	if got, ok := c.get("a", now); !ok || got.Reason != ReasonKnown || got.NowAutoAllowed {
		t.Fatalf("cached %+v %v: want a known pass, not the first one's flags", got, ok)
	}
	// Full with live entries: emptied, then the new one kept.
	c.put("d", now.Add(time.Second), o)
	if _, ok := c.get("a", now.Add(time.Second)); ok || len(c.m) != 1 {
		t.Fatalf("full cache not emptied: %d entries", len(c.m))
	}
	// Full with expired entries: only those go.
	c.put("e", now.Add(90*time.Second), o)
	c.put("f", now.Add(90*time.Second), o)
	c.put("g", now.Add(2*time.Minute), o) // d expired (put at +1s, ttl 1m), e and f live
	if len(c.m) != 3 {
		t.Fatalf("%d entries after sweeping expired ones, want 3", len(c.m))
	}
	if _, ok := c.get("d", now.Add(2*time.Minute)); ok {
		t.Fatal("expired entry answered")
	}
}

// TestAllowRemovalForgetsCachedPasses: after an operator allow is removed
// on this gateway, its cached "allowed" answers go with it.
func TestAllowRemovalForgetsCachedPasses(t *testing.T) {
	_, g, _, _ := faultSetupClock(t, func(c *Config) { c.PassCache = Duration(time.Minute) })
	ctx := context.Background()
	if _, err := g.Allow(ctx, Query{Network: ip1}, time.Hour); err != nil {
		t.Fatal(err)
	}
	check(t, g, ip1, from, to)
	if d := check(t, g, ip1, from, to); !d.Cached || d.Reason != ReasonOperatorAllow {
		t.Fatalf("second decision not from the cache: %+v", d)
	}
	if _, err := g.Allow(ctx, Query{Network: ip1}, 0); err != nil {
		t.Fatal(err)
	}
	if d := check(t, g, ip1, from, to); d.Action != Defer || d.Cached {
		t.Errorf("after the allow was removed: %+v", d)
	}
}

// TestRedisClockDecides: gateways sharing Redis decide on Redis' clock. A
// gateway whose own clock runs six minutes ahead (past the delay) still
// defers a retry sent right after another gateway first saw the triplet,
// and both pass it once the delay has passed on Redis' clock.
func TestRedisClockDecides(t *testing.T) {
	st := privateRedisStore(t)
	cfg := testConfig()
	cfg.Delay = Duration(time.Second)
	cfg.RetryWindow = Duration(time.Hour)
	a, err := New(cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	// b's clock is six minutes ahead; like a, it has no clock given, so
	// it decides on Redis' clock (the option only stands in for a host
	// whose clock is wrong).
	b, err := New(cfg, st, WithClock(func() time.Time { return time.Now().Add(6 * time.Minute) }))
	if err != nil {
		t.Fatal(err)
	}
	b.params.ServerClock = true
	if d := check(t, a, ip1, from, to); d.Action != Defer || d.Reason != ReasonFirstSeen {
		t.Fatalf("first sight on a: %+v", d)
	}
	if d := check(t, b, ip1, from, to); d.Action != Defer || d.Reason != ReasonTooEarly {
		t.Fatalf("retry at once on b, whose clock is ahead: %+v, want too_early", d)
	}
	time.Sleep(1100 * time.Millisecond)
	if d := check(t, b, ip1, from, to); d.Action != Pass {
		t.Fatalf("retry on b after the delay: %+v", d)
	}
	if d := check(t, a, ip1, from, to); d.Action != Pass || d.Reason != ReasonKnown {
		t.Fatalf("then on a: %+v", d)
	}
}

// TestRedisClockAllow: an operator allow set from a gateway whose clock is
// two hours behind lasts its hour on Redis' clock.
func TestRedisClockAllow(t *testing.T) {
	st := privateRedisStore(t)
	g, err := New(testConfig(), st, WithClock(func() time.Time { return time.Now().Add(-2 * time.Hour) }))
	if err != nil {
		t.Fatal(err)
	}
	g.params.ServerClock = true // a host whose clock is wrong (see TestRedisClockDecides)
	if _, err := g.Allow(context.Background(), Query{Network: ip1}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if d := check(t, g, ip1, from, to); d.Reason != ReasonOperatorAllow {
		t.Fatalf("after an hour's allow: %+v, want operator_allow", d)
	}
}

// TestRedisClockRetryAt: the retry time given to a gateway whose clock is
// ahead is on its own clock: "try again in N seconds" counts the delay.
func TestRedisClockRetryAt(t *testing.T) {
	st := privateRedisStore(t)
	ahead := func() time.Time { return time.Now().Add(6 * time.Minute) }
	g, err := New(testConfig(), st, WithClock(ahead))
	if err != nil {
		t.Fatal(err)
	}
	g.params.ServerClock = true // a host whose clock is wrong (see TestRedisClockDecides)
	d := check(t, g, ip1, from, to)
	if d.Action != Defer {
		t.Fatalf("first sight: %+v", d)
	}
	if wait := d.RetryAt.Sub(ahead()); wait < g.params.Delay-time.Minute || wait > g.params.Delay {
		t.Errorf("retry in %v on the gateway's clock, want about the delay %v", wait, g.params.Delay)
	}
}

// privateRedisStore is a RedisStore on a redis-server of the test's own.
func privateRedisStore(t *testing.T) *RedisStore {
	t.Helper()
	_, st := privateRedis(t)
	return st
}

// privateRedis is privateRedisStore with its server.
func privateRedis(t *testing.T) (*redistest.Server, *RedisStore) {
	t.Helper()
	srv := redistest.Start(t)
	st, err := NewRedisStore(RedisConfig{Addrs: []string{srv.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return srv, st
}

// TestRedisClockShow: on a gateway whose clock is two hours ahead, Show
// and Counts see the operator allow that decisions honour, with its end
// on the gateway's clock.
func TestRedisClockShow(t *testing.T) {
	st := privateRedisStore(t)
	ahead := func() time.Time { return time.Now().Add(2 * time.Hour) }
	g, err := New(testConfig(), st, WithClock(ahead))
	if err != nil {
		t.Fatal(err)
	}
	g.params.ServerClock = true // a host whose clock is wrong (see TestRedisClockDecides)
	ctx := context.Background()
	a, err := g.Allow(ctx, Query{Network: ip1}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if d := check(t, g, ip1, from, to); d.Reason != ReasonOperatorAllow {
		t.Fatalf("decision: %+v", d)
	}
	s, err := g.Show(ctx, Query{Network: ip1})
	if err != nil {
		t.Fatal(err)
	}
	if diff := s.OperatorAllowedUntil.Sub(a.Until); diff < -time.Second || diff > time.Second {
		t.Errorf("Show: allowed until %v, Allow said %v", s.OperatorAllowedUntil, a.Until)
	}
	c, err := g.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.OperatorAllowedNetworks != 1 {
		t.Errorf("Counts: %+v, want one operator-allowed network", c)
	}
}
