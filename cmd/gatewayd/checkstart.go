package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/mxgate/gatewayd/checks"
	"github.com/mxgate/gatewayd/config"
)

// checkStart does what the daemon's start does that can fail on the
// configuration, so that `gatewayd check` refuses what the daemon would:
// the TLS certificate, the resolvers (when checks are on), the rule files
// loaded and checked against the configured zones exactly as at start
// (openRules), and the paths the daemon opens: the decision log, the
// quarantine and the delivery Maildir. It creates nothing: a path the
// daemon would create is tried by creating a temporary file where it
// would go, removed at once. What it cannot know without starting (a
// listen address in use, Redis down) is left to the start.
func checkStart(cfg *config.Config) []error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := buildTLS(cfg); err != nil {
		add(err)
	}
	if len(cfg.Checks) > 0 {
		res, err := checks.NewResolver(cfg.DNS)
		if err != nil {
			add(fmt.Errorf("dns: %w", err))
		} else {
			res.Close()
		}
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := openRules(cfg, quiet); err != nil {
		add(err)
	}
	switch cfg.Log.Decisions {
	case "stdout", "stderr":
	default:
		if err := canAppend(cfg.Log.Decisions); err != nil {
			add(cfg.KeyError("log.decisions", err))
		}
	}
	add(checkTempDir(cfg))
	if err := canMaildir(cfg.Quarantine); err != nil {
		add(cfg.KeyError("quarantine", err))
	}
	if len(cfg.Upstream.Addrs) == 0 {
		if err := canMaildir(cfg.Maildir); err != nil {
			add(cfg.KeyError("maildir", err))
		}
	}
	return errs
}

// maxLinkHops bounds the symlinks followed to a missing file (the
// kernel's own bound, 40 on Linux, stops Stat first).
const maxLinkHops = 40

// canAppend tells whether the daemon could open path as it opens the
// decision log: for appending, created when missing.
func canAppend(path string) error { return canAppendHops(path, 0) }

func canAppendHops(path string, hops int) error {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// A dangling symlink: the daemon's open follows it and creates
		// its target, in the target's directory.
		if target, ok := danglingLink(path); ok {
			if hops >= maxLinkHops {
				return fmt.Errorf("cannot create %s: too many levels of symbolic links", path)
			}
			if err := canAppendHops(target, hops+1); err != nil {
				return fmt.Errorf("%s is a symlink to %s: %w", path, target, err)
			}
			return nil
		}
		// Created in its directory, which is not made.
		d := parentDir(path)
		dst, err := os.Stat(d)
		switch {
		case err != nil:
			return fmt.Errorf("cannot create %s: %w", path, err)
		case !dst.IsDir():
			return fmt.Errorf("cannot create %s: %s is not a directory", path, d)
		}
		if err := canCreateIn(d); err != nil {
			return fmt.Errorf("cannot create %s: %w", path, err)
		}
		return nil
	case err != nil:
		return err
	case st.IsDir():
		return fmt.Errorf("%s is a directory", path)
	case st.Mode()&fs.ModeNamedPipe != 0:
		return nil // opening it would wait for a reader
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	return f.Close()
}

// canMaildir tells whether maildir.Open(path) would succeed and a
// message could be written into it: tmp, new and cur directories, made
// when missing, and a file created in tmp. The directories are named with
// filepath.Join, which cleans path, as maildir.Open names them.
func canMaildir(path string) error {
	for _, sub := range []string{"tmp", "new", "cur"} {
		p := filepath.Join(path, sub)
		st, err := os.Stat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			err = canCreate(p)
		case err != nil:
		case !st.IsDir():
			err = fmt.Errorf("%s is not a directory", p)
		case sub == "tmp":
			err = canCreateIn(p)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// canCreate tells whether path, which does not exist, could be made
// (with its missing parent directories): the nearest existing ancestor
// must be a directory that takes new files.
//
// A dangling symlink on the way (path itself or a missing ancestor) fails
// as os.MkdirAll does: it makes no directory over it, nor follows it.
func canCreate(path string) error {
	if target, ok := danglingLink(path); ok {
		return fmt.Errorf("cannot create %s: it is a symlink to %s, which does not exist", path, target)
	}
	d := parentDir(path)
	for {
		st, err := os.Stat(d)
		if err == nil {
			if !st.IsDir() {
				return fmt.Errorf("cannot create %s: %s is not a directory", path, d)
			}
			if err := canCreateIn(d); err != nil {
				return fmt.Errorf("cannot create %s: %w", path, err)
			}
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("cannot create %s: %w", path, err)
		}
		if target, ok := danglingLink(d); ok {
			return fmt.Errorf("cannot create %s: %s is a symlink to %s, which does not exist", path, d, target)
		}
		parent := parentDir(d)
		if parent == d {
			return fmt.Errorf("cannot create %s: %w", path, err)
		}
		d = parent
	}
}

// danglingLink tells whether path, which Stat found missing, is a symlink
// (to a missing file, or to another such symlink) and returns where it
// points, relative targets taken from the link's directory as the kernel
// does: the target is put after parentDir(path), and neither is cleaned,
// so a ".." in either is resolved by the kernel, after the symlinks before
// it (see parentDir).
func danglingLink(path string) (target string, ok bool) {
	st, err := os.Lstat(path)
	if err != nil || st.Mode()&fs.ModeSymlink == 0 {
		return "", false
	}
	target, err = os.Readlink(path)
	if err != nil {
		return "", false
	}
	if !filepath.IsAbs(target) {
		target = joinUncleaned(parentDir(path), target)
	}
	return target, true
}

// parentDir returns the directory that holds the last element of path as
// the kernel finds it: path without that element, not cleaned (as
// os.MkdirAll takes a parent). filepath.Dir cleans, and cleaning resolves
// ".." by text, where the kernel resolves it after the symlinks before it:
// when link is a symlink to a directory, "link/../logs/d.log" is in the
// logs directory beside the link's target, not the one beside the link.
func parentDir(path string) string {
	dir, _ := filepath.Split(path)
	if dir == "" {
		return "."
	}
	if d := strings.TrimRight(dir, string(filepath.Separator)); d != "" {
		return d
	}
	return dir // the root
}

// joinUncleaned is dir/name, without cleaning (see parentDir).
func joinUncleaned(dir, name string) string {
	switch {
	case dir == ".":
		return name
	case strings.HasSuffix(dir, string(filepath.Separator)):
		return dir + name
	}
	return dir + string(filepath.Separator) + name
}

// checkTempDir tells whether messages over limits.memory_threshold can be
// held in temp_dir (or the system's temp directory): config.Validate
// checks that it is a directory, but one the daemon may not write in
// (read-only, another owner's) passed, and every such message got a 451.
// The start and a reload refuse it as check does.
func checkTempDir(cfg *config.Config) error {
	dir := cfg.TempDir
	if dir == "" {
		dir = os.TempDir()
	}
	if err := canCreateIn(dir); err != nil {
		if cfg.TempDir == "" {
			err = fmt.Errorf("%w (the system's temp directory, $TMPDIR)", err)
		}
		return cfg.KeyError("temp_dir", err)
	}
	return nil
}

// canCreateIn tells whether a file can be created in the directory dir,
// by creating one and removing it at once: the only exact answer (the
// process's own user and groups, ACLs, a read-only file system).
func canCreateIn(dir string) error {
	f, err := os.CreateTemp(dir, ".gatewayd-check-*")
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Errorf("cannot create files in %s: %w", dir, err)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}
