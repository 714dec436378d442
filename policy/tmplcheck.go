package policy

import (
	"fmt"
	"reflect"
	"strings"
	"text/template/parse"
)

// The static check of templates.
//
// text/template finds a field or method by name when the template runs,
// so {{ .ClientAddr }} or {{ .ZoneReason 5 }} would load and then fail on
// every use, the reply falling back to its default text. Running the
// template on empty facts at load finds some of those, but stops at the
// first nil pointer ({{ .SPF.Domain }}) and never enters {{ if }}. So the
// parse tree is checked against the types: every field chain of every
// branch against TemplateData (through pointers, maps and the results of
// methods and functions), every call's number and types of arguments,
// every function name. What the check cannot follow (the result of and
// or or of values of different types) may not be followed by a field.

// tmplType is the static type of a value of a template.
type tmplType struct {
	t    reflect.Type // nil: not known before the template runs
	addr bool         // addressable (reached through a pointer): the methods of *T apply
}

// tmplUse is a field or method of TemplateData that a template reads,
// with its offset, for the stage check.
type tmplUse struct {
	name string
	off  int
}

type tmplVar struct {
	name string
	typ  tmplType
}

type tmplChecker struct {
	src  string
	err  *tmplError // the first problem
	uses []tmplUse
	vars []tmplVar // in scope
}

var (
	reflectValueType = reflect.TypeFor[reflect.Value]()
	errorType        = reflect.TypeFor[error]()
	boolType         = reflect.TypeFor[bool]()
	intType          = reflect.TypeFor[int]()
)

// checkTemplate checks the tree of the template src and returns the
// fields of TemplateData it reads, or its first problem.
func checkTemplate(src string, root *parse.ListNode) ([]tmplUse, error) {
	c := &tmplChecker{src: src, vars: []tmplVar{{"$", tmplType{t: templateDataType}}}}
	c.list(root, tmplType{t: templateDataType})
	if c.err != nil {
		return nil, c.err
	}
	return c.uses, nil
}

func (c *tmplChecker) errorf(off int, format string, args ...any) {
	if c.err == nil {
		c.err = &tmplError{off: off, msg: fmt.Sprintf(format, args...)}
	}
}

func (c *tmplChecker) list(l *parse.ListNode, dot tmplType) {
	if l == nil {
		return
	}
	for _, n := range l.Nodes {
		switch n := n.(type) {
		case *parse.TextNode, *parse.CommentNode:
		case *parse.ActionNode:
			c.pipe(n.Pipe, dot)
		case *parse.IfNode:
			c.branch(&n.BranchNode, dot, false)
		case *parse.WithNode:
			c.branch(&n.BranchNode, dot, true)
		default:
			// range, template, break and continue were refused by
			// checkBounded.
			c.errorf(int(n.Position()), "%s is not allowed", n)
		}
	}
}

// branch checks an if or a with: variables declared in its pipeline are
// seen in both lists, those declared in a list only there.
func (c *tmplChecker) branch(b *parse.BranchNode, dot tmplType, with bool) {
	mark := len(c.vars)
	v := c.pipe(b.Pipe, dot)
	inner := len(c.vars)
	if with {
		c.list(b.List, v)
	} else {
		c.list(b.List, dot)
	}
	c.vars = c.vars[:inner]
	c.list(b.ElseList, dot)
	c.vars = c.vars[:mark]
}

// pipe checks a pipeline and returns the type of its value.
func (c *tmplChecker) pipe(p *parse.PipeNode, dot tmplType) tmplType {
	if p == nil {
		return tmplType{}
	}
	var v tmplType
	for i, cmd := range p.Cmds {
		v = c.command(cmd, dot, v, i > 0)
	}
	for _, d := range p.Decl {
		name := d.Ident[0]
		if p.IsAssign {
			// The value, of whatever type, replaces the variable's.
			found := false
			for i := len(c.vars) - 1; i >= 0 && !found; i-- {
				if found = c.vars[i].name == name; found && c.vars[i].typ.t != v.t {
					c.vars[i].typ = tmplType{}
				}
			}
			if !found {
				c.errorf(variableOffset(d, 0), "undefined variable %s", name)
			}
			continue
		}
		c.vars = append(c.vars, tmplVar{name, tmplType{t: v.t}})
	}
	return v
}

