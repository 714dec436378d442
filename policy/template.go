package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
	"unicode"
	"unicode/utf8"
)

// TemplateData is what reply texts, header values and details see when a
// rule fires. Every field of Facts is there by its Go name ({{ .ClientIP }},
// {{ .MailFromDomain }}, {{ (index .DNSBL "zen.spamhaus.org").Reason }}),
// with these additions:
//
//	.Rule                     the rule (or "threshold:NAME") that fired
//	.Score                    the score so far, this stage included
//	.ZoneReason "zone"        the listing's TXT (or the zone's reason), "" when not listed
//	.ZoneCodes "zone"         the listing's codes, comma-separated
//	.HeaderValue "Subject"    the first value of a header field
//
// and the functions lower, upper, join (join LIST SEP), printf and
// text/template's other builtins but call. Templates are checked against
// these types when they load (every field, method and function, in every
// branch); they may not loop or call templates (range, template, define
// and block are refused), and what they produce is cut at 16 KiB before
// it is made one line.
type TemplateData struct {
	*Facts
	Rule  string
	Score float64
}

// ZoneReason is the reason (TXT record) of zone's listing, "" when zone did
// not list the client (a zone error is not a listing).
func (d TemplateData) ZoneReason(zone string) string {
	if d.Facts == nil {
		return ""
	}
	if z, ok := d.DNSBL[zone]; ok && z.Listed {
		return z.Reason
	}
	return ""
}

// ZoneCodes is the codes of zone's listing, comma-separated.
func (d TemplateData) ZoneCodes(zone string) string {
	if d.Facts == nil {
		return ""
	}
	if z, ok := d.DNSBL[zone]; ok && z.Listed {
		return strings.Join(z.Codes, ",")
	}
	return ""
}

// HeaderValue is the first value of the header field name, "" if absent.
func (d TemplateData) HeaderValue(name string) string {
	if d.Facts == nil {
		return ""
	}
	if v := d.HeaderValues(name); len(v) > 0 {
		return v[0]
	}
	return ""
}

// templateFuncs are the functions of templates. print, printf, println,
// html, js and urlquery replace text/template's own with the same
// functions cut to maxRendered octets, and join stops there: a template
// cannot nest them into a text larger than what it reads times the size
// of the template (printf "%x" of printf "%x" of ... doubles each time;
// join of 10,000 header fields with a 100 KiB field as separator is a
// gigabyte).
var templateFuncs = template.FuncMap{
	"lower":    strings.ToLower,
	"upper":    strings.ToUpper,
	"join":     joinCapped,
	"print":    func(args ...any) string { return capRendered(fmt.Sprint(args...)) },
	"printf":   printfCapped,
	"println":  func(args ...any) string { return capRendered(fmt.Sprintln(args...)) },
	"html":     func(args ...any) string { return capRendered(template.HTMLEscaper(args...)) },
	"js":       func(args ...any) string { return capRendered(template.JSEscaper(args...)) },
	"urlquery": func(args ...any) string { return capRendered(template.URLQueryEscaper(args...)) },
}

// printfCapped is fmt.Sprintf cut to maxRendered octets. A width or
// precision is refused (an error, which ends the template) on an
// argument that is not a number, a boolean or a string: fmt applies it
// to every element of a slice, array or map, and every field of a struct
// (printf "%999v" .Header pads each octet of the header section: 555 MB
// for a 106 KB one). Only the argument a verb with a width or precision
// prints is judged: {{ printf "%-20s %v" .Helo .Rcpts }} is fine.
func printfCapped(format string, args ...any) (string, error) {
	for _, i := range widenedArgs(format, len(args)) {
		switch reflect.ValueOf(args[i]).Kind() {
		case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
			reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128, reflect.String:
		default:
			return "", fmt.Errorf("printf %q: a width or precision is allowed only with numbers, booleans and strings, not a %T (argument %d; it would apply to every element)", format, args[i], i+1)
		}
	}
	return capRendered(fmt.Sprintf(format, args...)), nil
}

