package gopool

import (
	"sync/atomic"
	"testing"
	"time"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestReuse: tasks given one after another run on the same worker; Trim
// ends idle workers, Close ends the rest, and a pool at its bound lets a
// worker end instead of waiting.
func TestReuse(t *testing.T) {
	var ran atomic.Int32
	done := make(chan int64, 16)
	block := make(chan struct{})
	p := New(2, time.Minute, func(slow bool) {
		if slow {
			<-block
		}
		ran.Add(1)
		done <- goid()
	})
	defer p.Close()
	var first int64
	for i := range 5 {
		p.Go(false)
		id := <-done
		if i == 0 {
			first = id
		} else if id != first {
			t.Fatalf("task %d ran on goroutine %d, the first on %d: not reused", i, id, first)
		}
		waitFor(t, "worker idle again", func() bool { return p.Idle() == 1 })
	}
	// Three at once: three workers, two kept.
	for range 3 {
		p.Go(true)
	}
	close(block)
	for range 3 {
		<-done
	}
	waitFor(t, "two workers idle", func() bool { return p.Idle() == 2 })
	if ran.Load() != 8 {
		t.Fatalf("ran %d tasks, want 8", ran.Load())
	}
	p.Trim(time.Now().Add(2 * time.Minute))
	if n := p.Idle(); n != 0 {
		t.Fatalf("%d idle workers after Trim", n)
	}
	p.Go(false)
	<-done
	waitFor(t, "worker idle", func() bool { return p.Idle() == 1 })
	p.Close()
	if n := p.Idle(); n != 0 {
		t.Fatalf("%d idle workers after Close", n)
	}
	// After Close, tasks still run (each on its own goroutine).
	p.Go(false)
	<-done
	if n := p.Idle(); n != 0 {
		t.Fatalf("a closed pool kept a worker")
	}
}

// TestTrimKeepsRecent: Trim ends only the workers idle for longer than
// idleFor.
func TestTrimKeepsRecent(t *testing.T) {
	done := make(chan struct{}, 4)
	block := make(chan struct{})
	p := New(4, time.Minute, func(struct{}) { <-block; done <- struct{}{} })
	defer p.Close()
	for range 3 {
		p.Go(struct{}{})
	}
	close(block)
	for range 3 {
		<-done
	}
	waitFor(t, "three idle", func() bool { return p.Idle() == 3 })
	p.Trim(time.Now().Add(30 * time.Second))
	if n := p.Idle(); n != 3 {
		t.Fatalf("%d idle after a Trim within idleFor, want 3", n)
	}
}