// command checks one command of a pipeline; final is the value of the
// command before it, when hasFinal (it becomes the last argument).
func (c *tmplChecker) command(cmd *parse.CommandNode, dot, final tmplType, hasFinal bool) tmplType {
	args := cmd.Args[1:]
	notAFunction := func(n parse.Node) {
		if len(args) > 0 || hasFinal {
			c.errorf(int(n.Position()), "%s is not a function or method: it takes no arguments", n)
		}
	}
	switch n := cmd.Args[0].(type) {
	case *parse.FieldNode:
		return c.chain(dot, n.Ident, func(i int) int { return fieldOffset(n, i) }, args, final, hasFinal, dot)
	case *parse.ChainNode:
		return c.chainNode(n, args, final, hasFinal, dot)
	case *parse.VariableNode:
		v := c.variable(n)
		if len(n.Ident) == 1 {
			notAFunction(n)
			return v
		}
		return c.chain(v, n.Ident[1:], func(i int) int { return variableOffset(n, i+1) }, args, final, hasFinal, dot)
	case *parse.IdentifierNode:
		return c.function(n, args, final, hasFinal, dot)
	case *parse.PipeNode:
		notAFunction(n)
		return c.pipe(n, dot)
	case *parse.DotNode:
		notAFunction(n)
		return dot
	case *parse.NilNode:
		c.errorf(int(n.Pos), "nil is not a command")
	case *parse.BoolNode:
		notAFunction(n)
		return tmplType{t: boolType}
	case *parse.NumberNode:
		notAFunction(n)
		return numberType(n)
	case *parse.StringNode:
		notAFunction(n)
		return tmplType{t: stringType}
	}
	return tmplType{}
}

// numberType is the type text/template gives a number (idealConstant).
func numberType(n *parse.NumberNode) tmplType {
	hex := len(n.Text) > 2 && n.Text[0] == '0' && (n.Text[1] == 'x' || n.Text[1] == 'X')
	switch {
	case n.IsComplex && !n.IsFloat && !n.IsInt:
		return tmplType{t: reflect.TypeFor[complex128]()}
	case n.IsFloat && !hex && n.Text[0] != '\'' && strings.ContainsAny(n.Text, ".eEpP"):
		return tmplType{t: reflect.TypeFor[float64]()}
	case n.IsInt:
		return tmplType{t: intType}
	}
	return tmplType{t: reflect.TypeFor[float64]()}
}

func (c *tmplChecker) variable(n *parse.VariableNode) tmplType {
	for i := len(c.vars) - 1; i >= 0; i-- {
		if c.vars[i].name == n.Ident[0] {
			return c.vars[i].typ
		}
	}
	c.errorf(variableOffset(n, 0), "undefined variable %s", n.Ident[0])
	return tmplType{}
}

func (c *tmplChecker) chainNode(n *parse.ChainNode, args []parse.Node, final tmplType, hasFinal bool, dot tmplType) tmplType {
	if _, ok := n.Node.(*parse.NilNode); ok {
		c.errorf(int(n.Pos), "indirection through nil")
		return tmplType{}
	}
	v := c.arg(n.Node, dot)
	return c.chain(v, n.Field, func(i int) int { return int(n.Pos) + identsLen(n.Field[:i]) }, args, final, hasFinal, dot)
}

// chain checks the fields (or methods) idents from recv; the last one
// gets args and final.
func (c *tmplChecker) chain(recv tmplType, idents []string, off func(int) int, args []parse.Node, final tmplType, hasFinal bool, dot tmplType) tmplType {
	v := recv
	for i, id := range idents {
		if i < len(idents)-1 {
			v = c.field(v, id, off(i), nil, tmplType{}, false, dot)
		} else {
			v = c.field(v, id, off(i), args, final, hasFinal, dot)
		}
		if c.err != nil {
			return tmplType{}
		}
	}
	return v
}

