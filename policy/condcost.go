package policy

import (
	"reflect"

	"github.com/expr-lang/expr/ast"
)

// The cost of closures over the sender's lists.
//
// expr has no step budget (its VM counts only the elements of the lists
// it builds, in MemoryBudget), so what a closure costs is bounded when the
// rules load. A closure runs its body once per element of its list; some
// lists have as many elements as the sender likes, up to a bound:
// headers() gives up to 1,000 values, rcpts holds up to
// limits.max_recipients addresses, split() as many pieces as its text
// has. The elements of one such list are parts of what the sender sent,
// so the body's work on its own element (#) adds up to the size of the
// message's header, or of its recipients. What the body does with
// anything else it does once per element: another such list run over
// (a closure over headers("Cc") in one over headers("To") takes up to
// 1,000,000 steps) or a text of the header scanned (header("Subject")
// contains "x" in a closure over headers("Received") reads the subject
// up to 1,000 times: with a 900 KB subject, lower() of it there
// allocated 884 MB, split() of it 14 GB). So in the body of a closure
// over a sender's list, at any depth:
//
//   - another such list may only be measured or indexed (len, first,
//     last, get, [i]), not run over (by a closure, in, sort, uniq,
//     concat ...);
//   - a text of the header that is not the element (header(),
//     headers()[i], the fields of dkim.signatures) may not be given to
//     what costs its length: contains, matches and in (on their left),
//     lower, upper, trim, split, indexOf, int, date ..., the functions
//     (in_list, domain_match, header ...) and a map's key. Compared
//     with == or startsWith (whose cost is that of the shorter text) it
//     may be, with the element or another short text.
//
// What remains costs at most the size of what the sender sent times the
// size of the condition.

// costInfo is what the cost check knows of a node, from the node and
// those below it but for the bodies of closures (whose values are not
// what the closure gives).
type costInfo struct {
	list  string // a list the sender sizes in it (headers("To"), rcpts, split()), "" for none
	split string // a split() or splitAfter() in it
	long  bool   // it may read a text of the header (header(), headers(), dkim) that is not the element of a closure over a sender's list
}

// info is the costInfo of n, computed once.
func (w *condWalker) info(n ast.Node) costInfo {
	if n == nil {
		return costInfo{}
	}
	if ci, ok := w.costs[n]; ok {
		return ci
	}
	if w.costs == nil {
		w.costs = map[ast.Node]costInfo{}
	}
	var ci costInfo
	switch y := n.(type) {
	case *ast.CallNode:
		switch {
		case isIdent(y.Callee, "headers"):
			ci.list, ci.long = shortNode(y), true
		case isIdent(y.Callee, "header"):
			ci.long = true
		}
	case *ast.IdentifierNode:
		switch y.Value {
		case "rcpts":
			ci.list = "rcpts"
		case "dkim":
			ci.long = true // the tags of the DKIM-Signature fields
		}
	case *ast.BuiltinNode:
		if y.Name == "split" || y.Name == "splitAfter" {
			ci.list, ci.split = y.Name+"()", y.Name+"()"
		}
	case *ast.PointerNode:
		// The element of a closure over a sender's list is a part of
		// what the sender sent (its work on it adds up to the size of
		// the list); that of another closure is long when its list
		// holds long texts ([header("Subject")], dkim.signatures), also
		// beside a sender's list only measured there
		// ([header("Subject"), headers("X")[0]]).
		if l, ok := w.elems[y]; ok && y.Name == "" && !w.senderElems(l) {
			ci.long = w.info(l).long
		}
	case *ast.PredicateNode:
		w.costs[n] = ci
		return ci
	}
	for _, c := range children(n) {
		cc := w.info(c)
		if ci.list == "" {
			ci.list = cc.list
		}
		if ci.split == "" {
			ci.split = cc.split
		}
		ci.long = ci.long || cc.long
	}
	w.costs[n] = ci
	return ci
}

// senderList names the list the sender sizes that n is, or is made of
// (filter(headers("To"), ...), reverse(split(...))), "" for none. It is
// conservative: such a list anywhere in n counts. (A list of lists is
// written out in the condition, [headers("To"), headers("Cc")]: its
// length is the rule's, and a closure over one of its elements, a list
// of the sender's, runs as often as one over that list.)
func (w *condWalker) senderList(n ast.Node) string { return w.info(n).list }

