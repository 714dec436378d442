package main

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// flakyWriter fails its first write halfway (a full disk), then works
// again (space freed), as os.File does on ENOSPC.
type flakyWriter struct {
	mu     sync.Mutex
	failed bool
	b      bytes.Buffer
}

func (w *flakyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.failed {
		w.failed = true
		n := len(p) / 2
		w.b.Write(p[:n])
		return n, errors.New("write: no space left on device")
	}
	return w.b.Write(p)
}

// TestBufferedLogRecoversAfterWriteError: one failed write (the disk full
// for a moment) loses no line: the cut line is completed and later lines
// follow, and the error is reported.
func TestBufferedLogRecoversAfterWriteError(t *testing.T) {
	fw := &flakyWriter{}
	var errs []error
	var mu sync.Mutex
	bl := newBufferedLog(fw, 10*time.Millisecond, func(err error, _ int) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	})
	bl.Write([]byte(`{"n":1}` + "\n"))
	time.Sleep(50 * time.Millisecond) // a flush fails halfway: disk full
	for range 3 {
		bl.Write([]byte(`{"n":2}` + "\n")) // space is back
	}
	bl.Close()
	fw.mu.Lock()
	out := fw.b.String()
	fw.mu.Unlock()
	if out != `{"n":1}`+"\n"+strings.Repeat(`{"n":2}`+"\n", 3) {
		t.Fatalf("file holds %q", out)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(errs) == 0 || errs[0] == nil {
		t.Errorf("the failed write was not reported: %v", errs)
	}
}

// blockedWriter blocks every write until released (stdout into a full
// pipe).
type blockedWriter struct{ release chan struct{} }

func (w *blockedWriter) Write(p []byte) (int, error) {
	<-w.release
	return len(p), nil
}

// TestBufferedLogNeverBlocksWriters: a writer that blocks does not block
// the sessions logging; past maxPending, lines are dropped and counted.
func TestBufferedLogNeverBlocksWriters(t *testing.T) {
	bw := &blockedWriter{release: make(chan struct{})}
	var dropped int
	var mu sync.Mutex
	bl := newBufferedLog(bw, time.Millisecond, func(_ error, n int) {
		mu.Lock()
		dropped += n
		mu.Unlock()
	})
	line := []byte(strings.Repeat("x", 1023) + "\n")
	done := make(chan struct{})
	go func() {
		for range 2 * maxPending / len(line) {
			bl.Write(line)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Write blocked behind a blocked writer")
	}
	close(bw.release)
	bl.Close()
	mu.Lock()
	defer mu.Unlock()
	if dropped == 0 {
		t.Error("no dropped lines reported")
	}
}

// TestBufferedLogWriteAfterClose: a line logged after Close (a session
// outliving a Close that did not wait) is written, not kept in a buffer
// nobody flushes.
func TestBufferedLogWriteAfterClose(t *testing.T) {
	var out bytes.Buffer
	bl := newBufferedLog(&out, time.Hour, nil)
	bl.Write([]byte("first\n"))
	bl.Close()
	bl.Write([]byte("late\n"))
	if out.String() != "first\nlate\n" {
		t.Fatalf("wrote %q", out.String())
	}
}

// TestBufferedLogReusesBatchBuffer: a batch goes on in the buffer of the
// one written before it, so steady logging allocates nothing per batch,
// and the reuse never mixes one batch's lines into another's.
func TestBufferedLogReusesBatchBuffer(t *testing.T) {
	var out bytes.Buffer
	b := newBufferedLog(&out, time.Hour, nil)
	defer b.Close()
	line := []byte(strings.Repeat("x", 200) + "\n")
	batch := func() {
		for range 50 {
			b.Write(line)
		}
		b.flush()
	}
	batch() // the first batch grows its buffer
	batch() // and the second grows the spare
	out.Reset()
	out.Grow(1 << 20)
	if a := testing.AllocsPerRun(20, batch); a != 0 {
		t.Errorf("a batch allocated %v times, want 0", a)
	}
	want := bytes.Repeat(line, 50*21) // AllocsPerRun runs once more to warm up
	if !bytes.Equal(out.Bytes(), want) {
		t.Errorf("wrote %d octets, want %d identical lines", out.Len(), 50*21)
	}
}
