package greylist

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// TestStoresAgree drives the memory store and the Redis store through the
// same random sequences of attempts, clock steps and operator operations
// (one Greylister each, on clocks stepped alike) and requires the same
// decision, first-seen and retry times, pass counts and operator answers
// at every step: the Lua script and its Go twin must not drift apart.
func TestStoresAgree(t *testing.T) {
	cfg := testConfig()
	cfg.Delay = Duration(5 * time.Minute)
	cfg.RetryWindow = Duration(time.Hour)
	cfg.PassTTL = Duration(3 * time.Hour)
	cfg.AutoAllowAfter = 3
	cfg.AutoAllowInterval = Duration(20 * time.Minute)
	cfg.PassCache = 0 // the stores are compared, not the Redis-only cache
	ips := []string{"192.0.2.1", "192.0.2.200", "198.51.100.7", "2001:db8::1"}
	senders := []string{from, "carol@example.com", ""}
	rcpts := []string{to, "dave@example.net"}
	steps := []time.Duration{0, time.Second, time.Minute, 4 * time.Minute, 5 * time.Minute, 21 * time.Minute, 59 * time.Minute, 2 * time.Hour, 3 * time.Hour}
	ctx := context.Background()
	for seed := uint64(1); seed <= 20; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 7))
			mc, rc := newClock(), newClock()
			mg := newGreylister(t, cfg, NewMemoryStore(10000), mc)
			rg := newGreylister(t, cfg, newRedisStore(t), rc)
			for i := 0; i < 300; i++ {
				adv := steps[r.IntN(len(steps))]
				mc.Advance(adv)
				rc.Advance(adv)
				ip, snd, rcpt := ips[r.IntN(len(ips))], senders[r.IntN(len(senders))], rcpts[r.IntN(len(rcpts))]
				var what string
				var m, rd any
				switch k := r.IntN(20); {
				case k == 0:
					what = "release triplet"
					m, _ = mg.Release(ctx, Query{Network: ip, Sender: snd, Recipient: rcpt})
					rd, _ = rg.Release(ctx, Query{Network: ip, Sender: snd, Recipient: rcpt})
				case k == 1:
					what = "release network"
					m, _ = mg.Release(ctx, Query{Network: ip})
					rd, _ = rg.Release(ctx, Query{Network: ip})
				case k == 2:
					d := time.Duration(r.IntN(3)) * 30 * time.Minute
					what = "allow " + d.String()
					m, _ = mg.Allow(ctx, Query{Network: ip}, d)
					rd, _ = rg.Allow(ctx, Query{Network: ip}, d)
				case k == 3:
					what = "counts"
					m, _ = mg.Counts(ctx)
					rd, _ = rg.Counts(ctx)
				case k == 4:
					what = "show"
					m, _ = mg.Show(ctx, Query{Network: ip})
					rd, _ = rg.Show(ctx, Query{Network: ip})
				default:
					what = "check"
					md, rdd := check(t, mg, ip, snd, rcpt), check(t, rg, ip, snd, rcpt)
					m, rd = md, rdd
				}
				if fmt.Sprintf("%+v", m) != fmt.Sprintf("%+v", rd) {
					t.Fatalf("step %d (+%v, %s %s %q→%s):\nmemory %+v\nredis  %+v", i, adv, what, ip, snd, rcpt, m, rd)
				}
			}
		})
	}
}
