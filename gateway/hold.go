package gateway

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// holdBuffer holds one message for the length of its transaction: in memory
// up to a threshold, then in a temporary file that Close always removes.
// The gateway keeps no spool of its own (design: synchronous relay), so this
// is the only place a message lives between the sender and the internal MTA.
type holdBuffer struct {
	dir       string
	threshold int
	mem       bytes.Buffer
	file      *os.File
	size      int64
}

func newHoldBuffer(dir string, threshold int) *holdBuffer {
	return &holdBuffer{dir: dir, threshold: threshold}
}

// Write appends to the held message, moving it to a temp file when it grows
// past the threshold.
func (h *holdBuffer) Write(p []byte) (int, error) {
	if h.file == nil && h.mem.Len()+len(p) > h.threshold {
		f, err := os.CreateTemp(h.dir, "gatewayd-msg-*")
		if err != nil {
			return 0, fmt.Errorf("hold: %w", err)
		}
		h.file = f
		if _, err := f.Write(h.mem.Bytes()); err != nil {
			return 0, fmt.Errorf("hold: %w", err)
		}
		h.mem = bytes.Buffer{}
	}
	var n int
	var err error
	if h.file != nil {
		n, err = h.file.Write(p)
		if err != nil {
			err = fmt.Errorf("hold: %w", err)
		}
	} else {
		n, err = h.mem.Write(p)
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
	return bytes.NewReader(h.mem.Bytes())
}

// Reader returns a new reader over the whole held message.
func (h *holdBuffer) Reader() io.Reader { return h.Section(0) }

// Section returns a reader over octets [off, size). A message held in
// memory is read through a bytes.Reader, whose WriteTo copies without an
// intermediate buffer.
func (h *holdBuffer) Section(off int64) io.Reader {
	if h.file == nil {
		return bytes.NewReader(h.mem.Bytes()[off:])
	}
	return io.NewSectionReader(h.file, off, h.size-off)
}

// Prefix returns the first n held octets: a slice of the buffer when in
// memory (valid until Reset), else a copy read from the file.
func (h *holdBuffer) Prefix(n int64) ([]byte, error) {
	n = min(n, h.size)
	if h.file == nil {
		return h.mem.Bytes()[:n], nil
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
		if rerr := os.Remove(name); rerr != nil && err == nil {
			err = rerr
		}
		h.file = nil
	}
	if h.mem.Cap() > 4*h.threshold || h.mem.Cap() > 1<<20 {
		h.mem = bytes.Buffer{} // do not keep a large buffer for an idle session
	} else {
		h.mem.Reset()
	}
	h.size = 0
	return err
}
