// Package maildir writes messages into a Maildir directory (the layout of
// https://cr.yp.to/proto/maildir.html: tmp/, new/, cur/). It is the
// gateway's built-in delivery target: the default for a first try, where no
// internal MTA is configured, and the quarantine.
//
// A message is written to tmp/, synced, and renamed into new/, so a reader
// never sees a partial file.
package maildir

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Dir is a Maildir.
type Dir struct {
	path     string
	hostname string
	seq      atomic.Uint64
}

// escapeHost writes '/' and ':' of a host name as octal escapes, the
// Maildir convention (':' starts a file's info part).
func escapeHost(h string) string {
	return strings.NewReplacer("/", `\057`, ":", `\072`).Replace(h)
}

// Open creates the Maildir's folders when missing, each synced into its
// parent: Deliver syncs new/'s entries, which keep nothing if new/ itself
// (or the Maildir) was never written to disk when the power goes.
func Open(path string) (*Dir, error) {
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := mkdirSynced(filepath.Join(path, sub)); err != nil {
			return nil, fmt.Errorf("maildir: %w", err)
		}
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	return &Dir{path: path, hostname: escapeHost(host)}, nil
}

// Path is the Maildir's root.
func (d *Dir) Path() string { return d.path }

// Deliver writes the message read from r and returns its unique name.
func (d *Dir) Deliver(r io.Reader) (string, error) {
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", fmt.Errorf("maildir: %w", err)
	}
	now := time.Now()
	name := strconv.FormatInt(now.Unix(), 10) + ".M" + strconv.Itoa(now.Nanosecond()/1000) +
		"P" + strconv.Itoa(os.Getpid()) + "Q" + strconv.FormatUint(d.seq.Add(1), 10) +
		"R" + hex.EncodeToString(rnd[:]) + "." + d.hostname
	tmp := filepath.Join(d.path, "tmp", name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return "", fmt.Errorf("maildir: %w", err)
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(d.path, "new", name))
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("maildir: %w", err)
	}
	// The rename is in new/'s directory entries: synced before our 250,
	// or a power loss could leave the message in tmp/ or nowhere.
	if err := syncDir(filepath.Join(d.path, "new")); err != nil {
		return "", fmt.Errorf("maildir: %w", err)
	}
	return name, nil
}

// mkdirSynced is os.MkdirAll, then syncs the parent of every directory it
// created.
func mkdirSynced(dir string) error {
	var missing []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	// The one nearest the root first: its parent existed before.
	for i := len(missing) - 1; i >= 0; i-- {
		if err := syncDir(filepath.Dir(missing[i])); err != nil {
			return fmt.Errorf("syncing %s: %w", filepath.Dir(missing[i]), err)
		}
	}
	return nil
}

// syncDir flushes a directory's entries to disk (a variable so that a
// test can see it called, and make it fail as a disk can).
var syncDir = func(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