// field checks .name on a value of type recv, as text/template's
// evalField finds it: a method of the value (of its pointer when
// addressable), else a field of a struct, else a key of a map.
func (c *tmplChecker) field(recv tmplType, name string, off int, args []parse.Node, final tmplType, hasFinal bool, dot tmplType) tmplType {
	if recv.t == nil {
		c.errorf(off, ".%s: the value it is read from has no type known before the template runs (and, or of values of different types)", name)
		return tmplType{}
	}
	t, addr := recv.t, recv.addr
	for t.Kind() == reflect.Pointer {
		t, addr = t.Elem(), true
	}
	if t.Kind() == reflect.Interface {
		c.errorf(off, ".%s: the value it is read from (%s) has no type known before the template runs", name, t)
		return tmplType{}
	}
	mt := t
	if addr {
		mt = reflect.PointerTo(t)
	}
	if t == templateDataType || t == reflect.TypeFor[Facts]() {
		c.uses = append(c.uses, tmplUse{name, off})
	}
	if m, ok := mt.MethodByName(name); ok {
		return c.call("."+name, off, m.Type, 1, args, final, hasFinal, dot)
	}
	hasArgs := len(args) > 0 || hasFinal
	switch t.Kind() {
	case reflect.Struct:
		sf, ok := t.FieldByName(name)
		if !ok {
			break
		}
		if !sf.IsExported() {
			c.errorf(off, ".%s is an unexported field of %s", name, typeName(t))
			return tmplType{}
		}
		if hasArgs {
			c.errorf(off, ".%s is a field of %s, not a method: it takes no arguments", name, typeName(t))
			return tmplType{}
		}
		// Through an embedded pointer (TemplateData's *Facts) the field
		// is addressable.
		ft := t
		for i, x := range sf.Index {
			if i > 0 && ft.Kind() == reflect.Pointer {
				ft, addr = ft.Elem(), true
			}
			ft = ft.Field(x).Type
		}
		return tmplType{t: sf.Type, addr: addr}
	case reflect.Map:
		if !stringType.AssignableTo(t.Key()) {
			break
		}
		if hasArgs {
			c.errorf(off, ".%s is a key of a map, not a method: it takes no arguments", name)
			return tmplType{}
		}
		return tmplType{t: t.Elem()}
	}
	c.errorf(off, "%s has no field or method %s%s", typeName(t), name, fieldHint(t))
	return tmplType{}
}

// typeName is t as the rules know it: TemplateData, checks.SPFResult.
func typeName(t reflect.Type) string { return strings.TrimPrefix(t.String(), "policy.") }

// fieldHint lists the fields and methods of a struct, when there are few
// enough to read.
func fieldHint(t reflect.Type) string {
	if t.Kind() != reflect.Struct || t == templateDataType || t == reflect.TypeFor[Facts]() {
		return ""
	}
	var names []string
	for i := range t.NumField() {
		if f := t.Field(i); f.IsExported() {
			names = append(names, f.Name)
		}
	}
	pt := reflect.PointerTo(t)
	for i := range pt.NumMethod() {
		names = append(names, pt.Method(i).Name)
	}
	if len(names) == 0 || len(names) > 16 {
		return ""
	}
	return " (it has " + strings.Join(names, ", ") + ")"
}

// call checks a call of a function or method of type ft (whose first skip
// parameters are the receiver) with args and final.
func (c *tmplChecker) call(name string, off int, ft reflect.Type, skip int, args []parse.Node, final tmplType, hasFinal bool, dot tmplType) tmplType {
	numIn := ft.NumIn() - skip
	got := len(args)
	if hasFinal {
		got++
	}
	if ft.IsVariadic() {
		if got < numIn-1 {
			c.errorf(off, "wrong number of arguments for %s: want at least %d, got %d", name, numIn-1, got)
			return tmplType{}
		}
	} else if got != numIn {
		c.errorf(off, "wrong number of arguments for %s: want %d, got %d", name, numIn, got)
		return tmplType{}
	}
	if n := ft.NumOut(); n != 1 && (n != 2 || ft.Out(1) != errorType) {
		c.errorf(off, "%s cannot be called from a template: it returns %d values", name, n)
		return tmplType{}
	}
	param := func(i int) reflect.Type {
		if ft.IsVariadic() && i >= numIn-1 {
			return ft.In(skip + numIn - 1).Elem()
		}
		return ft.In(skip + i)
	}
	for i, a := range args {
		c.argOf(a, param(i), name, dot)
	}
	if hasFinal {
		c.assignable(final, param(got-1), name, off)
	}
	return tmplType{t: ft.Out(0)}
}

// argOf checks an argument of type want.
func (c *tmplChecker) argOf(n parse.Node, want reflect.Type, name string, dot tmplType) {
	anything := want == reflectValueType || (want.Kind() == reflect.Interface && want.NumMethod() == 0)
	var ok bool
	switch n := n.(type) {
	case *parse.BoolNode:
		ok = anything || want.Kind() == reflect.Bool
	case *parse.StringNode:
		ok = anything || want.Kind() == reflect.String
	case *parse.NumberNode:
		switch want.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			ok = n.IsInt
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
			ok = n.IsUint
		case reflect.Float32, reflect.Float64:
			ok = n.IsFloat
		case reflect.Complex64, reflect.Complex128:
			ok = n.IsComplex
		default:
			ok = anything
		}
	case *parse.NilNode:
		switch want.Kind() {
		case reflect.Chan, reflect.Func, reflect.Interface, reflect.Map, reflect.Pointer, reflect.Slice:
			ok = true
		}
	default:
		c.assignable(c.arg(n, dot), want, name, int(n.Position()))
		return
	}
	if !ok {
		c.errorf(int(n.Position()), "%s: %s cannot be an argument of type %s", name, n, want)
	}
}

