package gateway

// Tests of the small fast paths the make bench profiles asked for.

import (
	"bufio"
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
		f.Add([]byte(s), true, true)
		f.Add([]byte(s), false, true)
		f.Add([]byte(s), true, false)
	}
	f.Fuzz(func(t *testing.T, b []byte, lf, nul bool) {
		set := "\r"
		if lf {
			set += "\n"
		}
		if nul {
			set += "\x00"
		}
		if got, want := indexCRLFNul(b, lf, nul), bytes.IndexAny(b, set); got != want {
			t.Errorf("indexCRLFNul(%q, %v, %v) = %d, want %d", b, lf, nul, got, want)
		}
	})
}

// TestDataReaderHostileOctets: a message of nothing but NUL or LF octets
// is read to its end and refused for them, and the bytes are all counted.
func TestDataReaderHostileOctets(t *testing.T) {
	for _, c := range []struct {
		name string
		fill byte
	}{{"NUL", 0}, {"LF", '\n'}} {
		body := append(bytes.Repeat([]byte{c.fill}, 256<<10), "\r\n.\r\n"...)
		var held bytes.Buffer
		dr := dataReader{r: bufio.NewReader(bytes.NewReader(body)), w: &held}
		werr, rerr := dr.run()
		if werr != nil || rerr != nil {
			t.Fatalf("%s: %v %v", c.name, werr, rerr)
		}
		if dr.nul != (c.fill == 0) || dr.bareLF != (c.fill == '\n') || dr.size != 256<<10+2 {
			t.Errorf("%s: nul %v bareLF %v size %d", c.name, dr.nul, dr.bareLF, dr.size)
		}
	}
}
