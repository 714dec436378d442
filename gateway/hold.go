package gateway

import (
	"bytes"
	"fmt"
	"io"
	"math/bits"
	"os"
	"sync"
)

// holdBuffer holds one message for the length of its transaction: in memory
// up to a threshold, then in a temporary file that Close always removes.
// The gateway keeps no spool of its own (design: synchronous relay), so this
// is the only place a message lives between the sender and the internal MTA.
type holdBuffer struct {
	dir       string
	threshold int
	mem       []byte // in memory: taken from holdPool at the first write
	file      *os.File
	unlinked  bool // file removed from its directory once created
	size      int64
}

// createTemp creates a held message's temp file (a variable so that a test
// can give a file that fails as a disk can).
var createTemp = os.CreateTemp

func newHoldBuffer(dir string, threshold int) *holdBuffer {
	return &holdBuffer{dir: dir, threshold: threshold}
}

// Write appends to the held message, moving it to a temp file when it grows
// past the threshold.
func (h *holdBuffer) Write(p []byte) (int, error) {
	if h.file == nil && len(h.mem)+len(p) > h.threshold {
		f, err := createTemp(h.dir, "gatewayd-msg-*")
		if err != nil {
			return 0, fmt.Errorf("hold: %w", err)
		}
		// Unlinked at once: the open file is all we use, and a crash
		// leaves nothing behind in the temp directory.
		h.unlinked = os.Remove(f.Name()) == nil
		h.file = f
		if _, err := f.Write(h.mem); err != nil {
			return 0, fmt.Errorf("hold: %w", err)
		}
		h.putMem()
	}
	var n int
	var err error
	if h.file != nil {
		n, err = h.file.Write(p)
		if err != nil {
			err = fmt.Errorf("hold: %w", err)
		}
	} else {
		if h.mem == nil {
			h.mem = (*holdPool.Get().(*[]byte))[:0]
		}
		if need := len(h.mem) + len(p); need > cap(h.mem) {
			h.grow(need)
		}
		h.mem = append(h.mem, p...)
		n = len(p)
	}
	h.size += int64(n)
	return n, err
}

// Size is the number of octets held.
func (h *holdBuffer) Size() int64 { return h.size }

// OnDisk reports whether the message spilled to a temp file.
func (h *holdBuffer) OnDisk() bool { return h.file != nil }

// ReaderAt gives random access to the held octets.
func (h *holdBuffer) ReaderAt() io.ReaderAt {
	if h.file != nil {
		return h.file
	}
	return bytes.NewReader(h.mem)
}

// Reader returns a new reader over the whole held message.
func (h *holdBuffer) Reader() io.Reader { return h.Section(0) }

// Section returns a reader over octets [off, size). A message held in
// memory is read through a bytes.Reader, whose WriteTo copies without an
// intermediate buffer.
func (h *holdBuffer) Section(off int64) io.Reader {
	if h.file == nil {
		return bytes.NewReader(h.mem[off:])
	}
	return io.NewSectionReader(h.file, off, h.size-off)
}

// Prefix returns the first n held octets: a slice of the buffer when in
// memory (valid until Reset), else a copy read from the file.
func (h *holdBuffer) Prefix(n int64) ([]byte, error) {
	n = min(n, h.size)
	if h.file == nil {
		return h.mem[:n], nil
	}
	buf := make([]byte, n)
	if _, err := h.file.ReadAt(buf, 0); err != nil && err != io.EOF {
		return nil, fmt.Errorf("hold: %w", err)
	}
	return buf, nil
}

// Reset empties the buffer for the next transaction, removing any file.
func (h *holdBuffer) Reset() error {
	var err error
	if h.file != nil {
		name := h.file.Name()
		err = h.file.Close()
		if !h.unlinked {
			if rerr := os.Remove(name); rerr != nil && err == nil {
				err = rerr
			}
		}
		h.file, h.unlinked = nil, false
	}
	h.putMem()
	h.size = 0
	return err
}

// holdPool keeps the memory of held messages between transactions and
// sessions: a message grown from nothing was several reallocations and
// copies per message, and an idle session holds none of it.
var holdPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// holdPoolMax is the largest buffer given back to holdPool: larger
// messages are rare, and a pool of large buffers would be memory held for
// them.
const holdPoolMax = 256 << 10

// bigHoldPools keep the buffers of messages past holdPoolMax, by size:
// bigHoldPools[k] holds buffers of holdPoolMax<<(k+1) octets (512 KiB,
// 1 MiB, 2 MiB, ...). sync.Pool gives them back to the collector when they
// go unused, so none is held for long without large messages; while they
// come, a message is copied into memory that is already the process's (a
// new 1 MiB buffer was a page fault per 4 KiB page as it was zeroed: a
// tenth of the CPU of relaying a 1 MB message). A message takes a buffer
// of at most twice its size, never one of the whole memory threshold: a
// threshold raised to keep large messages off disk would have made every
// message past 256 KiB hold (and the pool keep) that much memory.
var bigHoldPools [16]sync.Pool

// bigClass is the size class of a buffer for n octets (n > holdPoolMax):
// the index of its pool, and its size, the power of two times holdPoolMax
// at or above n. Past the last class (or past what an int holds) the
// buffer is of n octets and not pooled: k is -1.
func bigClass(n int) (k, size int) {
	k = bits.Len(uint((n-1)/holdPoolMax)) - 1
	if k >= len(bigHoldPools) {
		return -1, n
	}
	if size = holdPoolMax << (k + 1); size < n {
		return -1, n
	}
	return k, size
}

// grow gives h.mem room for need octets (need <= threshold), by doubling
// (capped at the threshold): up to holdPoolMax a new buffer, past it one
// of the size classes of bigHoldPools. Not append's growth: past 256
// octets append grows a slice by about a quarter, so a 1 MB message was
// copied into 13 ever larger buffers (5.2 MB allocated).
func (h *holdBuffer) grow(need int) {
	var grown []byte
	if c := min(max(2*cap(h.mem), need), h.threshold); c <= holdPoolMax {
		grown = make([]byte, len(h.mem), c)
	} else {
		k, size := bigClass(c)
		if k >= 0 {
			if b, ok := bigHoldPools[k].Get().(*[]byte); ok && cap(*b) == size {
				grown = (*b)[:len(h.mem)]
			}
		}
		if grown == nil {
			grown = make([]byte, len(h.mem), size)
		}
	}
	copy(grown, h.mem)
	h.putMem()
	h.mem = grown
}

func (h *holdBuffer) putMem() {
	switch b := h.mem[:0]; {
	case h.mem == nil:
	case cap(b) <= holdPoolMax:
		holdPool.Put(&b)
	default:
		if k, size := bigClass(cap(b)); k >= 0 && cap(b) == size {
			bigHoldPools[k].Put(&b)
		}
	}
	h.mem = nil
}
