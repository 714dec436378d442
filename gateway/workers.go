package gateway

import (
	"net"
	"sync"
	"time"
)

// workers keeps the goroutines that finished a connection for the next
// ones, as fasthttp's worker pool does.
//
// A goroutine started per connection begins with a small stack that grows
// on the way through a session, each growth a copy of the whole stack; the
// profile of refusing listed clients at connect showed those copies (with
// the goroutine's start) as close to a tenth of a refusal. A worker that
// waits here keeps its grown stack. At most max wait, the most recently
// used first (its stack and caches are warm); one idle for longer than
// idleFor ends. Idle sessions are not workers: a worker waits only between
// connections, so the pool costs nothing per idle connection.
type workers struct {
	max     int
	idleFor time.Duration

	mu     sync.Mutex
	idle   []*worker // oldest first
	closed bool
	stop   chan struct{}
	once   sync.Once
}

type worker struct {
	next     chan net.Conn // nil: end
	lastUsed time.Time
}

func newWorkers(max int, idleFor time.Duration) *workers {
	return &workers{max: max, idleFor: idleFor, stop: make(chan struct{})}
}

// run hands c to an idle worker, or to a new one, which calls handle(c).
func (w *workers) run(c net.Conn, handle func(net.Conn)) {
	w.once.Do(func() { go w.trimLoop() })
	w.mu.Lock()
	if n := len(w.idle); n > 0 {
		wk := w.idle[n-1]
		w.idle[n-1] = nil
		w.idle = w.idle[:n-1]
		w.mu.Unlock()
		wk.next <- c // buffered: never blocks
		return
	}
	w.mu.Unlock()
	wk := &worker{next: make(chan net.Conn, 1)}
	go wk.loop(w, c, handle)
}

func (wk *worker) loop(w *workers, c net.Conn, handle func(net.Conn)) {
	for c != nil {
		handle(c)
		if !w.park(wk) {
			return
		}
		c = <-wk.next
	}
}

// park puts wk back among the idle workers; false when it should end.
func (w *workers) park(wk *worker) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || len(w.idle) >= w.max {
		return false
	}
	wk.lastUsed = time.Now()
	w.idle = append(w.idle, wk)
	return true
}

func (w *workers) trimLoop() {
	t := time.NewTicker(w.idleFor)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case now := <-t.C:
			w.trim(now)
		}
	}
}

// trim ends the workers idle for longer than idleFor.
func (w *workers) trim(now time.Time) {
	w.mu.Lock()
	n := 0
	for n < len(w.idle) && now.Sub(w.idle[n].lastUsed) > w.idleFor {
		w.idle[n].next <- nil
		n++
	}
	w.idle = append(w.idle[:0], w.idle[n:]...)
	w.mu.Unlock()
}

// idleCount is the number of workers waiting, for tests.
func (w *workers) idleCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.idle)
}

// close ends every idle worker and makes busy ones end after their
// connection.
func (w *workers) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.closed = true
	close(w.stop)
	for _, wk := range w.idle {
		wk.next <- nil
	}
	w.idle = nil
}