// senderElems says whether every element of the list n is an element of
// a list the sender sizes: n is one (headers("To"), rcpts, split()), or
// is made of such lists only (filter, reverse, sort, take, uniq, concat,
// a slice, a choice between two). The work of a closure over n on its
// element then adds up to the size of those lists.
func (w *condWalker) senderElems(n ast.Node) bool {
	if w.listSource(n) != "" {
		return true
	}
	switch y := n.(type) {
	case *ast.BuiltinNode:
		switch y.Name {
		case "filter", "reverse", "sort", "take", "uniq":
			return len(y.Arguments) > 0 && w.senderElems(y.Arguments[0])
		case "concat":
			for _, a := range y.Arguments {
				if !w.senderElems(a) {
					return false
				}
			}
			return len(y.Arguments) > 0
		}
	case *ast.SliceNode:
		return w.senderElems(y.Node)
	case *ast.ConditionalNode:
		return w.senderElems(y.Exp1) && w.senderElems(y.Exp2)
	}
	return false
}

// splitList is senderList for split() and splitAfter() only.
func (w *condWalker) splitList(n ast.Node) string { return w.info(n).split }

// listSource names n when it is itself a list the sender sizes: a call of
// headers(), rcpts, split() or splitAfter().
func (w *condWalker) listSource(n ast.Node) string {
	switch y := n.(type) {
	case *ast.CallNode:
		if isIdent(y.Callee, "headers") {
			return shortNode(y)
		}
	case *ast.IdentifierNode:
		if y.Value == "rcpts" {
			return "rcpts"
		}
	case *ast.BuiltinNode:
		if y.Name == "split" || y.Name == "splitAfter" {
			return y.Name + "()"
		}
	}
	return ""
}

// longText says whether n is a text of the message's header that is not
// the element of the closure being checked: its length is the sender's
// (up to the 1 MiB of the header section), and it is the same, or
// unrelated to the element, at every element.
func (w *condWalker) longText(n ast.Node) bool {
	return textType(n.Type()) && w.info(n).long
}

// children are the nodes right below n, as ast.Walk visits them.
func children(n ast.Node) []ast.Node {
	switch x := n.(type) {
	case *ast.UnaryNode:
		return []ast.Node{x.Node}
	case *ast.BinaryNode:
		return []ast.Node{x.Left, x.Right}
	case *ast.ChainNode:
		return []ast.Node{x.Node}
	case *ast.MemberNode:
		return []ast.Node{x.Node, x.Property}
	case *ast.SliceNode:
		out := []ast.Node{x.Node}
		if x.From != nil {
			out = append(out, x.From)
		}
		if x.To != nil {
			out = append(out, x.To)
		}
		return out
	case *ast.CallNode:
		return append([]ast.Node{x.Callee}, x.Arguments...)
	case *ast.BuiltinNode:
		return x.Arguments
	case *ast.PredicateNode:
		return []ast.Node{x.Node}
	case *ast.VariableDeclaratorNode:
		return []ast.Node{x.Value, x.Expr}
	case *ast.SequenceNode:
		return x.Nodes
	case *ast.ConditionalNode:
		return []ast.Node{x.Cond, x.Exp1, x.Exp2}
	case *ast.ArrayNode:
		return x.Nodes
	case *ast.MapNode:
		return x.Pairs
	case *ast.PairNode:
		return []ast.Node{x.Key, x.Value}
	}
	return nil
}

// textType says whether a value of type t may be a text.
func textType(t reflect.Type) bool {
	return t == nil || t.Kind() == reflect.String || t.Kind() == reflect.Interface
}

// shortNode is n as written, cut for a message.
func shortNode(n ast.Node) string {
	s := []rune(n.String())
	if len(s) > 40 {
		return string(s[:37]) + "..."
	}
	return string(s)
}

// measures are the builtins that read a list in constant time.
var measures = map[string]bool{"len": true, "first": true, "last": true, "get": true}

// textCost are the builtins that cost the length of their first argument.
var textCost = map[string]bool{
	"lower": true, "upper": true, "trim": true, "trimPrefix": true, "trimSuffix": true, "split": true,
	"splitAfter": true, "indexOf": true, "lastIndexOf": true, "int": true, "float": true, "date": true,
	"duration": true, "timezone": true,
}

