package greylist

import (
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// benchDecisions measures decisions per second over a mix of new and
// known triplets, from parallel goroutines as SMTP sessions would.
func benchDecisions(b *testing.B, st Store) {
	cfg := DefaultConfig()
	cfg.Deadline = Duration(5 * time.Second)
	g, err := New(cfg, st)
	if err != nil {
		b.Fatal(err)
	}
	var seq atomic.Int64
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(8) // 8 goroutines per CPU: many sessions wait on the store at once
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.Add(1)
			tr := Triplet{
				IP:        netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), 1}),
				Sender:    fmt.Sprintf("user%d@example.org", i%1000),
				Recipient: "rcpt@example.net",
			}
			d, err := g.Check(ctx, tr)
			if err != nil || d.Err != nil {
				b.Fatalf("%v %v", err, d.Err)
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
}

func BenchmarkDecisionMemory(b *testing.B) {
	benchDecisions(b, NewMemoryStore(1_000_000))
}

func BenchmarkDecisionRedis(b *testing.B) {
	benchDecisions(b, newRedisStore(b))
}

func BenchmarkNormalizeSender(b *testing.B) {
	for b.Loop() {
		NormalizeSender("SRS0=HHH=TT=orig.example=alice+tag@fwd.example")
		NormalizeSender("bounce-mc.us5_123.456-bob=example.net@mcsv.example")
	}
}
