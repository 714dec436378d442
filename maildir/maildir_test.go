package maildir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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

// TestDeliverSyncsNewDir: the 250 follows Deliver, so the message's entry
// in new/ is synced to disk before Deliver returns, and a failed sync is
// a failed delivery (the sender then gets a 4xx).
func TestDeliverSyncsNewDir(t *testing.T) {
	d, err := Open(filepath.Join(t.TempDir(), "M"))
	if err != nil {
		t.Fatal(err)
	}
	orig := syncDir
	t.Cleanup(func() { syncDir = orig })
	var synced []string
	syncDir = func(dir string) error {
		entries, _ := os.ReadDir(dir)
		synced = append(synced, fmt.Sprintf("%s:%d", filepath.Base(dir), len(entries)))
		return orig(dir)
	}
	if _, err := d.Deliver(strings.NewReader("Subject: x\r\n\r\nbody\r\n")); err != nil {
		t.Fatal(err)
	}
	if len(synced) != 1 || synced[0] != "new:1" {
		t.Fatalf("directories synced: %v, want new/ once, after the rename", synced)
	}
	syncDir = func(string) error { return errors.New("EIO") }
	if _, err := d.Deliver(strings.NewReader("Subject: y\r\n\r\nbody\r\n")); err == nil {
		t.Fatal("a failed sync of new/ reported as delivered")
	}
}

// TestOpenSyncsCreatedDirs: every directory Open creates is synced into
// its parent (the Maildir's parents too when it makes them); an existing
// Maildir costs no sync, and a failed sync fails Open.
func TestOpenSyncsCreatedDirs(t *testing.T) {
	root := t.TempDir()
	orig := syncDir
	t.Cleanup(func() { syncDir = orig })
	var synced []string
	syncDir = func(dir string) error {
		rel, _ := filepath.Rel(root, dir)
		synced = append(synced, rel)
		return orig(dir)
	}
	if _, err := Open(filepath.Join(root, "var", "M")); err != nil {
		t.Fatal(err)
	}
	// tmp/ creates var and M (synced into root and var), then M's three.
	want := []string{".", "var", filepath.Join("var", "M"), filepath.Join("var", "M"), filepath.Join("var", "M")}
	if !slices.Equal(synced, want) {
		t.Errorf("synced %q, want %q", synced, want)
	}
	synced = nil
	if _, err := Open(filepath.Join(root, "var", "M")); err != nil || len(synced) != 0 {
		t.Errorf("Open of an existing Maildir: err %v, synced %q", err, synced)
	}
	syncDir = func(string) error { return errors.New("EIO") }
	if _, err := Open(filepath.Join(root, "other")); err == nil {
		t.Error("a failed sync of a created directory did not fail Open")
	}
}

// TestHostnameEscaped: '/' and ':' of the host name are escaped in file
// names (':' starts a Maildir file's info part).
func TestHostnameEscaped(t *testing.T) {
	d, err := Open(filepath.Join(t.TempDir(), "M"))
	if err != nil {
		t.Fatal(err)
	}
	d.hostname = escapeHost("a/b:c")
	name, err := d.Deliver(strings.NewReader("Subject: x\r\n\r\nbody\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(name, "/:") {
		t.Errorf("file name %q holds '/' or ':'", name)
	}
}
