package policy_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxgate/gatewayd/policy"
)

// write replaces dir/name atomically (write then rename), as deployments
// and most editors do.
func write(t testing.TB, dir, name, content string) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(filepath.Dir(p), ".tmp-"+filepath.Base(p))
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
}

// rejectAt is a rule file that rejects HELO names ending in suffix with
// text, and scores 1 per generation so readers can tell versions apart.
func rejectAt(suffix, text string) string {
	return `rules:
  - name: helo_reject
    stage: helo
    if: helo endsWith "` + suffix + `"
    action: reject
    reply: "550 5.7.1 ` + text + `"
`
}

func heloReply(e *policy.Engine, h string) string {
	o := e.Evaluate(facts(policy.StageHelo, helo(h)))
	return o.Reply.Text
}

func TestStoreReload(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "rules.yaml", rejectAt(".one", "first"))
	s, err := policy.NewStore(dir, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var reloads []error
	s.OnReload = func(e *policy.Engine, err error) { reloads = append(reloads, err) }
	old := s.Current()
	if got := heloReply(old, "a.one"); got != "first" {
		t.Fatalf("first load: %q", got)
	}

	// Unchanged files: the same engine stays.
	if err := s.Reload(); err != nil || s.Current() != old {
		t.Fatalf("reload of unchanged files: %v, engine replaced: %v", err, s.Current() != old)
	}

	// A valid change takes effect on the next Current.
	write(t, dir, "rules.yaml", rejectAt(".two", "second"))
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	cur := s.Current()
	if got := heloReply(cur, "a.two"); got != "second" {
		t.Errorf("after reload: %q", got)
	}
	if got := heloReply(cur, "a.one"); got != "" {
		t.Errorf("old rule still there: %q", got)
	}
	// The old engine is untouched: a transaction that took it goes on
	// with it.
	if got := heloReply(old, "a.one"); got != "first" {
		t.Errorf("old engine changed: %q", got)
	}

	// An invalid change leaves the running rules.
	write(t, dir, "rules.yaml", rejectAt(".three", "third")+"    bogus: 1\n")
	err = s.Reload()
	var le *policy.LoadError
	if !errors.As(err, &le) || !strings.Contains(err.Error(), `unknown field "bogus"`) {
		t.Fatalf("bad reload: %v", err)
	}
	if s.Current() != cur || s.Err() == nil {
		t.Error("a failed reload replaced the engine or lost its error")
	}
	if got := heloReply(s.Current(), "a.two"); got != "second" {
		t.Errorf("after a bad reload: %q", got)
	}
	// A broken list file fails the reload too.
	write(t, dir, "rules.yaml", rejectAt(".four", "fourth")+"lists:\n  l: {type: cidr, file: l.txt}\n")
	write(t, dir, "l.txt", "10.0.0.0/8\nnonsense\n")
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), "l.txt:2:1:") {
		t.Fatalf("bad list: %v", err)
	}
	write(t, dir, "l.txt", "10.0.0.0/8\n")
	if err := s.Reload(); err != nil || s.Err() != nil {
		t.Fatal(err)
	}
	if got := heloReply(s.Current(), "a.four"); got != "fourth" {
		t.Errorf("after fixing the list: %q", got)
	}
	if len(reloads) != 5 || reloads[0] != nil || reloads[2] == nil || reloads[3] == nil || reloads[4] != nil {
		t.Errorf("OnReload saw %v", reloads)
	}
}

func TestNewStoreBadRules(t *testing.T) {
	if _, err := policy.NewStore("testdata/errors/syntax", policy.Options{}); err == nil {
		t.Fatal("NewStore accepted bad rules")
	}
}

// TestStoreConcurrentReaders reloads between two rule sets while readers
// evaluate; each engine a reader holds must be one whole version: both
// rules of the same generation, never a mix (run with -race).
func TestStoreConcurrentReaders(t *testing.T) {
	dir := t.TempDir()
	gen := func(n string) string {
		return `rules:
  - name: a
    stage: helo
    action: score
    score: 1
    detail: "` + n + `"
  - name: b
    stage: helo
    action: reject
    reply: "550 5.7.1 ` + n + `"
`
	}
	write(t, dir, "rules.yaml", gen("g0"))
	s, err := policy.NewStore(dir, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				e := s.Current()
				o := e.Evaluate(facts(policy.StageHelo, helo("x.test")))
				if len(o.Reasons) != 2 || o.Reasons[0].Detail != o.Reply.Text {
					select {
					case errs <- o.Reasons[0].Detail + " vs " + o.Reply.Text:
					default:
					}
					return
				}
			}
		}()
	}
	for i := range 30 {
		g := "g" + string(rune('a'+i%26))
		write(t, dir, "rules.yaml", gen(g))
		if i%5 == 4 {
			write(t, dir, "rules.yaml", "rules: [") // a bad version in between
		}
		_ = s.Reload()
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("a reader saw a mixed engine: %s", e)
	}
}

// TestStoreWatch: a file change is picked up by the watcher. The test waits
// with a bounded poll and asserts only on the outcome.
func TestStoreWatch(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "rules.yaml", rejectAt(".one", "first")+"lists:\n  l: {type: domain, file: lists/l.txt}\n")
	write(t, dir, "lists/l.txt", "a.test\n")
	write(t, dir, "more.yaml", "")
	s, err := policy.NewStore(dir, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Debounce = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	go func() { done <- s.Watch(ctx, logger) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	}()

	// poll rewrites the files with change until cond holds: the watcher
	// may start after the first write, so writing again is fine.
	poll := func(what string, change func(), cond func(*policy.Engine) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond(s.Current()) {
			if time.Now().After(deadline) {
				t.Fatalf("watch did not pick up %s", what)
			}
			change()
			time.Sleep(50 * time.Millisecond)
		}
	}
	poll("a rule change", func() {
		write(t, dir, "rules.yaml", rejectAt(".two", "second")+"lists:\n  l: {type: domain, file: lists/l.txt}\n")
	},
		func(e *policy.Engine) bool { return heloReply(e, "x.two") == "second" })

	inList := func(e *policy.Engine, v string) bool { l, ok := e.List("l"); return ok && l.Contains(v) }
	poll("a list change", func() { write(t, dir, "lists/l.txt", "a.test\nb.test\n") },
		func(e *policy.Engine) bool { return inList(e, "b.test") })

	// A bad file is logged and ignored; the next good one is picked up.
	before := s.Current()
	write(t, dir, "more.yaml", "rules: [")
	poll("a bad file", func() {}, func(*policy.Engine) bool { return s.Err() != nil })
	if s.Current() != before {
		t.Error("a bad file replaced the engine")
	}
	poll("a new file", func() {
		write(t, dir, "more.yaml", "rules:\n  - {name: extra, stage: helo, if: helo == \"x.three\", action: reject}\n")
	}, func(e *policy.Engine) bool { return heloReply(e, "x.three") == "Rejected by policy" })
}