// assignable checks that a value of type v may be passed as want, as
// text/template's validateType allows.
func (c *tmplChecker) assignable(v tmplType, want reflect.Type, name string, off int) {
	if want == reflectValueType || (want.Kind() == reflect.Interface && want.NumMethod() == 0) {
		return
	}
	if v.t == nil {
		c.errorf(off, "%s: the argument has no type known before the template runs (and, or of values of different types), it cannot be passed as %s", name, typeName(want))
		return
	}
	if v.t.AssignableTo(want) {
		return
	}
	if v.t.Kind() == reflect.Pointer && v.t.Elem().AssignableTo(want) {
		return
	}
	if v.addr && reflect.PointerTo(v.t).AssignableTo(want) {
		return
	}
	c.errorf(off, "%s: wrong type of argument: want %s, got %s", name, typeName(want), typeName(v.t))
}

// arg checks an operand used as an argument and returns its type. A
// field or method in an argument gets no arguments.
func (c *tmplChecker) arg(n parse.Node, dot tmplType) tmplType {
	switch n := n.(type) {
	case *parse.DotNode:
		return dot
	case *parse.FieldNode:
		return c.chain(dot, n.Ident, func(i int) int { return fieldOffset(n, i) }, nil, tmplType{}, false, dot)
	case *parse.VariableNode:
		v := c.variable(n)
		if len(n.Ident) == 1 {
			return v
		}
		return c.chain(v, n.Ident[1:], func(i int) int { return variableOffset(n, i+1) }, nil, tmplType{}, false, dot)
	case *parse.PipeNode:
		return c.pipe(n, dot)
	case *parse.IdentifierNode:
		return c.function(n, nil, tmplType{}, false, dot)
	case *parse.ChainNode:
		return c.chainNode(n, nil, tmplType{}, false, dot)
	case *parse.BoolNode:
		return tmplType{t: boolType}
	case *parse.NumberNode:
		return numberType(n)
	case *parse.StringNode:
		return tmplType{t: stringType}
	case *parse.NilNode:
		c.errorf(int(n.Pos), "nil is not a value here")
	}
	return tmplType{}
}

// function checks a call of a function: one of templateFuncs, or of
// text/template's builtins that remain.
func (c *tmplChecker) function(n *parse.IdentifierNode, args []parse.Node, final tmplType, hasFinal bool, dot tmplType) tmplType {
	name, off := n.Ident, int(n.Pos)
	if fn, ok := templateFuncs[name]; ok {
		return c.call(name, off, reflect.TypeOf(fn), 0, args, final, hasFinal, dot)
	}
	got := len(args)
	if hasFinal {
		got++
	}
	want := func(lo, hi int) bool {
		if got < lo || (hi >= 0 && got > hi) {
			switch {
			case hi < 0:
				c.errorf(off, "wrong number of arguments for %s: want at least %d, got %d", name, lo, got)
			case lo == hi:
				c.errorf(off, "wrong number of arguments for %s: want %d, got %d", name, lo, got)
			default:
				c.errorf(off, "wrong number of arguments for %s: want %d to %d, got %d", name, lo, hi, got)
			}
			return false
		}
		return true
	}
	types := make([]tmplType, 0, got)
	for _, a := range args {
		types = append(types, c.arg(a, dot))
	}
	if hasFinal {
		types = append(types, final)
	}
	switch name {
	case "and", "or":
		if !want(1, -1) {
			return tmplType{}
		}
		for _, t := range types[1:] {
			if t.t != types[0].t {
				return tmplType{}
			}
		}
		return tmplType{t: types[0].t}
	case "not":
		want(1, 1)
		return tmplType{t: boolType}
	case "eq", "ne", "lt", "le", "gt", "ge":
		hi := 2
		if name == "eq" {
			hi = -1
		}
		if want(2, hi) {
			c.comparison(name, off, types)
		}
		return tmplType{t: boolType}
	case "len":
		if want(1, 1) {
			if t := types[0].t; t != nil {
				switch t.Kind() {
				case reflect.Array, reflect.Chan, reflect.Map, reflect.Slice, reflect.String, reflect.Interface:
				default:
					c.errorf(off, "len of %s", t)
				}
			}
		}
		return tmplType{t: intType}
	case "index":
		if !want(1, -1) {
			return tmplType{}
		}
		t := types[0].t
		for _, k := range types[1:] {
			if t == nil {
				return tmplType{}
			}
			switch t.Kind() {
			case reflect.Map:
				if k.t != nil && !k.t.AssignableTo(t.Key()) && k.t.Kind() != reflect.Interface {
					c.errorf(off, "index: a key of %s cannot be of type %s", t, k.t)
					return tmplType{}
				}
				t = t.Elem()
			case reflect.Slice, reflect.Array, reflect.String:
				if k := basicKind(k.t); k != "" && k != "integer" && k != "unsigned integer" {
					c.errorf(off, "index: %s is indexed by integers, not by a %s", typeName(t), k)
					return tmplType{}
				}
				if t.Kind() == reflect.String {
					t = reflect.TypeFor[uint8]()
				} else {
					t = t.Elem()
				}
			case reflect.Interface:
				return tmplType{}
			default:
				c.errorf(off, "index: cannot index %s", t)
				return tmplType{}
			}
		}
		return tmplType{t: t}
	case "slice":
		if !want(1, 4) {
			return tmplType{}
		}
		t := types[0].t
		for _, k := range types[1:] {
			if k := basicKind(k.t); k != "" && k != "integer" && k != "unsigned integer" {
				c.errorf(off, "slice: the indexes are integers, not a %s", k)
				return tmplType{}
			}
		}
		if t == nil {
			return tmplType{}
		}
		if t.Kind() == reflect.String && len(types) == 4 {
			c.errorf(off, "slice: a string has no capacity to slice to")
			return tmplType{}
		}
		switch t.Kind() {
		case reflect.String, reflect.Slice:
			return tmplType{t: t}
		case reflect.Array:
			return tmplType{t: reflect.SliceOf(t.Elem())}
		case reflect.Interface:
			return tmplType{}
		}
		c.errorf(off, "slice: cannot slice %s", t)
		return tmplType{}
	case "call":
		c.errorf(off, "call is not allowed (there are no functions to call in the facts)")
		return tmplType{}
	}
	c.errorf(off, "unknown function %s (functions: %s)", name, templateFuncNames())
	return tmplType{}
}

