package greylist

import (
	"fmt"
	"testing"
	"time"
)

// At the cap, an expired entry goes before a live one even when more
// than evictScan live entries were written before it: a flood of bots
// that never retry leaves pending triplets that expire unmet, and those,
// not the passes of regular correspondents written earlier, must make
// room.
func TestMemoryCapExpiredBehindLive(t *testing.T) {
	const passed, pending = 3 * evictScan, 3 * evictScan
	st := NewMemoryStore(passed + pending)
	clk := newClock()
	cfg := testConfig()
	cfg.AutoAllowAfter = 0
	g := newGreylister(t, cfg, st, clk)
	legit := func(i int) string { return fmt.Sprintf("corr%c%c@example.org", 'a'+i/26, 'a'+i%26) }
	for i := 0; i < passed; i++ {
		check(t, g, ip1, legit(i), to)
	}
	clk.Advance(cfg.Delay.D())
	for i := 0; i < passed; i++ {
		if d := check(t, g, ip1, legit(i), to); d.Action != Pass {
			t.Fatalf("retry of %s: %+v", legit(i), d)
		}
	}
	for i := 0; i < pending; i++ {
		check(t, g, "198.51.100.1", fmt.Sprintf("bot%c%c@example.net", 'a'+i/26, 'a'+i%26), to)
	}
	clk.Advance(cfg.RetryWindow.D() + time.Minute) // the bots' triplets expired, the passes live
	for i := 0; i < pending; i++ {
		check(t, g, "203.0.113.1", fmt.Sprintf("new%c%c@example.com", 'a'+i/26, 'a'+i%26), to)
	}
	lost := 0
	for i := 0; i < passed; i++ {
		if d := check(t, g, ip1, legit(i), to); d.Reason != ReasonKnown {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d live passed triplets evicted while expired ones were held", lost, passed)
	}
}