// widenedArgs returns the indexes of the arguments that fmt.Sprintf(f,
// n arguments...) prints with a width or a precision. It reads f as
// fmt's doPrintf does: verbs in order, each taking the next argument, a
// * taking one for a width or precision (counted as one, whatever its
// value), an explicit index [n] choosing the argument of what follows
// it ("%[2]*[1]d" is argument 1 with the width argument 2), and a verb
// whose index is bad ("%[3]2d", "%[9]d") printing none. %% takes no
// argument and ignores its width. The arguments after the last verb are
// printed without flags.
func widenedArgs(f string, n int) []int {
	var out []int
	end := len(f)
	argNum := 0
	for i := 0; i < end; {
		good := true
		for i < end && f[i] != '%' {
			i++
		}
		if i >= end {
			break
		}
		i++
		// Flags, and fmt's fast path: a lower-case verb right after them
		// prints the next argument, without width or precision.
		for i < end && strings.IndexByte("#0+- ", f[i]) >= 0 {
			i++
		}
		if i < end && 'a' <= f[i] && f[i] <= 'z' && argNum < n {
			argNum++
			i++
			continue
		}
		var afterIndex, widened bool
		argNum, i, afterIndex = fmtArgNumber(f, i, argNum, n, &good)
		if i < end && f[i] == '*' {
			i++
			widened = true
			if argNum < n {
				argNum++
			}
			afterIndex = false
		} else {
			var present bool
			i, present = fmtParseNum(f, i, end)
			widened = present
			if afterIndex && present { // "%[3]2d"
				good = false
			}
		}
		if i+1 < end && f[i] == '.' {
			i++
			widened = true  // a precision, 0 when no digits follow
			if afterIndex { // "%[3].2d"
				good = false
			}
			argNum, i, afterIndex = fmtArgNumber(f, i, argNum, n, &good)
			if i < end && f[i] == '*' {
				i++
				if argNum < n {
					argNum++
				}
				afterIndex = false
			} else {
				i, _ = fmtParseNum(f, i, end)
			}
		}
		if !afterIndex {
			argNum, i, _ = fmtArgNumber(f, i, argNum, n, &good)
		}
		if i >= end {
			break // "%!(NOVERB)"
		}
		verb, size := utf8.DecodeRuneInString(f[i:])
		i += size
		switch {
		case verb == '%', !good, argNum >= n:
		default:
			if widened {
				out = append(out, argNum)
			}
			argNum++
		}
	}
	return out
}

// fmtArgNumber reads an explicit argument index [n] at f[i:] as fmt's
// argNumber does: the new argument number, the new i, and whether an
// index was read; a bad index clears good.
func fmtArgNumber(f string, i, argNum, n int, good *bool) (int, int, bool) {
	if i >= len(f) || f[i] != '[' {
		return argNum, i, false
	}
	// fmt's parseArgNumber: at least "[n]", the number up to the first ].
	index, width, ok := 0, 1, false
	if len(f)-i >= 3 {
		for j := i + 1; j < len(f); j++ {
			if f[j] == ']' {
				k, present := fmtParseNum(f[:j], i+1, j)
				width = j - i + 1
				if present && k == j {
					index, ok = fmtNum(f[i+1:j])-1, true
				}
				break
			}
		}
	}
	if ok && 0 <= index && index < n {
		return index, i + width, true
	}
	*good = false
	return argNum, i + width, ok
}

// fmtParseNum skips the digits of f[start:end] as fmt's parsenum does,
// and says whether there were any; a number over 1e6 ends the format.
func fmtParseNum(f string, start, end int) (int, bool) {
	if start >= end {
		return end, false
	}
	num, i := 0, start
	for ; i < end && '0' <= f[i] && f[i] <= '9'; i++ {
		if num > 1e6 {
			return end, false
		}
		num = num*10 + int(f[i]-'0')
	}
	return i, i > start
}

// fmtNum is the value of the digits s (at most 1e6, as fmtParseNum let
// them through).
func fmtNum(s string) int {
	n := 0
	for _, c := range []byte(s) {
		n = n*10 + int(c-'0')
	}
	return n
}

// maxRendered bounds the text a template produces, before it is made one
// line and cut to the reply's or header's length (at most a few hundred
// octets: maxReplyText, maxHeaderValue): what comes after is never seen.
const maxRendered = 16 << 10

// capRendered cuts s to maxRendered octets.
func capRendered(s string) string {
	if len(s) > maxRendered {
		return s[:maxRendered]
	}
	return s
}

// joinCapped is strings.Join, stopping at maxRendered octets.
func joinCapped(l []string, sep string) string {
	var b []byte
	for i, s := range l {
		if i > 0 {
			b = append(b, capRendered(sep)...)
		}
		b = append(b, capRendered(s)...)
		if len(b) >= maxRendered {
			return string(b[:maxRendered])
		}
	}
	return string(b)
}

// cappedWriter keeps the first max octets written to it; a write beyond
// fails with errRenderFull, which ends the execution of a template.
type cappedWriter struct {
	b   []byte
	max int
}

var errRenderFull = errors.New("template output over the bound")

func (w *cappedWriter) Write(p []byte) (int, error) {
	if room := w.max - len(w.b); len(p) > room {
		w.b = append(w.b, p[:room]...)
		return room, errRenderFull
	}
	w.b = append(w.b, p...)
	return len(p), nil
}

// execute runs t on d into at most maxRendered octets.
func execute(t *template.Template, d TemplateData, buf []byte) ([]byte, error) {
	w := cappedWriter{b: buf[:0], max: maxRendered}
	if err := t.Execute(&w, d); err != nil && !errors.Is(err, errRenderFull) {
		return nil, err
	}
	return w.b, nil
}