// comparison checks the operands of eq, ne, lt, le, gt or ge as
// text/template compares them: values of basic kinds (integers of either
// sign together), and for lt and the others no booleans, complex numbers
// or other types.
func (c *tmplChecker) comparison(name string, off int, types []tmplType) {
	k1 := basicKind(types[0].t)
	for i, t := range types {
		k := basicKind(t.t)
		if k == "" {
			continue
		}
		if name != "eq" && name != "ne" && k != "integer" && k != "unsigned integer" && k != "number" && k != "string" {
			c.errorf(off, "%s: a %s cannot be ordered", name, k)
			return
		}
		if i > 0 && k1 != "" && k != k1 && !(k1 == "integer" && k == "unsigned integer" || k1 == "unsigned integer" && k == "integer") {
			c.errorf(off, "%s: a %s cannot be compared with a %s", name, k1, k)
			return
		}
	}
}

// basicKind is the kind of t as eq and lt compare it: "" when not known
// before the template runs (an interface), the type's name when not a
// basic kind.
func basicKind(t reflect.Type) string {
	if t == nil {
		return ""
	}
	switch t.Kind() {
	case reflect.Interface:
		return ""
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "unsigned integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Complex64, reflect.Complex128:
		return "complex number"
	case reflect.String:
		return "string"
	}
	return typeName(t)
}

// templateFuncNames lists the functions a template may call.
func templateFuncNames() string {
	return "lower, upper, join, print, printf, println, html, js, urlquery, and, or, not, eq, ne, lt, le, gt, ge, len, index, slice"
}

// identsLen is the length of ".A.B" for idents A, B.
func identsLen(idents []string) int {
	n := 0
	for _, id := range idents {
		n += 1 + len(id)
	}
	return n
}

// fieldOffset is the offset of the i-th field of n (its dot). The parser
// gives a chain of more than one field the offset of the second.
func fieldOffset(n *parse.FieldNode, i int) int {
	start := int(n.Pos)
	if len(n.Ident) > 1 {
		start -= identsLen(n.Ident[:1])
	}
	return start + identsLen(n.Ident[:i])
}

// variableOffset is the offset of the i-th part of n: the variable for
// 0, the dot of a field after. The parser gives a variable with fields
// the offset of its first field.
func variableOffset(n *parse.VariableNode, i int) int {
	start := int(n.Pos)
	if len(n.Ident) > 1 {
		start -= len(n.Ident[0])
	}
	if i == 0 {
		return start
	}
	return start + len(n.Ident[0]) + identsLen(n.Ident[1:i])
}
