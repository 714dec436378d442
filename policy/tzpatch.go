package policy

import (
	"reflect"
	"time"

	"github.com/expr-lang/expr/ast"
)

// Time zones in conditions.
//
// expr's timezone("Europe/Berlin") and date(text, layout, "Europe/Berlin")
// read the zone from the system's zoneinfo at every evaluation
// (time.LoadLocation caches nothing): 16 µs and 27 allocations a call, on
// the disk. So a zone must be a literal string, checked when the rules
// load (checkZone), and the loaded zone takes the call's place in the
// compiled program (zonePatcher): an unknown zone is a load error, not a
// run-time one on every message, and nothing the sender writes is ever
// looked up as a file name.

var locationType = reflect.TypeOf((*time.Location)(nil))

// zoneArg is the argument of n that names a time zone, if it has one:
// timezone's only argument, date's third when its first is not a zone,
// and date's fourth (after a zone, which expr's date then ignores:
// date(zone, text, layout, "Europe/Berlin") reads the text in Berlin's
// time; the checker refuses four arguments after anything but a zone).
func zoneArg(n *ast.BuiltinNode) (int, bool) {
	switch {
	case n.Name == "timezone" && len(n.Arguments) == 1:
		return 0, true
	case n.Name == "date" && len(n.Arguments) == 3 && !isLocation(n.Arguments[0]):
		return 2, true
	case n.Name == "date" && len(n.Arguments) == 4:
		return 3, true
	}
	return 0, false
}

// isLocation says whether n is a *time.Location: a timezone() call, or a
// node the checker typed so.
func isLocation(n ast.Node) bool {
	if b, ok := n.(*ast.BuiltinNode); ok && b.Name == "timezone" {
		return true
	}
	if c, ok := n.(*ast.ConstantNode); ok {
		_, is := c.Value.(*time.Location)
		return is
	}
	return n.Type() != nil && n.Type() == locationType
}

// checkZone refuses a time zone that is not a literal string naming a zone
// the system knows.
func (w *condWalker) checkZone(n *ast.BuiltinNode) {
	i, ok := zoneArg(n)
	if !ok {
		return
	}
	s, lit := n.Arguments[i].(*ast.StringNode)
	if !lit {
		w.errAt(n.Arguments[i], "%s: the time zone must be a literal string (it is read from disk at every evaluation otherwise)", n.Name)
		return
	}
	if _, err := time.LoadLocation(s.Value); err != nil {
		w.errAt(n.Arguments[i], "%s: unknown time zone %q", n.Name, s.Value)
	}
}

// zonePatcher puts the zones of a condition, loaded once, in the place of
// the calls that would load them at every evaluation: timezone("Z")
// becomes the zone, and date(t, layout, "Z") (or date(other, t, layout,
// "Z")) date(zone, t, layout), which expr's date reads the same way
// (time.ParseInLocation). A zone that does
// not load is left to checkZone's error.
type zonePatcher struct{}

func (zonePatcher) Visit(node *ast.Node) {
	n, ok := (*node).(*ast.BuiltinNode)
	if !ok {
		return
	}
	i, ok := zoneArg(n)
	if !ok {
		return
	}
	s, lit := n.Arguments[i].(*ast.StringNode)
	if !lit {
		return
	}
	loc, err := time.LoadLocation(s.Value)
	if err != nil {
		return
	}
	zone := &ast.ConstantNode{Value: loc}
	if n.Name == "timezone" {
		ast.Patch(node, zone)
	} else {
		// The text and layout are the two arguments before the zone.
		date := &ast.BuiltinNode{Name: "date", Arguments: []ast.Node{zone, n.Arguments[i-2], n.Arguments[i-1]}}
		ast.Patch(node, date)
		// Its type too, for the same reason: the compiler takes the
		// receiver of date(...).In(timezone("UTC")) for an unknown
		// value, counts the receiver among the method's parameters,
		// and dereferences the zone given to In (an error at every
		// evaluation).
		date.SetType(timeType)
	}
	// The type, which expr's checker does not give again to a node under
	// a method call (date(...).Unix()): without it the compiler takes
	// the zone for an unknown value and dereferences it.
	zone.SetType(locationType)
}

var timeType = reflect.TypeOf(time.Time{})
