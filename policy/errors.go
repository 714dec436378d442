package policy

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Error is one problem found while loading rules: where it is (file, line
// and column, 1-based; Line 0 when the problem is the file as a whole) and
// why.
type Error struct {
	File   string
	Line   int
	Column int
	Msg    string
}

func (e *Error) Error() string {
	switch {
	case e.Line == 0:
		return e.File + ": " + e.Msg
	case e.Column == 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Msg)
}

// LoadError is every problem of one load, in file order and then by
// position. A load with any problem yields no engine.
type LoadError struct {
	Errors []*Error
}

func (e *LoadError) Error() string {
	lines := make([]string, len(e.Errors))
	for i, x := range e.Errors {
		lines[i] = x.Error()
	}
	if len(lines) == 1 {
		return lines[0]
	}
	return fmt.Sprintf("%d errors in rules:\n%s", len(lines), strings.Join(lines, "\n"))
}

// Unwrap returns the errors, for errors.Is and errors.As.
func (e *LoadError) Unwrap() []error {
	out := make([]error, len(e.Errors))
	for i, x := range e.Errors {
		out[i] = x
	}
	return out
}

// errList collects the errors of a load.
type errList struct {
	errs  []*Error
	order map[string]int // file → the order it was first seen, for sorting
}

func (l *errList) add(file string, line, col int, format string, args ...any) {
	if l.order == nil {
		l.order = map[string]int{}
	}
	if _, ok := l.order[file]; !ok {
		l.order[file] = len(l.order)
	}
	l.errs = append(l.errs, &Error{File: file, Line: line, Column: col, Msg: fmt.Sprintf(format, args...)})
}

func (l *errList) err() error {
	if len(l.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(l.errs, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(l.order[a.File], l.order[b.File]),
			cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
	return &LoadError{Errors: l.errs}
}
