//go:build unix

package gateway

import (
	"fmt"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// BenchmarkIdleConn measures what an idle connection (greeted, EHLO
// answered, every check on, its wait handed off) keeps: live heap and
// goroutine stack per connection, after a GC. b.N connections are opened and kept: at most
// 5,000, and fewer when the open-file limit would not hold both ends.
//
// Read the first run of a process (-count 1): it counts each session
// goroutine's runtime descriptor (the g, about 400 octets), which later
// runs take from the goroutines that ended before and do not count.
func BenchmarkIdleConn(b *testing.B) {
	g, _ := startChecked(b)
	w := dialBench(b, g.addr, "127.0.0.1")
	w.quit(b)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	// Only the client's net.Conn is kept (its reader would count).
	n := min(b.N, 5000)
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil && rl.Cur < 1<<20 {
		n = min(n, max(1, (int(rl.Cur)-256)/2)) // a client and a server end each
	}
	conns := make([]net.Conn, 0, n)
	for i := range n {
		// Per-IP limits: 10 connections per source address.
		src := fmt.Sprintf("127.1.%d.%d", i/10/250, i/10%250+1)
		conns = append(conns, dialBench(b, g.addr, src).c)
	}
	b.StopTimer()
	// An idle session's wait moves to a goroutine with a small stack
	// within two sweeps (see session.park): measure after that.
	for g.srv.handoffs.Load() < uint64(n) {
		time.Sleep(10 * time.Millisecond)
	}
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "heap-B/conn")
	b.ReportMetric(float64(after.StackInuse-before.StackInuse)/float64(n), "stack-B/conn")
	for _, c := range conns {
		c.Close()
	}
}