// parseTemplate parses src and checks it against TemplateData (see
// checkTemplate), so that a field that does not exist ({{ .ClientAddr }}),
// anywhere in the template, is a load error rather than a reply that
// fails in production. A template may not loop: range, template, define
// and block are refused, and so is a printf whose format is not a literal
// or asks for a width or precision above 999. The template is also
// compiled for rendering without text/template where its shape allows
// (see compile).
func parseTemplate(name, src string) (*tmpl, NeedSet, error) {
	tr := parse.New(name)
	tr.Mode = parse.SkipFuncCheck // checkTemplate checks the functions, with their place
	trees := map[string]*parse.Tree{}
	if _, err := tr.Parse(src, "", "", trees); err != nil {
		return nil, NeedSet{}, cleanTemplateErr(err)
	}
	var define *tmplError // the first define or block; a define of name itself replaces an empty template
	for n, d := range trees {
		if d != tr {
			off, kw := keywordOffset(src, int(d.Root.Pos), "define", "block")
			if define == nil || off < define.off {
				define = &tmplError{off: off, msg: fmt.Sprintf("%s %q is not allowed (a template may not call templates)", kw, n)}
			}
		}
	}
	if define != nil {
		return nil, NeedSet{}, define
	}
	if err := checkBounded(src, tr.Root); err != nil {
		return nil, NeedSet{}, err
	}
	uses, err := checkTemplate(src, tr.Root)
	if err != nil {
		return nil, NeedSet{}, err
	}
	t, err := template.New(name).Funcs(templateFuncs).Option("missingkey=zero").AddParseTree(name, tr)
	if err != nil {
		return nil, NeedSet{}, cleanTemplateErr(err)
	}
	var n NeedSet
	walkTemplate(tr.Root, &n)
	c := compile(t)
	c.uses = uses
	return c, n, nil
}

// tmplError is a problem of a template found at load, at a byte offset
// of its source (-1: the template as a whole).
type tmplError struct {
	off int
	msg string
}

func (e *tmplError) Error() string { return e.msg }

// checkBounded refuses what could make a template run without bound:
// range, template, and printf formats that are not literal or ask for a
// width or precision above 999 (printf "%999999999d" is a gigabyte).
func checkBounded(src string, node parse.Node) error {
	var err error
	var walk func(parse.Node)
	walk = func(node parse.Node) {
		if err != nil {
			return
		}
		switch x := node.(type) {
		case *parse.ListNode:
			if x == nil {
				return
			}
			for _, c := range x.Nodes {
				walk(c)
			}
		case *parse.ActionNode:
			walk(x.Pipe)
		case *parse.PipeNode:
			if x == nil {
				return
			}
			for _, c := range x.Cmds {
				walk(c)
			}
		case *parse.CommandNode:
			if id, ok := x.Args[0].(*parse.IdentifierNode); ok && id.Ident == "printf" {
				f, ok := parse.Node(nil), false
				if len(x.Args) > 1 {
					f = x.Args[1]
					_, ok = f.(*parse.StringNode)
				}
				if !ok {
					err = &tmplError{off: int(id.Pos), msg: "printf: the format must be a literal string"}
					return
				}
				if e := checkFormat(f.(*parse.StringNode).Text); e != nil {
					err = &tmplError{off: int(f.Position()), msg: e.Error()}
					return
				}
			}
			for _, a := range x.Args {
				walk(a)
			}
		case *parse.ChainNode:
			walk(x.Node)
		case *parse.IfNode:
			walk(x.Pipe)
			walk(x.List)
			walk(x.ElseList)
		case *parse.WithNode:
			walk(x.Pipe)
			walk(x.List)
			walk(x.ElseList)
		case *parse.RangeNode:
			off, _ := keywordOffset(src, int(x.Pos), "range")
			err = &tmplError{off: off, msg: "range is not allowed (a template may not loop: a reply is one line)"}
		case *parse.TemplateNode:
			off, _ := keywordOffset(src, int(x.Pos), "template")
			err = &tmplError{off: off, msg: fmt.Sprintf("template %q is not allowed (a template may not call templates)", x.Name)}
		}
	}
	walk(node)
	return err
}

// keywordOffset is the offset of the last of the keywords (range,
// template, define ...) before pos, the offset text/template gives its
// node (that of what follows the keyword), and which it is.
func keywordOffset(src string, pos int, kws ...string) (int, string) {
	off, kw := -1, kws[0]
	for _, k := range kws {
		if i := strings.LastIndex(src[:min(pos, len(src))], k); i > off {
			off, kw = i, k
		}
	}
	if off < 0 {
		return pos, kw
	}
	return off, kw
}

// checkFormat refuses a printf format with a width or precision taken
// from an argument (*) or above 999.
func checkFormat(f string) error {
	for i := 0; i < len(f); i++ {
		if f[i] != '%' {
			continue
		}
		j := i + 1
		for j < len(f) && strings.IndexByte("+-# 0123456789.[]*", f[j]) >= 0 {
			j++
		}
		spec := f[i+1 : j]
		if strings.Contains(spec, "*") {
			return fmt.Errorf("printf format %q: a width or precision from an argument (*) is not allowed", f)
		}
		run := 0
		for k := 0; k < len(spec); k++ {
			if spec[k] < '0' || spec[k] > '9' {
				run = 0
			} else if run++; run > 3 {
				return fmt.Errorf("printf format %q: a width or precision is at most 999", f)
			}
		}
		i = j // the verb
	}
	return nil
}

func cleanTemplateErr(err error) error {
	return errors.New(strings.TrimPrefix(err.Error(), "template: "))
}

