package policy

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// fmtArg is an argument that records, when fmt prints it, whether with
// a width or precision; its int kind lets fmt take it for a * too.
type fmtArg int

type fmtLog struct{ widened []int }

var fmtRecord *fmtLog

func (a fmtArg) Format(s fmt.State, verb rune) {
	_, w := s.Width()
	_, p := s.Precision()
	if w || p {
		fmtRecord.widened = append(fmtRecord.widened, int(a))
	}
	fmt.Fprint(s, "x")
}

// fmtWidened is what fmt itself does: the arguments it prints with a
// width or precision, in order.
func fmtWidened(format string, n int) []int {
	args := make([]any, n)
	for i := range args {
		args[i] = fmtArg(i)
	}
	fmtRecord = &fmtLog{}
	_ = fmt.Sprintf(format, args...)
	return fmtRecord.widened
}

// widenedArgs reads a format as fmt does: compared with fmt on random
// formats of verbs, flags, widths, precisions, * and argument indexes.
// (%T, %p and %w print without calling Format: left out.)
func TestWidenedArgsMatchesFmt(t *testing.T) {
	pieces := []string{"%", "%", "%", "[1]", "[2]", "[3]", "[0]", "[x]", "[", "]", "*", ".", "5", "12",
		"0", "-", "+", "#", " ", "d", "v", "s", "x", "q", "%%", "a", "é", "1234567", "[99999999]"}
	rng := rand.New(rand.NewPCG(11, 12))
	for range 200000 {
		var sb strings.Builder
		for range 1 + rng.IntN(8) {
			sb.WriteString(pieces[rng.IntN(len(pieces))])
		}
		checkWidened(t, sb.String(), rng.IntN(4))
	}
	for _, tc := range []struct {
		format string
		n      int
		want   []int
	}{
		{"%-20s %v", 2, []int{0}},
		{"%v %5d", 2, []int{1}},
		{"%[2]5d %[1]v", 2, nil},      // an index before a width is bad: %!d(BADINDEX)
		{"%5[2]d %[1]v", 2, []int{1}}, // width 5, argument 2
		{"%*d %v", 3, []int{1}},
		{"%.*[3]v", 3, []int{2}},
		{"%5%%v", 1, nil},
		{"%.v", 1, []int{0}},
		{"%05.1f %03d %.1s", 3, []int{0, 1, 2}},
	} {
		if got := widenedArgs(tc.format, tc.n); !slices.Equal(got, tc.want) {
			t.Errorf("widenedArgs(%q, %d) = %v, want %v", tc.format, tc.n, got, tc.want)
		}
		checkWidened(t, tc.format, tc.n)
	}
}

func checkWidened(t *testing.T, format string, n int) {
	t.Helper()
	if got, want := widenedArgs(format, n), fmtWidened(format, n); !slices.Equal(got, want) {
		t.Fatalf("widenedArgs(%q, %d) = %v, fmt widens %v", format, n, got, want)
	}
}

func FuzzWidenedArgs(f *testing.F) {
	for _, s := range []string{"%-20s %v", "%[2]5d %[1]v", "%5[2]d", "%*.*[1]v", "%[1]*.[2]*[3]d", "%.[2]d", "%["} {
		f.Add(s, uint8(3))
	}
	f.Fuzz(func(t *testing.T, format string, n uint8) {
		if strings.ContainsAny(format, "Tpw") {
			return // printed without calling Format
		}
		checkWidened(t, format, int(n%6))
	})
}
