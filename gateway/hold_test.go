package gateway

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"
)

// TestHoldBuffer: a message is held in memory up to the threshold and in a
// temporary file past it, read back whole and by section, and Reset leaves
// nothing of it for the next transaction (its memory goes back to a pool,
// its file is removed).
func TestHoldBuffer(t *testing.T) {
	dir := t.TempDir()
	for _, size := range []int{0, 100, 4096, 4097, 200 << 10} {
		h := newHoldBuffer(dir, 4096)
		for round := 0; round < 2; round++ {
			msg := strings.Repeat(string(rune('a'+round)), size)
			for i := 0; i < len(msg); i += 1000 {
				if _, err := h.Write([]byte(msg[i:min(i+1000, len(msg))])); err != nil {
					t.Fatal(err)
				}
			}
			if h.Size() != int64(size) || h.OnDisk() != (size > 4096) {
				t.Fatalf("size %d: Size %d, OnDisk %v", size, h.Size(), h.OnDisk())
			}
			// A spilled message's file is unlinked while in use: a crash
			// leaves nothing in the temp directory.
			if files, _ := readDirNames(dir); len(files) != 0 {
				t.Fatalf("size %d: %v in the temp directory while the message is held", size, files)
			}
			got, _ := io.ReadAll(h.Reader())
			if string(got) != msg {
				t.Fatalf("size %d round %d: read back %d octets, not the message", size, round, len(got))
			}
			if size > 10 {
				sec, _ := io.ReadAll(h.Section(10))
				pre, _ := h.Prefix(10)
				if !bytes.Equal(sec, []byte(msg[10:])) || string(pre) != msg[:10] {
					t.Fatalf("size %d: Section/Prefix differ", size)
				}
			}
			if err := h.Reset(); err != nil {
				t.Fatal(err)
			}
			if h.Size() != 0 || h.OnDisk() {
				t.Fatal("Reset left the message")
			}
		}
	}
	if files, _ := readDirNames(dir); len(files) != 0 {
		t.Fatalf("temporary files left: %v", files)
	}
}

func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// TestHoldBufferGrowsByDoubling: a message held in memory grows its buffer
// by doubling (past 256 KiB into pooled buffers of its size class), so a
// 1 MiB message goes through a handful of buffers (append's growth by a quarter was a
// dozen, 5 MB allocated for 1 MB).
func TestHoldBufferGrowsByDoubling(t *testing.T) {
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 2048) // 32 KiB
	h := newHoldBuffer(t.TempDir(), 2<<20)
	defer h.Reset()
	var caps []int
	for range 32 {
		h.Write(chunk)
		if c := cap(h.mem); len(caps) == 0 || c != caps[len(caps)-1] {
			caps = append(caps, c)
		}
	}
	if h.OnDisk() || len(h.mem) != 1<<20 || !bytes.Equal(h.mem[:len(chunk)], chunk) || !bytes.Equal(h.mem[len(h.mem)-len(chunk):], chunk) {
		t.Fatalf("held %d octets (on disk: %v)", len(h.mem), h.OnDisk())
	}
	for i := 1; i < len(caps); i++ {
		if caps[i] < 2*caps[i-1] && caps[i] != 2<<20 {
			t.Fatalf("buffer capacities %v: grew by less than double", caps)
		}
	}
}

// TestHoldBufferMemoryFollowsMessage: the memory a message held in memory
// takes follows the message, not the threshold. A message just past 256
// KiB took a buffer of the whole memory threshold: with a threshold raised
// to keep large messages off disk (64 MiB here), each session holding a
// 300 KiB message held 64 MiB, and the pool kept them (also after a
// reload lowered the threshold).
func TestHoldBufferMemoryFollowsMessage(t *testing.T) {
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 2048) // 32 KiB
	for _, threshold := range []int{1 << 20, 64 << 20, 1 << 30} {
		for _, size := range []int{holdPoolMax + 1, 300 << 10, 600 << 10} {
			h := newHoldBuffer(t.TempDir(), threshold)
			for n := 0; n < size; n += len(chunk) {
				if _, err := h.Write(chunk[:min(len(chunk), size-n)]); err != nil {
					t.Fatal(err)
				}
			}
			if h.OnDisk() || len(h.mem) != size {
				t.Fatalf("threshold %d: held %d octets of %d (on disk: %v)", threshold, len(h.mem), size, h.OnDisk())
			}
			if c := cap(h.mem); c > 2*size {
				t.Errorf("threshold %d: a message of %d octets holds a buffer of %d", threshold, size, c)
			}
			h.Reset()
		}
	}
	// A buffer the pool kept from a larger message is not handed to a
	// message that needs far less.
	big := newHoldBuffer(t.TempDir(), 64<<20)
	big.Write(bytes.Repeat(chunk, 40)) // 1.25 MiB
	big.Reset()
	h := newHoldBuffer(t.TempDir(), 64<<20)
	defer h.Reset()
	h.Write(bytes.Repeat(chunk, 9)) // 288 KiB
	if c := cap(h.mem); c > 2*9*len(chunk) {
		t.Errorf("a message of %d octets holds a buffer of %d", 9*len(chunk), c)
	}
}