// walkTemplate notes the facts of checks a template reads.
func walkTemplate(node parse.Node, n *NeedSet) {
	switch x := node.(type) {
	case *parse.ListNode:
		if x == nil {
			return
		}
		for _, c := range x.Nodes {
			walkTemplate(c, n)
		}
	case *parse.ActionNode:
		walkTemplate(x.Pipe, n)
	case *parse.PipeNode:
		if x == nil {
			return
		}
		for _, c := range x.Cmds {
			walkTemplate(c, n)
		}
	case *parse.CommandNode:
		for _, a := range x.Args {
			walkTemplate(a, n)
		}
	case *parse.IfNode:
		walkTemplate(x.Pipe, n)
		walkTemplate(x.List, n)
		walkTemplate(x.ElseList, n)
	case *parse.RangeNode:
		walkTemplate(x.Pipe, n)
		walkTemplate(x.List, n)
		walkTemplate(x.ElseList, n)
	case *parse.WithNode:
		walkTemplate(x.Pipe, n)
		walkTemplate(x.List, n)
		walkTemplate(x.ElseList, n)
	case *parse.FieldNode:
		for _, id := range x.Ident {
			n.noteTemplateField(id)
		}
	case *parse.ChainNode:
		walkTemplate(x.Node, n)
		for _, id := range x.Field {
			n.noteTemplateField(id)
		}
	case *parse.VariableNode:
		for _, id := range x.Ident {
			n.noteTemplateField(id)
		}
	}
}

func (n *NeedSet) noteTemplateField(id string) {
	switch id {
	case "DNSBL", "ZoneReason", "ZoneCodes":
		n.DNSBL = true
	case "DomainBL":
		n.DomainBL = true
	case "IPRev", "ClientName":
		n.IPRev = true
	case "SPF":
		n.SPF = true
	case "DKIM":
		n.DKIM = true
	case "DMARC":
		n.DMARC = true
	case "Greylist":
		n.Greylist = true
	}
}

// maxReplyText bounds a rendered reply text: a reply line is at most 512
// octets with its code (RFC 5321 section 4.5.3.1.5).
const maxReplyText = 400

// maxHeaderValue bounds a rendered header value (a line is at most 998
// octets, RFC 5322 section 2.1.1).
const maxHeaderValue = 900

// render executes t and makes the result one line of printable text of at
// most max octets, from the first maxRendered octets the template
// produces: control characters (CR and LF among them, so a TXT
// record or a header cannot inject lines) become spaces.
func render(t *tmpl, d TemplateData, max int) (string, error) {
	if t.fast && d.Facts != nil {
		if t.parts == nil {
			return Truncate(t.konst, max), nil
		}
		var scratch [256]byte
		if b, ok := t.appendTo(scratch[:0], &d); ok {
			if len(b) > maxRendered {
				b = b[:maxRendered] // as text/template through execute
			}
			return oneLine(b, max), nil
		}
		// A nil pointer on the way: text/template says what went wrong.
	}
	b, err := execute(t.t, d, nil)
	if err != nil {
		return "", cleanTemplateErr(err)
	}
	return oneLine(b, max), nil
}

// oneLine turns b into one line: control characters, DEL and invalid
// UTF-8 become spaces, runs of white space (unicode.IsSpace) become one
// space, white space at either end goes, and the result is cut to at most
// max octets on a character boundary. It is
//
//	s = strings.Map(ctlToSpace, s)
//	s = strings.Join(strings.Fields(s), " ")
//	cut s to max
//
// in one pass, in place: b is overwritten.
func oneLine(b []byte, max int) string {
	// Skip what is already one line: printable ASCII, with single spaces
	// between words.
	i := 0
	for i < len(b) {
		if c := b[i]; c > ' ' && c < 0x7f {
			i++
		} else if c == ' ' && i > 0 && i+1 < len(b) && b[i+1] > ' ' && b[i+1] < 0x7f {
			i += 2
		} else {
			break
		}
	}
	w := i // the output is never longer than what was read, so b[:w] is free
	space := false
	for i < len(b) {
		c := b[i]
		if c < utf8.RuneSelf {
			i++
			if c <= ' ' || c == 0x7f { // controls and the ASCII white space
				space = w > 0
				continue
			}
			if space {
				b[w] = ' '
				w++
				space = false
			}
			b[w] = c
			w++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError || unicode.IsSpace(r) {
			i += size
			space = w > 0
			continue
		}
		if space {
			b[w] = ' '
			w++
			space = false
		}
		w += copy(b[w:], b[i:i+size])
		i += size
	}
	if w > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(b[cut]) {
			cut--
		}
		w = cut
	}
	return string(b[:w])
}

// Truncate cuts a text to at most max octets on a character boundary, as
// reply and header texts are cut (the gateway cuts what it echoes or
// relays the same way).
func Truncate(s string, max int) string {
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}

