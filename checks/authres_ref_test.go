package checks

import (
	"bytes"
	"strings"
	"testing"
)

// refStripAuthResults is StripAuthResults as it was before it compared
// field names in place.
func refStripAuthResults(header []byte, authservID string) []byte {
	out := make([]byte, 0, len(header))
	rest := header
	for len(rest) > 0 {
		end := fieldEnd(rest)
		field := rest[:end]
		rest = rest[end:]
		if isBlankLine(field) {
			out = append(out, field...)
			out = append(out, rest...)
			break
		}
		if name, value, ok := strings.Cut(string(field), ":"); ok &&
			strings.EqualFold(strings.TrimRight(name, " \t"), "Authentication-Results") &&
			strings.EqualFold(authservIDOf(value), authservID) {
			continue
		}
		out = append(out, field...)
	}
	return out
}

func FuzzStripAuthResultsReference(f *testing.F) {
	f.Add([]byte("Authentication-Results: mx.example; spf=pass\r\nFrom: a@b\r\n\r\nbody"), "mx.example")
	f.Add([]byte("authentication-results \t:\r\n (c) \"MX.example\"; none\r\nAuthentication-Results: other; none\r\n\r\n"), "mx.EXAMPLE")
	f.Add([]byte("Authentication-Re\u017Fults: mx.example; none\r\n:\r\nX\r\n\r\n"), "mx.example")
	f.Fuzz(func(t *testing.T, hdr []byte, id string) {
		orig := bytes.Clone(hdr)
		got, want := StripAuthResults(hdr, id), refStripAuthResults(hdr, id)
		if !bytes.Equal(got, want) {
			t.Errorf("StripAuthResults(%q, %q) = %q, was %q", hdr, id, got, want)
		}
		if !bytes.Equal(hdr, orig) {
			t.Errorf("StripAuthResults modified its input")
		}
	})
}
