package gateway

// Tests of the small fast paths the make bench profiles asked for.

import (
	"bytes"
	"testing"
	"time"
)

// TestCloseEnough: a deadline is kept only when the one wanted is later by
// less than a 64th of the idle timeout; an earlier one (the DATA deadline
// closing in) is always set.
func TestCloseEnough(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	idle := 64 * time.Second
	for _, c := range []struct {
		set, want time.Time
		keep      bool
	}{
		{time.Time{}, t0, false},                   // nothing set yet
		{t0, t0, true},                             // the same
		{t0, t0.Add(999 * time.Millisecond), true}, // later by less than a 64th
		{t0, t0.Add(time.Second), false},           // later by a 64th
		{t0, t0.Add(-time.Millisecond), false},     // earlier: always set
	} {
		if got := closeEnough(c.set, c.want, idle); got != c.keep {
			t.Errorf("closeEnough(%v, %v) = %v, want %v", c.set, c.want, got, c.keep)
		}
	}
}

func FuzzIndexCRLFNul(f *testing.F) {
	for _, s := range []string{"", "abc", "a\rb", "a\nb\r", "\x00", "ab\r\n\x00", "line one\r\nline two"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := indexCRLFNul(b), bytes.IndexAny(b, "\r\n\x00"); got != want {
			t.Errorf("indexCRLFNul(%q) = %d, want %d", b, got, want)
		}
	})
}
