package greylist

import (
	"context"
	"testing"
	"time"
)

// TestPassCacheEndsWithTheGrant: a cached answer never outlives what the
// store granted. An operator allow shorter than greylist.pass_cache, or a
// pass whose pass_ttl ends first, is asked again once it has ended: the
// store would now defer, and so does the gateway.
func TestPassCacheEndsWithTheGrant(t *testing.T) {
	t.Run("operator allow", func(t *testing.T) {
		_, g, _, clock := faultSetupClock(t, func(c *Config) { c.PassCache = Duration(time.Minute) })
		if _, err := g.Allow(context.Background(), Query{Network: ip1}, 20*time.Second); err != nil {
			t.Fatal(err)
		}
		if d := check(t, g, ip1, from, to); d.Reason != ReasonOperatorAllow || d.Cached {
			t.Fatalf("during the allow: %+v", d)
		}
		clock.Advance(10 * time.Second)
		if d := check(t, g, ip1, from, to); d.Reason != ReasonOperatorAllow || !d.Cached {
			t.Fatalf("during the allow, again: %+v, want it from the cache", d)
		}
		clock.Advance(15 * time.Second) // the allow ended 5s ago
		if d := check(t, g, ip1, from, to); d.Action != Defer || d.Cached {
			t.Fatalf("after the allow ended: %+v, want the store's deferral", d)
		}
	})
	t.Run("pass_ttl", func(t *testing.T) {
		_, g, _, clock := faultSetupClock(t, func(c *Config) {
			c.PassCache = Duration(time.Minute)
			c.PassTTL = Duration(20 * time.Second)
		})
		check(t, g, ip1, from, to)
		clock.Advance(g.Config().Delay.D())
		if d := check(t, g, ip1, from, to); d.Reason != ReasonRetried {
			t.Fatalf("retry after the delay: %+v", d)
		}
		clock.Advance(10 * time.Second)
		if d := check(t, g, ip1, from, to); d.Reason != ReasonKnown || !d.Cached {
			t.Fatalf("within pass_ttl: %+v, want it from the cache", d)
		}
		clock.Advance(15 * time.Second) // the pass expired 5s ago
		if d := check(t, g, ip1, from, to); d.Reason != ReasonFirstSeen || d.Cached {
			t.Fatalf("after the pass expired: %+v, want first_seen from the store", d)
		}
	})
}