// ---- compiled templates
//
// text/template finds every field and method by name (reflection) each
// time it runs, which costs more than the rest of a connect-stage
// evaluation. Most templates are text and a few values, so compile turns
// those into a list of parts rendered without text/template, producing
// the same text: text/template prints a value with fmt.Fprint, and the
// parts print the kinds they allow (strings, booleans, integers, floats,
// netip.Addr, []string, none of them with methods of their own but
// netip.Addr's String) as fmt does. Any other shape, and any run that
// meets a nil pointer on the way, is left to text/template, which then
// reports the error as it always did.
//
// The shapes compiled:
//
//	text
//	{{ .Field.Chain }}                  fields of structs, through pointers
//	{{ .ZoneReason "zone" }}            ZoneReason, ZoneCodes, HeaderValue
//	{{ (index .Map "key").Field }}      a map with string keys
//	{{ "string" }}
//	{{ lower X }}, {{ upper X }}, {{ join X "sep" }}
//	{{ X | lower }}, {{ X | upper }}
//	{{ printf "format" X... }}, {{ X | printf "format" X... }}
//
// where X is one of the values above or a parenthesized pipeline of them,
// and a printf format has only the verbs %v, %s, %d, %f and %.Nf without
// flags or width, each with a value of a kind fmt prints the same way.

// tmpl is a parsed template, compiled when its shape allows.
type tmpl struct {
	uses  []tmplUse // the fields and methods of TemplateData it reads
	t     *template.Template
	fast  bool   // render with parts (or konst) rather than t
	parts []part // nil: the template is the constant text konst
	konst string // one line already
}

// part is text followed by a value: an operand printed, or a printf.
type part struct {
	text string
	op   *operand
	pf   *printfOp
}

// valKind is the kind of a value an operand produces.
type valKind uint8

const (
	kString valKind = iota + 1
	kBool
	kInt
	kUint
	kFloat
	kAddr
	kStrings // []string
)

// val is a value produced by an operand.
type val struct {
	k    valKind
	bits int // of kFloat
	s    string
	n    int64 // kInt; kBool: 0 or 1
	u    uint64
	f    float64
	a    netip.Addr
	ss   []string
}

type srcKind uint8

const (
	srcConst  srcKind = iota // s
	srcRule                  // TemplateData.Rule
	srcScore                 // TemplateData.Score
	srcField                 // path from TemplateData.Facts
	srcIndex                 // path from Facts to a map, its element at key, path2 from there
	srcMethod                // method(arg)
	srcLower                 // strings.ToLower(arg)
	srcUpper                 // strings.ToUpper(arg)
	srcJoin                  // strings.Join(arg, arg2)
)

// operand is a value of a template, of static kind.
type operand struct {
	src   srcKind
	kind  valKind
	exact bool // of type string (kString) or []string (kStrings) exactly
	bits  int
	s     string
	path  []int // from d.Facts (the pointer): field indexes, and deref to follow a pointer
	path2 []int // srcIndex: from the map's element
	key   reflect.Value
	elem  reflect.Type // srcIndex: the element type of the map
	m     func(TemplateData, string) string
	codes bool // m is ZoneCodes
	arg   *operand
	arg2  *operand
}

const deref = -1

// printfOp is a printf whose format was parsed when the template loaded.
type printfOp struct {
	pieces []fmtPiece
	args   []*operand
}

// fmtPiece is literal text, then (verb != 0) the next argument printed.
type fmtPiece struct {
	text string
	verb byte // 'v', 's', 'd', 'f'; 0 for none
	prec int  // of 'f'
}

var (
	templateDataType = reflect.TypeFor[TemplateData]()
	stringType       = reflect.TypeFor[string]()
	stringsType      = reflect.TypeFor[[]string]()
	addrType         = reflect.TypeFor[netip.Addr]()
)

// templateMethods are the methods of TemplateData a template may call
// with one string.
var templateMethods = map[string]func(TemplateData, string) string{
	"ZoneReason":  TemplateData.ZoneReason,
	"ZoneCodes":   TemplateData.ZoneCodes,
	"HeaderValue": TemplateData.HeaderValue,
}

// compile returns t with its compiled form when it has one.
func compile(t *template.Template) *tmpl {
	out := &tmpl{t: t}
	if t.Tree == nil || t.Tree.Root == nil || len(t.Templates()) != 1 {
		return out
	}
	var parts []part
	var text []byte
	for _, n := range t.Tree.Root.Nodes {
		switch n := n.(type) {
		case *parse.TextNode:
			text = append(text, n.Text...)
		case *parse.ActionNode:
			p := part{text: string(text)}
			text = text[:0]
			if len(n.Pipe.Decl) > 0 {
				return out
			}
			var ok bool
			if p.op, p.pf, ok = compilePipe(n.Pipe, true); !ok {
				return out
			}
			parts = append(parts, p)
		default:
			return out
		}
	}
	out.fast = true
	if len(parts) == 0 {
		out.konst = oneLine(text, len(text))
		return out
	}
	if len(text) > 0 {
		parts = append(parts, part{text: string(text)})
	}
	out.parts = parts
	return out
}

