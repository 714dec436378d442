package main

import (
	"bytes"
	"io"
	"sync"
	"time"
)

// bufferedLog batches decision log lines: one write per line was a tenth
// of the CPU of a relayed message (make bench profile). Lines are written
// at least every interval, and sooner when a batch fills; at most that
// interval of lines is lost if the process is killed (SIGTERM flushes).
//
// Why not bufio.Writer: its first write error (a full disk) is permanent,
// so every later line would be lost for the life of the process, and it
// writes while holding the lock the sessions log under, so a stalled
// writer (stdout into a full pipe) would stall every session. Here only
// the flusher writes, outside the lock; what a failed write left is
// written first next time (a line cut by a full disk is completed, not
// followed by a new one); errors go to onError, rate-limited by the
// caller; and while the writer cannot keep up, lines beyond maxPending are
// dropped and counted, never blocking a session.
type bufferedLog struct {
	w       io.Writer
	onError func(err error, dropped int)

	mu      sync.Mutex
	buf     []byte // lines not written yet
	spare   []byte // the buffer of the last written batch, for the next one
	dropped int    // lines dropped since the last report
	closed  bool   // Close ran: lines are written at once
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

const (
	batchSize  = 64 << 10 // a full batch is written without waiting for the tick
	maxPending = 16 << 20 // lines beyond this, not written yet, are dropped
	// spareMax bounds the batch buffer kept for reuse: a buffer that grew
	// past it (a writer that fell behind) is left to the collector.
	spareMax = 1 << 20
)

func newBufferedLog(w io.Writer, every time.Duration, onError func(err error, dropped int)) *bufferedLog {
	if onError == nil {
		onError = func(error, int) {}
	}
	b := &bufferedLog{w: w, onError: onError, kick: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
			case <-b.kick:
			case <-b.stop:
				b.flush()
				return
			}
			b.flush()
		}
	}()
	return b
}

// Write takes one or more whole lines; it never blocks on the writer and
// never fails.
func (b *bufferedLog) Write(p []byte) (int, error) {
	b.mu.Lock()
	if b.closed {
		// A session still logging after Close (a Close that did not wait
		// for sessions): written at once, not left in a buffer nobody
		// flushes.
		_, err := b.w.Write(p)
		b.mu.Unlock()
		if err != nil {
			b.onError(err, max(1, bytes.Count(p, []byte("\n"))))
		}
		return len(p), nil
	}
	if len(b.buf)+len(p) > maxPending {
		b.dropped += max(1, bytes.Count(p, []byte("\n")))
		b.mu.Unlock()
		return len(p), nil
	}
	b.buf = append(b.buf, p...)
	full := len(b.buf) >= batchSize
	b.mu.Unlock()
	if full {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

// flush writes what is pending, outside the lock; what could not be
// written stays first in line.
func (b *bufferedLog) flush() {
	b.mu.Lock()
	out, dropped := b.buf, b.dropped
	b.dropped = 0
	if len(out) == 0 {
		b.mu.Unlock()
		if dropped > 0 {
			b.onError(nil, dropped)
		}
		return
	}
	// The lines go on in the buffer of the previous batch: a new buffer
	// per batch, grown from nothing, was a fifth of the daemon's allocated
	// octets under make bench.
	b.buf, b.spare = b.spare[:0], nil
	b.mu.Unlock()
	n, err := b.w.Write(out)
	if err == nil && n < len(out) {
		err = io.ErrShortWrite
	}
	if err == nil && cap(out) <= spareMax {
		b.mu.Lock()
		b.spare = out[:0]
		b.mu.Unlock()
	}
	if err != nil {
		rest := out[n:]
		b.mu.Lock()
		b.buf = append(rest[:len(rest):len(rest)], b.buf...)
		if len(b.buf) > maxPending {
			// Keep whole lines (the cut line's end first) up to the bound.
			keep := bytes.LastIndexByte(b.buf[:maxPending], '\n') + 1
			if keep == 0 {
				keep = maxPending
			}
			dropped += bytes.Count(b.buf[keep:], []byte("\n"))
			b.buf = b.buf[:keep]
		}
		b.mu.Unlock()
	}
	if err != nil || dropped > 0 {
		b.onError(err, dropped)
	}
}

// Close flushes and stops the flusher; later lines are written at once.
func (b *bufferedLog) Close() {
	close(b.stop)
	<-b.done
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if len(b.buf) > 0 { // written between the last flush and now, in order
		if _, err := b.w.Write(b.buf); err != nil {
			b.onError(err, bytes.Count(b.buf, []byte("\n")))
		}
		b.buf = nil
	}
}
