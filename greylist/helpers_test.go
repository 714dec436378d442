package greylist

import (
	"context"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxgate/gatewayd/internal/fakeclock"
	"github.com/mxgate/gatewayd/internal/redistest"
	"github.com/prometheus/client_golang/prometheus"
)

// fakeClock is a settable clock for the rules.
type fakeClock = fakeclock.Clock

func newClock() *fakeClock {
	return fakeclock.New(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
}

// shared is one redis-server for the tests that need no faults; each test
// uses its own key prefix.
var (
	sharedOnce sync.Once
	sharedSrv  *redistest.Server
	sharedErr  error
	prefixSeq  atomic.Int64
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedSrv != nil {
		_ = sharedSrv.Close()
	}
	os.Exit(code)
}

func sharedRedis(t testing.TB) *redistest.Server {
	t.Helper()
	sharedOnce.Do(func() { sharedSrv, sharedErr = redistest.New() })
	if sharedErr != nil {
		t.Fatalf("redis for tests: %v", sharedErr)
	}
	return sharedSrv
}

// newRedisStore returns a store on the shared server with a fresh prefix.
func newRedisStore(t testing.TB) *RedisStore {
	t.Helper()
	srv := sharedRedis(t)
	st, err := NewRedisStore(RedisConfig{
		Addrs:     []string{srv.Addr},
		KeyPrefix: "t" + strconv.FormatInt(prefixSeq.Add(1), 10) + ":",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// storeKinds builds each kind of store for a suite.
var storeKinds = []struct {
	name string
	new  func(t testing.TB) Store
}{
	{"memory", func(t testing.TB) Store { return NewMemoryStore(10000) }},
	{"redis", func(t testing.TB) Store { return newRedisStore(t) }},
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Deadline = Duration(2 * time.Second) // generous: CI machines under -race
	return cfg
}

func newGreylister(t testing.TB, cfg Config, st Store, clk *fakeClock) *Greylister {
	t.Helper()
	g, err := New(cfg, st, WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func check(t testing.TB, g *Greylister, ip, from, to string) Decision {
	t.Helper()
	d, err := g.Check(context.Background(), Triplet{IP: netip.MustParseAddr(ip), Sender: from, Recipient: to})
	if err != nil {
		t.Fatalf("Check(%s, %s, %s): %v", ip, from, to, err)
	}
	if d.Err != nil && d.Reason != ReasonStoreError {
		t.Fatalf("Err set without store_error: %+v", d)
	}
	return d
}

// counterValue sums the counters (or histogram sample counts) of c.
func counterValue(t testing.TB, c prometheus.Collector) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if c := m.GetCounter(); c != nil {
				sum += c.GetValue()
			}
			if h := m.GetHistogram(); h != nil {
				sum += float64(h.GetSampleCount())
			}
		}
	}
	return sum
}
