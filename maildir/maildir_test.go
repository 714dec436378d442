package maildir

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestDeliver(t *testing.T) {
	d, err := Open(filepath.Join(t.TempDir(), "Maildir"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	names := make([]string, 20)
	for i := range names {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			n, err := d.Deliver(strings.NewReader("Subject: x\r\n\r\nbody\r\n"))
			if err != nil {
				t.Error(err)
			}
			names[i] = n
		}(i)
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			t.Fatalf("name %q used twice", n)
		}
		seen[n] = true
		data, err := os.ReadFile(filepath.Join(d.Path(), "new", n))
		if err != nil || string(data) != "Subject: x\r\n\r\nbody\r\n" {
			t.Fatalf("%s: %q %v", n, data, err)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(d.Path(), "tmp")); len(ents) != 0 {
		t.Errorf("tmp/ not empty: %v", ents)
	}
}

// TestDeliverFailureLeavesNothing: a message that cannot be read whole is
// not delivered, and its partial file is removed.
func TestDeliverFailureLeavesNothing(t *testing.T) {
	d, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Deliver(failingReader{}); err == nil {
		t.Fatal("want an error")
	}
	for _, sub := range []string{"tmp", "new"} {
		if ents, _ := os.ReadDir(filepath.Join(d.Path(), sub)); len(ents) != 0 {
			t.Errorf("%s/ not empty: %v", sub, ents)
		}
	}
}

type failingReader struct{}

func (failingReader) Read(p []byte) (int, error) { return 0, os.ErrDeadlineExceeded }