// compilePipe compiles a pipeline to the operand whose value it prints
// or, when top (a pipeline printed, not an argument) and it ends with a
// printf, to that printf.
func compilePipe(p *parse.PipeNode, top bool) (*operand, *printfOp, bool) {
	if p == nil || len(p.Decl) > 0 || len(p.Cmds) == 0 {
		return nil, nil, false
	}
	var cur *operand
	for i, cmd := range p.Cmds {
		last := i == len(p.Cmds)-1
		if id, ok := cmd.Args[0].(*parse.IdentifierNode); ok && id.Ident == "printf" {
			if !top || !last {
				return nil, nil, false
			}
			pf, ok := compilePrintf(cmd.Args[1:], cur)
			return nil, pf, ok
		}
		op, ok := compileCommand(cmd, cur)
		if !ok {
			return nil, nil, false
		}
		cur = op
	}
	return cur, nil, true
}

// compileCommand compiles one command of a pipeline; final is the value
// of the command before it, nil for the first.
func compileCommand(cmd *parse.CommandNode, final *operand) (*operand, bool) {
	args := cmd.Args[1:]
	switch n := cmd.Args[0].(type) {
	case *parse.IdentifierNode:
		switch n.Ident {
		case "lower", "upper":
			var x *operand
			switch {
			case final != nil && len(args) == 0:
				x = final
			case final == nil && len(args) == 1:
				var ok bool
				if x, ok = compileArg(args[0]); !ok {
					return nil, false
				}
			default:
				return nil, false
			}
			if x.kind != kString || !x.exact {
				return nil, false
			}
			src := srcLower
			if n.Ident == "upper" {
				src = srcUpper
			}
			return &operand{src: src, kind: kString, exact: true, arg: x}, true
		case "join":
			if final != nil || len(args) != 2 {
				return nil, false
			}
			l, ok1 := compileArg(args[0])
			sep, ok2 := compileArg(args[1])
			if !ok1 || !ok2 || l.kind != kStrings || !l.exact || sep.kind != kString || !sep.exact {
				return nil, false
			}
			return &operand{src: srcJoin, kind: kString, exact: true, arg: l, arg2: sep}, true
		}
		return nil, false
	case *parse.FieldNode:
		if final != nil {
			return nil, false
		}
		if m, ok := templateMethods[n.Ident[0]]; ok {
			if len(n.Ident) != 1 || len(args) != 1 {
				return nil, false
			}
			x, ok := compileArg(args[0])
			if !ok || x.kind != kString || !x.exact {
				return nil, false
			}
			return &operand{src: srcMethod, kind: kString, exact: true, m: m, arg: x, codes: n.Ident[0] == "ZoneCodes"}, true
		}
		if len(args) > 0 {
			return nil, false
		}
		return compileField(n.Ident)
	}
	if final != nil || len(args) > 0 {
		return nil, false
	}
	return compileArg(cmd.Args[0])
}

// compileArg compiles an argument of a function or method.
func compileArg(n parse.Node) (*operand, bool) {
	switch n := n.(type) {
	case *parse.StringNode:
		return &operand{src: srcConst, kind: kString, exact: true, s: n.Text}, true
	case *parse.FieldNode:
		if _, ok := templateMethods[n.Ident[0]]; ok {
			return nil, false
		}
		return compileField(n.Ident)
	case *parse.PipeNode:
		op, _, ok := compilePipe(n, false)
		return op, ok
	case *parse.ChainNode:
		return compileIndex(n)
	}
	return nil, false
}

// compileField compiles a field chain on dot.
func compileField(idents []string) (*operand, bool) {
	path, t, ok := fieldPath(templateDataType, idents)
	if !ok {
		return nil, false
	}
	switch {
	case len(path) == 1 && t == stringType && idents[0] == "Rule":
		return &operand{src: srcRule, kind: kString, exact: true}, true
	case len(path) == 1 && t == reflect.TypeFor[float64]() && idents[0] == "Score":
		return &operand{src: srcScore, kind: kFloat, bits: 64}, true
	}
	// Through the embedded *Facts: the path starts with its index and a
	// dereference; eval starts from d.Facts, so the index goes.
	if len(path) < 3 || path[0] != 0 || path[1] != deref ||
		templateDataType.Field(0).Type != reflect.TypeFor[*Facts]() {
		return nil, false
	}
	op := &operand{src: srcField, path: path[1:]}
	if !op.setKind(t) {
		return nil, false
	}
	return op, true
}

// compileIndex compiles (index .Map "key").Field.Chain.
func compileIndex(c *parse.ChainNode) (*operand, bool) {
	p, ok := c.Node.(*parse.PipeNode)
	if !ok || len(p.Decl) > 0 || len(p.Cmds) != 1 {
		return nil, false
	}
	args := p.Cmds[0].Args
	if id, ok := args[0].(*parse.IdentifierNode); !ok || id.Ident != "index" || len(args) != 3 {
		return nil, false
	}
	f, ok1 := args[1].(*parse.FieldNode)
	k, ok2 := args[2].(*parse.StringNode)
	if !ok1 || !ok2 {
		return nil, false
	}
	if _, ok := templateMethods[f.Ident[0]]; ok {
		return nil, false
	}
	path, mt, ok := fieldPath(templateDataType, f.Ident)
	if !ok || len(path) < 3 || path[0] != 0 || path[1] != deref || mt.Kind() != reflect.Map || mt.Key() != stringType ||
		templateDataType.Field(0).Type != reflect.TypeFor[*Facts]() {
		return nil, false
	}
	path2, t, ok := fieldPath(mt.Elem(), c.Field)
	if !ok {
		return nil, false
	}
	op := &operand{src: srcIndex, path: path[1:], path2: path2, key: reflect.ValueOf(k.Text), elem: mt.Elem()}
	if !op.setKind(t) {
		return nil, false
	}
	return op, true
}

