package gateway

import (
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// TestWorkersReuse: connections handed out one after another are handled
// by the same worker; trim ends idle workers, close ends the rest, and a
// pool at its bound lets a worker end instead of waiting.
func TestWorkersReuse(t *testing.T) {
	w := newWorkers(2, time.Minute)
	defer w.close()
	var handled atomic.Int32
	done := make(chan struct{}, 16)
	handle := func(c net.Conn) {
		handled.Add(1)
		c.Close()
		done <- struct{}{}
	}
	pipe := func() net.Conn { a, b := net.Pipe(); b.Close(); return a }
	for i := 0; i < 5; i++ {
		w.run(pipe(), handle)
		<-done
		waitFor(t, "worker idle again", func() bool { return w.idleCount() == 1 })
	}
	if handled.Load() != 5 {
		t.Fatalf("handled %d", handled.Load())
	}
	// Three at once: three workers, two kept.
	block := make(chan struct{})
	slow := func(c net.Conn) { <-block; c.Close(); done <- struct{}{} }
	for i := 0; i < 3; i++ {
		w.run(pipe(), slow)
	}
	close(block)
	for i := 0; i < 3; i++ {
		<-done
	}
	waitFor(t, "two workers idle", func() bool { return w.idleCount() == 2 })
	w.trim(time.Now().Add(2 * time.Minute))
	if n := w.idleCount(); n != 0 {
		t.Fatalf("%d idle workers after trim", n)
	}
	w.run(pipe(), handle)
	<-done
	waitFor(t, "worker idle", func() bool { return w.idleCount() == 1 })
	w.close()
	if n := w.idleCount(); n != 0 {
		t.Fatalf("%d idle workers after close", n)
	}
}