// shorterCost are the operators and builtins that cost the length of the
// shorter of their two texts.
var shorterCost = map[string]bool{
	"==": true, "!=": true, "<": true, "<=": true, ">": true, ">=": true, "startsWith": true, "endsWith": true,
	"hasPrefix": true, "hasSuffix": true,
}

// textFuncs are the functions of Env that cost the length of their
// arguments.
var textFuncs = map[string]bool{
	"header": true, "headers": true, "in_list": true, "ip_in": true, "domain_match": true,
	"dkim_pass_domain": true, "dnsbl_listed": true, "dnsbl_code": true,
}

// checkSenderClosure checks the body of the closure of b when b runs over
// a list the sender sizes (see above). Closures over such lists within
// the body are checked on their own.
func (w *condWalker) checkSenderClosure(b *ast.BuiltinNode) {
	if !closureBuiltins[b.Name] || len(b.Arguments) < 2 {
		return
	}
	outer := w.senderList(b.Arguments[0])
	if outer == "" {
		return
	}
	var visit func(n, parent ast.Node)
	visit = func(n, parent ast.Node) {
		if n == nil {
			return
		}
		w.checkPerElement(n, parent, outer)
		if c, ok := n.(*ast.BuiltinNode); ok && closureBuiltins[c.Name] && len(c.Arguments) > 0 && w.senderList(c.Arguments[0]) != "" {
			// Its list is checked here (but a split, refused as such),
			// its body on its own.
			if w.splitList(c.Arguments[0]) == "" {
				visit(c.Arguments[0], c)
			}
			return
		}
		for _, c := range children(n) {
			visit(c, n)
		}
	}
	for _, a := range b.Arguments[1:] {
		if p, ok := a.(*ast.PredicateNode); ok {
			visit(p.Node, p)
		}
	}
}

// checkPerElement checks n, a node of the body of a closure over the
// sender's list outer, below parent.
func (w *condWalker) checkPerElement(n, parent ast.Node, outer string) {
	if src := w.listSource(n); src != "" && !w.measured(n, parent) {
		w.errAt(n, "%s is run over in a closure over %s: the sender sets the length of both lists, and the steps are their product (up to 1,000,000 for two headers()); there, use it only with len, first, last, get or [i]", src, outer)
	}
	long := func(x ast.Node, what string) {
		if w.longText(x) {
			w.errAt(x, "%s is read at every element of %s, and %s costs its length each time (a text of the header, up to 1 MiB): test it outside the closure, or compare it with == to the element", shortNode(x), outer, what)
		}
	}
	switch x := n.(type) {
	case *ast.BinaryNode:
		switch {
		case x.Operator == "contains" || x.Operator == "matches" || x.Operator == "in":
			long(x.Left, x.Operator)
		case shorterCost[x.Operator] && w.longText(x.Right):
			long(x.Left, x.Operator+" with another text of the header")
		}
	case *ast.BuiltinNode:
		switch {
		case textCost[x.Name] && len(x.Arguments) > 0:
			long(x.Arguments[0], x.Name)
		case shorterCost[x.Name] && len(x.Arguments) == 2 && w.longText(x.Arguments[1]):
			long(x.Arguments[0], x.Name+" with another text of the header")
		}
	case *ast.CallNode:
		if id, ok := x.Callee.(*ast.IdentifierNode); ok && textFuncs[id.Value] {
			for _, a := range x.Arguments {
				long(a, id.Value)
			}
		}
	case *ast.MemberNode:
		if _, lit := x.Property.(*ast.StringNode); !lit {
			long(x.Property, "a lookup by key")
		}
	}
}

// measured says whether the list n, below parent, is only measured or
// indexed: len(n), first(n), last(n), get(n, i), n[i].
func (w *condWalker) measured(n, parent ast.Node) bool {
	switch p := parent.(type) {
	case *ast.BuiltinNode:
		if measures[p.Name] && len(p.Arguments) > 0 && p.Arguments[0] == n {
			return true
		}
	case *ast.MemberNode:
		return p.Node == n
	}
	return false
}
