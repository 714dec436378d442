package yamldoc

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestExtra(t *testing.T) {
	for _, c := range []struct {
		in       string
		line     int // of the extra document's first node; 0: none
		wantsErr bool
	}{
		{"a: 1\n", 0, false},
		{"a: 1\n---\n", 0, false},
		{"a: 1\n...\n", 0, false},
		{"a: 1\n---\n---\n", 0, false},
		{"a: 1\n---\nb: 2\n", 3, false},
		{"a: 1\n---\n\n---\n- x\n", 5, false},
		{"a: 1\n---\n[\n", 0, true},
	} {
		dec := yaml.NewDecoder(strings.NewReader(c.in))
		var first yaml.Node
		if err := dec.Decode(&first); err != nil {
			t.Fatalf("%q: first document: %v", c.in, err)
		}
		n, err := Extra(dec)
		if (err != nil) != c.wantsErr {
			t.Errorf("%q: err %v", c.in, err)
			continue
		}
		got := 0
		if n != nil {
			got = n.Line
		}
		if got != c.line {
			t.Errorf("%q: extra document at line %d, want %d", c.in, got, c.line)
		}
	}
}