// fieldPath resolves a chain of field names from t as text/template
// does, to field indexes and dereferences, refusing (false) anything
// text/template might treat otherwise: a method of that name, a map, an
// interface, an unexported field.
func fieldPath(t reflect.Type, idents []string) ([]int, reflect.Type, bool) {
	var path []int
	for _, id := range idents {
		for t.Kind() == reflect.Pointer {
			path = append(path, deref)
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return nil, nil, false
		}
		if _, ok := reflect.PointerTo(t).MethodByName(id); ok {
			return nil, nil, false
		}
		f, ok := t.FieldByName(id)
		if !ok || !f.IsExported() {
			return nil, nil, false
		}
		for i, x := range f.Index {
			if i > 0 && t.Kind() == reflect.Pointer {
				if t.Elem().Kind() != reflect.Struct {
					return nil, nil, false
				}
				path = append(path, deref)
				t = t.Elem()
			}
			sf := t.Field(x)
			if !sf.IsExported() {
				return nil, nil, false // an unexported embedded struct: read-only for reflect
			}
			path = append(path, x)
			t = sf.Type
		}
	}
	return path, t, true
}

// setKind sets the kind of a value of type t, false when t is not a type
// printed here as fmt prints it.
func (op *operand) setKind(t reflect.Type) bool {
	if t == addrType {
		op.kind = kAddr
		return true
	}
	if reflect.PointerTo(t).NumMethod() != 0 {
		return false // String, Error, Format...
	}
	switch t.Kind() {
	case reflect.String:
		op.kind = kString
	case reflect.Bool:
		op.kind = kBool
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		op.kind = kInt
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		op.kind = kUint
	case reflect.Float32, reflect.Float64:
		op.kind, op.bits = kFloat, t.Bits()
	case reflect.Slice:
		if t != stringsType {
			return false
		}
		op.kind = kStrings
	default:
		return false
	}
	op.exact = t == stringType || t == stringsType
	return true
}

// compilePrintf compiles printf with its arguments (the first the
// format) and final, the value piped into it (nil: none).
func compilePrintf(args []parse.Node, final *operand) (*printfOp, bool) {
	if len(args) == 0 {
		return nil, false
	}
	f, ok := args[0].(*parse.StringNode)
	if !ok {
		return nil, false
	}
	pf := &printfOp{}
	for _, a := range args[1:] {
		op, ok := compileArg(a)
		if !ok {
			return nil, false
		}
		pf.args = append(pf.args, op)
	}
	if final != nil {
		pf.args = append(pf.args, final)
	}
	format := f.Text
	var text []byte
	nargs := 0
	for i := 0; i < len(format); {
		c := format[i]
		if c != '%' {
			text = append(text, c)
			i++
			continue
		}
		i++
		if i < len(format) && format[i] == '%' {
			text = append(text, '%')
			i++
			continue
		}
		p := fmtPiece{text: string(text), prec: -1}
		text = text[:0]
		if i < len(format) && format[i] == '.' {
			i++
			j := i
			for i < len(format) && format[i] >= '0' && format[i] <= '9' {
				i++
			}
			if i-j > 2 {
				return nil, false
			}
			p.prec = 0
			for _, d := range format[j:i] {
				p.prec = p.prec*10 + int(d-'0')
			}
		}
		if i == len(format) || nargs == len(pf.args) {
			return nil, false
		}
		p.verb = format[i]
		i++
		k := pf.args[nargs].kind
		nargs++
		switch p.verb {
		case 'v':
			ok = p.prec < 0
		case 's':
			ok = p.prec < 0 && (k == kString || k == kAddr || k == kStrings)
		case 'd':
			ok = p.prec < 0 && (k == kInt || k == kUint)
		case 'f':
			ok = k == kFloat
			if p.prec < 0 {
				p.prec = 6
			}
		default:
			ok = false
		}
		if !ok {
			return nil, false
		}
		pf.pieces = append(pf.pieces, p)
	}
	if nargs != len(pf.args) {
		return nil, false // fmt would complain about the extra ones
	}
	if len(text) > 0 {
		pf.pieces = append(pf.pieces, fmtPiece{text: string(text)})
	}
	return pf, true
}

