package config

import (
	"fmt"
	"math"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// decoder.decode decodes n into v like yaml.v3's Decode with KnownFields, but
// walks the tree itself so that every error names the file position and the
// full key path ("limits.idle_timeout"), which yaml.v3's own errors do not.
type decoder struct {
	pos     map[string][2]int // key path -> line, column of its value
	nulls   map[string]bool   // key paths given with no value
	inAlias int               // depth of alias expansions being decoded
	visits  int               // nodes decoded through an alias
	octets  int               // scalar octets decoded through an alias
}

// maxAliasNodes and maxAliasOctets bound what aliases expand to. Aliases
// of aliases could otherwise expand a small file to billions of values
// (yaml.v3 guards its own Decode against that, not a walk of the node
// tree like ours), and one large scalar used many times to gigabytes
// (each bad copy quoted in an error); what is written out is bounded by
// the file's size.
const (
	maxAliasNodes  = 100_000
	maxAliasOctets = maxFileSize
)

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) error {
	if d.inAlias > 0 {
		if d.visits++; d.visits > maxAliasNodes {
			return posErr(n, path, "aliases expand to more than %d values (aliases of aliases?)", maxAliasNodes)
		}
		if d.octets += len(n.Value); d.octets > maxAliasOctets {
			return posErr(n, path, "aliases expand to more than %d MiB", maxAliasOctets>>20)
		}
	}
	if d.pos != nil && path != "" {
		if _, ok := d.pos[path]; !ok {
			d.pos[path] = [2]int{n.Line, n.Column}
		}
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		return d.decode(n.Content[0], v, path)
	}
	if n.Kind == yaml.AliasNode {
		d.inAlias++
		defer func() { d.inAlias-- }()
		return d.decode(n.Alias, v, path)
	}
	if n.Tag == "!!null" && n.Kind == yaml.ScalarNode {
		if d.nulls != nil && path != "" {
			d.nulls[path] = true
		}
		return nil // key present with no value: keep the default
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		return d.decode(n, v.Elem(), path)
	}
	// A struct with its own UnmarshalYAML (one that only sets defaults)
	// is still walked key by key, so unknown keys are caught; defaults
	// come from Default.
	if _, ok := v.Addr().Interface().(yaml.Unmarshaler); ok && v.Kind() != reflect.Struct {
		return leaf(n, v, path)
	}
	switch v.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return posErr(n, path, "want a mapping of keys, got %s", kindName(n))
		}
		fields := structFields(v)
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			key := k.Value
			sub := join(path, key)
			if seen[key] {
				return posErr(k, sub, "key given twice")
			}
			seen[key] = true
			f, ok := fields[key]
			if !ok {
				return posErr(k, sub, "unknown key%s", suggest(key, fields))
			}
			if err := d.decode(val, f, sub); err != nil {
				return err
			}
		}
		return nil
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return posErr(n, path, "want a list, got %s", kindName(n))
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, el := range n.Content {
			if err := d.decode(el, s.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return posErr(n, path, "want a mapping, got %s", kindName(n))
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			kv := reflect.New(v.Type().Key()).Elem()
			if err := leaf(k, kv, path); err != nil {
				return err
			}
			ev := reflect.New(v.Type().Elem()).Elem()
			if err := d.decode(val, ev, join(path, k.Value)); err != nil {
				return err
			}
			v.SetMapIndex(kv, ev)
		}
		return nil
	}
	return leaf(n, v, path)
}

// leaf decodes a scalar (or a type with its own UnmarshalYAML).
func leaf(n *yaml.Node, v reflect.Value, path string) error {
	if err := wholeNumber(n, v); err != nil {
		return posErr(n, path, "%v", err)
	}
	if err := n.Decode(v.Addr().Interface()); err != nil {
		msg := err.Error()
		msg = strings.TrimPrefix(msg, "yaml: unmarshal errors:\n  ")
		if i := strings.Index(msg, ": "); strings.HasPrefix(msg, "line ") && i > 0 {
			msg = msg[i+2:]
		}
		return posErr(n, path, "%s", msg)
	}
	return nil
}

// wholeNumber refuses a number with a fraction, or too large, for an
// integer key: yaml.v3 decodes a float into an int by dropping the
// fraction, so "cpus: 0.5" ran on every CPU and "max_connections: 1.5"
// took one connection, both without a word.
func wholeNumber(n *yaml.Node, v reflect.Value) error {
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
	default:
		return nil
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!float" {
		return nil
	}
	var f float64
	if err := n.Decode(&f); err != nil {
		return nil // yaml.v3's own error says it
	}
	if math.IsNaN(f) || math.IsInf(f, 0) || f != math.Trunc(f) {
		return fmt.Errorf("%q is not a whole number", n.Value)
	}
	if f >= 1<<63 || f < -(1<<63) || v.Kind() >= reflect.Uint && f < 0 {
		return fmt.Errorf("%q is out of range", n.Value)
	}
	return nil
}

func structFields(v reflect.Value) map[string]reflect.Value {
	out := map[string]reflect.Value{}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		tag := sf.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			for k, f := range structFields(v.Field(i)) {
				out[k] = f
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(sf.Name)
		}
		out[name] = v.Field(i)
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return fmt.Sprintf("%q", n.Value)
}

// suggest names the closest known key, for typos.
func suggest(key string, fields map[string]reflect.Value) string {
	best, bestD := "", 3
	for k := range fields {
		if d := editDistance(key, k); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// Error is a configuration error at a position, naming the key.
type Error struct {
	File   string
	Line   int
	Column int
	Key    string
	Msg    string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(":")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "%d:%d: ", e.Line, e.Column)
	} else if e.File != "" {
		b.WriteString(" ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

func posErr(n *yaml.Node, key, format string, args ...any) error {
	return &Error{Line: n.Line, Column: n.Column, Key: key, Msg: fmt.Sprintf(format, args...)}
}
