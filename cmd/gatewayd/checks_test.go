package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/mxgate/gatewayd/config"
	"github.com/mxgate/gatewayd/gateway"
	"github.com/mxgate/gatewayd/greylist"
	"github.com/mxgate/gatewayd/internal/redistest"
)

// TestReloadKeepsGreylistState: a reload that changes
// greylist.max_memory_entries keeps the in-process store's state (the
// README says the store keeps it across a reload) and applies the new cap.
func TestReloadKeepsGreylistState(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	policy := func() gateway.Evaluator { return gateway.DefaultPolicy }
	reg := prometheus.NewRegistry()
	cfg := config.Default()
	rc, err := buildChecks(cfg, reg, logger, policy, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, n := range []string{"203.0.113.0/24", "198.51.100.0/24", "192.0.2.0/24"} {
		if _, err := rc.greylist.Allow(ctx, greylist.Query{Network: n}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	cfg2 := config.Default()
	cfg2.Greylist.MaxMemoryEntries = 2
	nrc, err := buildChecks(cfg2, reg, logger, policy, rc)
	if err != nil {
		t.Fatal(err)
	}
	defer nrc.stop()
	rc.stop()
	c, err := nrc.greylist.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.OperatorAllowedNetworks == 0 {
		t.Fatalf("the reload emptied the store: %+v", c)
	}
	ms, ok := nrc.greylist.Store().(*greylist.MemoryStore)
	if !ok {
		t.Fatalf("store %T", nrc.greylist.Store())
	}
	if ms.Len() != 2 {
		t.Errorf("%d entries after lowering the cap to 2", ms.Len())
	}
}

// TestReloadClosesCarriedRedisStore: a Redis store carried over by a
// reload (greylist.redis unchanged) belongs to the new runtime, which
// closes it when a later reload changes greylist.redis and replaces it;
// the reload in between does not close it.
func TestReloadClosesCarriedRedisStore(t *testing.T) {
	rs := redistest.Start(t)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	policy := func() gateway.Evaluator { return gateway.DefaultPolicy }
	reg := prometheus.NewRegistry()
	ctx := context.Background()
	withRedis := func(edit func(*config.Config)) *config.Config {
		c := config.Default()
		c.Greylist.Redis.Addrs = []string{rs.Addr}
		edit(c)
		return c
	}
	rc0, err := buildChecks(withRedis(func(*config.Config) {}), reg, logger, policy, nil)
	if err != nil {
		t.Fatal(err)
	}
	first, ok := rc0.greylist.Store().(*greylist.RedisStore)
	if !ok {
		t.Fatalf("store %T", rc0.greylist.Store())
	}
	// Carried over: greylist.redis unchanged.
	rc1, err := buildChecks(withRedis(func(c *config.Config) { c.Greylist.MaxMemoryEntries = 1000 }), reg, logger, policy, rc0)
	if err != nil {
		t.Fatal(err)
	}
	if rc1.greylist.Store() != greylist.Store(first) {
		t.Fatal("the store was not carried over")
	}
	rc0.stop()
	if err := first.Client().Ping(ctx).Err(); err != nil {
		t.Fatalf("the runtime the store was carried from closed it: %v", err)
	}
	// Replaced: greylist.redis changed.
	rc2, err := buildChecks(withRedis(func(c *config.Config) { c.Greylist.Redis.DB = 1 }), reg, logger, policy, rc1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc2.stop()
	rc1.stop()
	if err := first.Client().Ping(ctx).Err(); !errors.Is(err, redis.ErrClosed) {
		t.Errorf("the replaced Redis store is still open (ping: %v): its client and pool leak", err)
	}
	if err := rc2.greylist.Store().(*greylist.RedisStore).Client().Ping(ctx).Err(); err != nil {
		t.Errorf("the new store: %v", err)
	}
}

// TestFailedReloadLeavesNothing: a rebuild that fails after the greylist
// block leaves the running runtime as it was and nothing of its own
// behind. A Redis store carried over is still the running runtime's, to
// close when it stops, and the failed rebuild does not close it; an
// in-process store carried over keeps its size and entries; the greylist
// metrics the failed rebuild registered are unregistered, so a later
// build can register its own.
//
// The step after the greylist block that can fail is the registration of
// the rule metrics, made when the running runtime has none: it was built
// without a registry here, and the rule metrics' names are taken.
func TestFailedReloadLeavesNothing(t *testing.T) {
	rs := redistest.Start(t)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	policy := func() gateway.Evaluator { return gateway.DefaultPolicy }
	ctx := context.Background()
	cfgWith := func(greylisting, redis bool, maxEntries int) *config.Config {
		c := config.Default()
		c.Greylist.Enabled = greylisting
		if redis {
			c.Greylist.Redis.Addrs = []string{rs.Addr}
		}
		c.Greylist.MaxMemoryEntries = maxEntries
		return c
	}
	cases := []struct {
		name      string
		running   *config.Config
		reloaded  *config.Config
		carryOver bool // the running store is carried over
	}{
		{"Redis store carried over", cfgWith(true, true, 100), cfgWith(true, true, 1000), true},
		{"memory store carried over, cap lowered", cfgWith(true, false, 100), cfgWith(true, false, 2), true},
		{"greylisting turned on", cfgWith(false, true, 100), cfgWith(true, true, 100), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			running, err := buildChecks(c.running, nil, logger, policy, nil)
			if err != nil {
				t.Fatal(err)
			}
			stopped := false
			defer func() {
				if !stopped {
					running.stop()
				}
			}()
			networks := []string{"203.0.113.0/24", "198.51.100.0/24", "192.0.2.0/24"}
			if running.greylist != nil {
				for _, n := range networks {
					if _, err := running.greylist.Allow(ctx, greylist.Query{Network: n}, time.Hour); err != nil {
						t.Fatal(err)
					}
				}
			}
			reg := prometheus.NewRegistry()
			taken := gateway.NewRuleMetrics()
			if err := taken.Register(reg); err != nil {
				t.Fatal(err)
			}
			if _, err := buildChecks(c.reloaded, reg, logger, policy, running); err == nil {
				t.Fatal("the rebuild did not fail")
			}
			var store greylist.Store
			if running.greylist != nil {
				store = running.greylist.Store()
			}
			if ms, ok := store.(*greylist.MemoryStore); ok && ms.Len() != len(networks) {
				t.Errorf("the running store has %d entries after the failed rebuild, want %d", ms.Len(), len(networks))
			}
			if store, ok := store.(*greylist.RedisStore); ok && c.carryOver {
				if err := store.Client().Ping(ctx).Err(); err != nil {
					t.Fatalf("the failed rebuild closed the running store: %v", err)
				}
				running.stop()
				stopped = true
				if err := store.Client().Ping(ctx).Err(); !errors.Is(err, redis.ErrClosed) {
					t.Errorf("the running store is still open once its runtime stopped (ping: %v): its client and pool leak", err)
				}
			}
			reg.Unregister(taken.Matches)
			reg.Unregister(taken.Errors)
			rc, err := buildChecks(cfgWith(true, true, 100), reg, logger, policy, nil)
			if err != nil {
				t.Fatalf("a build after the failed one: %v", err)
			}
			rc.stop()
		})
	}
}