// appendTo appends the text of t for d, false when a pointer on the way
// was nil. It stops once maxRendered octets are there, as execute does.
func (t *tmpl) appendTo(b []byte, d *TemplateData) ([]byte, bool) {
	for i := range t.parts {
		if len(b) >= maxRendered {
			break
		}
		p := &t.parts[i]
		b = append(b, p.text...)
		switch {
		case p.op != nil && p.op.codes:
			// ZoneCodes without the strings.Join.
			a, ok := p.op.arg.eval(d)
			if !ok {
				return b, false
			}
			if z, ok := d.DNSBL[a.s]; ok && z.Listed {
				for i, c := range z.Codes {
					if i > 0 {
						b = append(b, ',')
					}
					b = append(b, c...)
				}
			}
		case p.op != nil:
			v, ok := p.op.eval(d)
			if !ok {
				return b, false
			}
			b = appendVal(b, v)
		case p.pf != nil:
			var ok bool
			if b, ok = p.pf.appendTo(b, d); !ok {
				return b, false
			}
		}
	}
	return b, true
}

func (pf *printfOp) appendTo(b []byte, d *TemplateData) ([]byte, bool) {
	n := 0
	for i := range pf.pieces {
		p := &pf.pieces[i]
		b = append(b, p.text...)
		if p.verb == 0 {
			continue
		}
		v, ok := pf.args[n].eval(d)
		n++
		if !ok {
			return b, false
		}
		if p.verb == 'f' {
			b = strconv.AppendFloat(b, v.f, 'f', p.prec, v.bits)
		} else {
			b = appendVal(b, v) // %v; %s and %d of the kinds allowed print the same
		}
	}
	return b, true
}

// appendVal appends v as fmt.Fprint prints it.
func appendVal(b []byte, v val) []byte {
	switch v.k {
	case kString:
		return append(b, v.s...)
	case kBool:
		return strconv.AppendBool(b, v.n != 0)
	case kInt:
		return strconv.AppendInt(b, v.n, 10)
	case kUint:
		return strconv.AppendUint(b, v.u, 10)
	case kFloat:
		return strconv.AppendFloat(b, v.f, 'g', -1, v.bits)
	case kAddr:
		if !v.a.IsValid() {
			return append(b, "invalid IP"...) // String's text; AppendTo writes nothing
		}
		return v.a.AppendTo(b)
	case kStrings:
		b = append(b, '[')
		for i, s := range v.ss {
			if i > 0 {
				b = append(b, ' ')
			}
			b = append(b, s...)
		}
		return append(b, ']')
	}
	return b
}

// eval computes the operand for d, false when a pointer on the way was nil.
func (op *operand) eval(d *TemplateData) (val, bool) {
	switch op.src {
	case srcConst:
		return val{k: kString, s: op.s}, true
	case srcRule:
		return val{k: kString, s: d.Rule}, true
	case srcScore:
		return val{k: kFloat, bits: 64, f: d.Score}, true
	case srcField:
		v, ok := walk(reflect.ValueOf(d.Facts), op.path)
		if !ok {
			return val{}, false
		}
		return op.valueOf(v), true
	case srcIndex:
		m, ok := walk(reflect.ValueOf(d.Facts), op.path)
		if !ok {
			return val{}, false
		}
		e := m.MapIndex(op.key)
		if !e.IsValid() {
			e = reflect.Zero(op.elem)
		}
		if e, ok = walk(e, op.path2); !ok {
			return val{}, false
		}
		return op.valueOf(e), true
	case srcMethod:
		a, ok := op.arg.eval(d)
		if !ok {
			return val{}, false
		}
		return val{k: kString, s: op.m(*d, a.s)}, true
	case srcLower, srcUpper:
		a, ok := op.arg.eval(d)
		if !ok {
			return val{}, false
		}
		if op.src == srcLower {
			return val{k: kString, s: strings.ToLower(a.s)}, true
		}
		return val{k: kString, s: strings.ToUpper(a.s)}, true
	case srcJoin:
		l, ok1 := op.arg.eval(d)
		sep, ok2 := op.arg2.eval(d)
		if !ok1 || !ok2 {
			return val{}, false
		}
		return val{k: kString, s: joinCapped(l.ss, sep.s)}, true
	}
	return val{}, false
}

// walk follows path from v, false at a nil pointer.
func walk(v reflect.Value, path []int) (reflect.Value, bool) {
	for _, x := range path {
		if x == deref {
			if v.IsNil() {
				return v, false
			}
			v = v.Elem()
		} else {
			v = v.Field(x)
		}
	}
	return v, true
}

// valueOf reads v, of the operand's kind.
func (op *operand) valueOf(v reflect.Value) val {
	switch op.kind {
	case kString:
		return val{k: kString, s: v.String()}
	case kBool:
		if v.Bool() {
			return val{k: kBool, n: 1}
		}
		return val{k: kBool}
	case kInt:
		return val{k: kInt, n: v.Int()}
	case kUint:
		return val{k: kUint, u: v.Uint()}
	case kFloat:
		return val{k: kFloat, bits: op.bits, f: v.Float()}
	case kAddr:
		if v.CanAddr() {
			return val{k: kAddr, a: *v.Addr().Interface().(*netip.Addr)}
		}
		return val{k: kAddr, a: v.Interface().(netip.Addr)}
	case kStrings:
		if v.CanAddr() {
			return val{k: kStrings, ss: *v.Addr().Interface().(*[]string)}
		}
		return val{k: kStrings, ss: v.Interface().([]string)}
	}
	return val{}
}
