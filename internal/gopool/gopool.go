// Package gopool runs a function on goroutines that are kept between
// calls, as fasthttp's worker pool does.
//
// A goroutine started per task begins with a small stack that grows on the
// way through the task, each growth a copy of the whole stack. The gateway
// starts one per connection (a session goes deep), and the checks one per
// DNS lookup (miekg/dns unpacks deep): profiles of refusing listed clients
// showed the starts and stack copies as close to a tenth of a refusal. A
// worker that waits here between tasks keeps its grown stack. At most max
// wait, the most recently used first (its stack and caches are warm); one
// idle for longer than idleFor ends.
//
// Why our own: the pools we looked at (ants, tunny) add queues, panics
// handlers and options we do not need, and allocate per task; this one is
// the few lines fasthttp's is, generic over the task's argument so that a
// task costs no allocation.
package gopool

import (
	"sync"
	"time"
)

// Pool runs fn(v) for each v given to Go, on a kept goroutine when one is
// idle. Its methods are safe for concurrent use.
type Pool[T any] struct {
	fn      func(T)
	max     int
	idleFor time.Duration

	mu     sync.Mutex
	idle   []*worker[T] // oldest first
	closed bool
	stop   chan struct{}
	once   sync.Once
}

type worker[T any] struct {
	next     chan task[T]
	lastUsed time.Time
}

// task is a value to run fn on; end asks the worker to end instead.
type task[T any] struct {
	v   T
	end bool
}

// New returns a pool that keeps at most max idle goroutines, each for at
// most idleFor, running fn.
func New[T any](max int, idleFor time.Duration, fn func(T)) *Pool[T] {
	return &Pool[T]{fn: fn, max: max, idleFor: idleFor, stop: make(chan struct{})}
}

// Go runs fn(v) on an idle worker, or on a new goroutine; it never blocks.
func (p *Pool[T]) Go(v T) {
	p.once.Do(func() { go p.trimLoop() })
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		wk := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		wk.next <- task[T]{v: v} // buffered: never blocks
		return
	}
	p.mu.Unlock()
	wk := &worker[T]{next: make(chan task[T], 1)}
	go wk.loop(p, v)
}

func (wk *worker[T]) loop(p *Pool[T], v T) {
	for {
		p.fn(v)
		if !p.park(wk) {
			return
		}
		t := <-wk.next
		if t.end {
			return
		}
		v = t.v
	}
}

// park puts wk back among the idle workers; false when it should end.
func (p *Pool[T]) park(wk *worker[T]) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.idle) >= p.max {
		return false
	}
	wk.lastUsed = time.Now()
	p.idle = append(p.idle, wk)
	return true
}

func (p *Pool[T]) trimLoop() {
	t := time.NewTicker(p.idleFor)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			p.Trim(now)
		}
	}
}

// Trim ends the workers idle for longer than idleFor at now (a ticker
// calls it every idleFor; tests call it with a later time).
func (p *Pool[T]) Trim(now time.Time) {
	p.mu.Lock()
	n := 0
	for n < len(p.idle) && now.Sub(p.idle[n].lastUsed) > p.idleFor {
		p.idle[n].next <- task[T]{end: true}
		n++
	}
	p.idle = append(p.idle[:0], p.idle[n:]...)
	p.mu.Unlock()
}

// Idle is the number of workers waiting.
func (p *Pool[T]) Idle() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// Close ends every idle worker and makes busy ones end after their task;
// tasks given to Go after Close still run, each on its own goroutine.
func (p *Pool[T]) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	close(p.stop)
	for _, wk := range p.idle {
		wk.next <- task[T]{end: true}
	}
	p.idle = nil
}
