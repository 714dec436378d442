package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Store holds the current Engine and replaces it on reload. Readers call
// Current once per transaction and use that engine for every stage of it,
// so no transaction sees half of a reload: an Engine is never changed
// after it is built, and the swap is one atomic pointer store.
type Store struct {
	dir  string
	opts Options
	cur  atomic.Pointer[Engine]

	mu      sync.Mutex // serialises reloads
	lastErr error

	// Debounce is how long Watch waits after the last file event before it
	// reloads, so that an editor's save (several events) or a deployment
	// copying many files causes one reload. Default 500ms. Set it before
	// calling Watch.
	Debounce time.Duration
	// OnReload, when set, is called after each reload attempt with the
	// engine in use afterwards and the load error (nil on success), for
	// metrics. Set it before calling Reload or Watch.
	OnReload func(e *Engine, err error)
}

// NewStore loads the rules of dir. It fails when they do not load: a
// daemon should not start without its rules.
func NewStore(dir string, opts Options) (*Store, error) {
	e, err := LoadOptions(dir, opts)
	if err != nil {
		return nil, err
	}
	s := &Store{dir: dir, opts: opts}
	s.cur.Store(e)
	return s, nil
}

// Current returns the engine in use.
func (s *Store) Current() *Engine { return s.cur.Load() }

// Err returns the error of the last reload, nil if it succeeded.
func (s *Store) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// SetOptions sets the options the next Reload checks the rules with: the
// daemon's configuration may have changed with them (a zone added or
// removed on SIGHUP).
func (s *Store) SetOptions(opts Options) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts = opts
}

// Reload loads the rules again. On success the new engine replaces the
// current one (unless the files did not change, in which case the current
// engine stays); on error the current engine stays in use and the error
// (a *LoadError) is returned.
func (s *Store) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := LoadOptions(s.dir, s.opts)
	s.lastErr = err
	if err == nil {
		if old := s.cur.Load(); old == nil || old.Digest() != e.Digest() {
			s.cur.Store(e)
		}
	}
	if s.OnReload != nil {
		s.OnReload(s.cur.Load(), err)
	}
	return err
}

// Watch reloads the rules when a file in the rules directory, or in a
// directory holding a list file, changes; it returns when ctx ends. Bursts
// of events are debounced. A reload that fails is logged (every error, with
// its position) and the running rules stay. Watch fails only when the
// directories cannot be watched.
func (s *Store) Watch(ctx context.Context, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.Default()
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching rules: %w", err)
	}
	defer w.Close()
	watched := map[string]bool{}
	addDirs := func() error {
		for _, d := range s.watchDirs() {
			if watched[d] {
				continue
			}
			if err := w.Add(d); err != nil {
				return fmt.Errorf("watching %s: %w", d, err)
			}
			watched[d] = true
		}
		return nil
	}
	if err := addDirs(); err != nil {
		return err
	}
	debounce := s.Debounce
	if debounce <= 0 {
		debounce = 500 * time.Millisecond
	}
	timer := time.NewTimer(debounce)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("rules watcher closed")
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			timer.Reset(debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("rules watcher closed")
			}
			logger.Warn("rules watcher", "err", err)
		case <-timer.C:
			before := s.Current()
			err := s.Reload()
			if err != nil {
				var le *LoadError
				if errors.As(err, &le) {
					for _, e := range le.Errors {
						logger.Error("rules reload failed, keeping the running rules", "error", e.Error())
					}
				} else {
					logger.Error("rules reload failed, keeping the running rules", "error", err)
				}
				continue
			}
			if now := s.Current(); now != before {
				logger.Info("rules reloaded", "dir", s.dir, "summary", now.Summary())
			}
			if err := addDirs(); err != nil {
				logger.Warn("rules watcher", "err", err)
			}
		}
	}
}

// watchDirs is the rules directory and the directories of the list files
// of the current engine.
func (s *Store) watchDirs() []string {
	dirs := []string{filepath.Clean(s.dir)}
	if e := s.Current(); e != nil {
		for _, f := range e.Files() {
			d := filepath.Dir(f)
			if !slices.Contains(dirs, d) {
				dirs = append(dirs, d)
			}
		}
	}
	return dirs
}

// Dir is the directory the rules are read from.
func (s *Store) Dir() string { return s.dir }
