package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/checker"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
	"go.yaml.in/yaml/v3"

	"github.com/mxgate/gatewayd/checks"
	"github.com/mxgate/gatewayd/internal/yamldoc"
)

// Options tune a load.
type Options struct {
	// Zones, when not nil, are the DNSBL and DNSWL zones the daemon is
	// configured to query (dnsbl.zones); a condition that names another
	// zone is then a load error. With nil, any zone name is accepted.
	Zones []string
}

// Load reads every rule file (*.yaml, *.yml, names not starting with a dot)
// of dir in lexical order, with the list files they declare, and compiles
// them. Problems are reported all at once in a *LoadError, each with its
// file, line and column; a load with problems returns no engine.
func Load(dir string) (*Engine, error) { return LoadOptions(dir, Options{}) }

// LoadOptions is Load with options.
func LoadOptions(dir string, opts Options) (*Engine, error) {
	l := &loader{
		dir:  dir,
		opts: opts,
		hash: sha256.New(),
		eng: &Engine{
			dir:      dir,
			lists:    map[string]*List{},
			prefixes: map[string]netip.Prefix{},
			codes:    map[string][]checks.CodeFilter{},
			loaded:   time.Now(),
		},
		ruleAt:   map[string]string{},
		threshAt: map[string]string{},
		listAt:   map[string]string{},
		zones:    map[string]bool{},
	}
	if opts.Zones != nil {
		l.knownZones = map[string]bool{}
		for _, z := range opts.Zones {
			l.knownZones[normZone(z)] = true
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		l.errs.add(dir, 0, 0, "reading the rules directory: %v", err)
		return nil, l.errs.err()
	}
	var docs []*ruleFile
	for _, de := range ents {
		name := de.Name()
		ext := filepath.Ext(name)
		if de.IsDir() || strings.HasPrefix(name, ".") || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		if f := l.readRuleFile(filepath.Join(dir, name)); f != nil {
			docs = append(docs, f)
		}
	}
	// Lists first: a rule may use a list declared in a later file.
	for _, f := range docs {
		if f.lists != nil {
			l.loadLists(f, f.lists)
		}
	}
	for _, f := range docs {
		if f.rules != nil {
			l.loadRules(f, f.rules)
		}
	}
	for _, f := range docs {
		if f.thresholds != nil {
			l.loadThresholds(f, f.thresholds)
		}
	}
	if err := l.errs.err(); err != nil {
		return nil, err
	}
	e := l.eng
	for z := range l.zones {
		e.zones = append(e.zones, z)
	}
	slices.Sort(e.zones)
	e.files = append(l.ruleFiles, l.listFiles...)
	e.digest = hex.EncodeToString(l.hash.Sum(nil))
	for i := range e.stages {
		st := &e.stages[i]
		slices.SortStableFunc(st.thresholds, func(a, b *threshold) int { return thresholdOrder[a.name] - thresholdOrder[b.name] })
	}
	return e, nil
}

// Thresholds are applied in this order: add_header first (it does not end
// the stage), then the strongest action.
var thresholdOrder = map[string]int{"add_header": 0, "reject": 1, "quarantine": 2, "greylist": 3}

type loader struct {
	dir        string
	opts       Options
	errs       errList
	eng        *Engine
	hash       hash.Hash
	ruleFiles  []string
	listFiles  []string
	ruleAt     map[string]string // rule name → "file:line:col" of its first definition
	threshAt   map[string]string
	listAt     map[string]string
	zones      map[string]bool
	knownZones map[string]bool
}

// ruleFile is one parsed rule file.
type ruleFile struct {
	name                     string
	lines                    []string
	rules, lists, thresholds *yaml.Node
}

var yamlLineRE = regexp.MustCompile(`^yaml: (?:line (\d+): )?(.*)$`)

func (l *loader) readRuleFile(path string) *ruleFile {
	b, err := os.ReadFile(path)
	if err != nil {
		l.errs.add(path, 0, 0, "%v", err)
		return nil
	}
	l.ruleFiles = append(l.ruleFiles, path)
	fmt.Fprintf(l.hash, "%s\x00%d\x00", filepath.Base(path), len(b))
	l.hash.Write(b)
	f := &ruleFile{name: path, lines: strings.Split(string(b), "\n")}
	yamlErr := func(err error) {
		line := 0
		msg := err.Error()
		if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = m[2]
		}
		l.errs.add(path, line, 0, "not valid YAML: %s", msg)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		yamlErr(err)
		return nil
	}
	// A rule file is one document, as the configuration is: the rules of
	// a second one (after "---") were never read, nor checked.
	if at, err := yamldoc.Extra(dec); err != nil {
		yamlErr(err)
		return nil
	} else if at != nil {
		l.errs.add(path, at.Line, max(at.Column, 1), "a second YAML document (after ---): a rule file is one document")
		return nil
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return f // empty file
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return f
	}
	kvs, ok := l.mapping(f, root, "the file")
	if !ok {
		return nil
	}
	for _, kv := range kvs {
		switch kv.key.Value {
		case "rules":
			f.rules = kv.val
		case "lists":
			f.lists = kv.val
		case "thresholds":
			f.thresholds = kv.val
		default:
			l.errAt(f, kv.key, "unknown top-level field %q (want rules, lists, thresholds)", kv.key.Value)
		}
	}
	return f
}

type keyVal struct{ key, val *yaml.Node }

func (l *loader) errAt(f *ruleFile, n *yaml.Node, format string, args ...any) {
	l.errs.add(f.name, n.Line, n.Column, format, args...)
}

// mapping returns the pairs of a mapping node, reporting a node of another
// kind and duplicate keys.
func (l *loader) mapping(f *ruleFile, n *yaml.Node, what string) ([]keyVal, bool) {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		l.errAt(f, n, "%s must be a mapping (key: value), not %s", what, kindName(n))
		return nil, false
	}
	var out []keyVal
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			l.errAt(f, k, "%s: keys must be plain names", what)
			continue
		}
		if seen[k.Value] {
			l.errAt(f, k, "%s: %q appears twice", what, k.Value)
			continue
		}
		seen[k.Value] = true
		out = append(out, keyVal{k, v})
	}
	return out, true
}

func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 10; i++ {
		n = n.Alias
	}
	return n
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "empty"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "an alias"
}

func (l *loader) str(f *ruleFile, n *yaml.Node, what string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		l.errAt(f, n, "%s must be a string, not %s", what, kindName(n))
		return "", false
	}
	return n.Value, true
}

func (l *loader) number(f *ruleFile, n *yaml.Node, what string) (float64, bool) {
	if n.Kind == yaml.ScalarNode && (n.Tag == "!!int" || n.Tag == "!!float") {
		if v, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64); err == nil &&
			!isInfOrNaN(v) {
			return v, true
		}
	}
	l.errAt(f, n, "%s must be a number, not %s", what, kindName(n))
	return 0, false
}

func isInfOrNaN(v float64) bool { return v != v || v > 1e300 || v < -1e300 }

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)

func fieldList(fields ...string) string { return strings.Join(fields, ", ") }

// ---- lists

var listFields = []string{"type", "file", "entries", "description"}

func isNull(n *yaml.Node) bool {
	n = resolve(n)
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func (l *loader) loadLists(f *ruleFile, n *yaml.Node) {
	if isNull(n) {
		return
	}
	kvs, ok := l.mapping(f, n, "lists")
	if !ok {
		return
	}
	for _, kv := range kvs {
		name := kv.key.Value
		here := fmt.Sprintf("%s:%d:%d", f.name, kv.key.Line, kv.key.Column)
		if !nameRE.MatchString(name) {
			l.errAt(f, kv.key, "list %q: a name is letters, digits, _ . and -", name)
			continue
		}
		if at, dup := l.listAt[name]; dup {
			l.errAt(f, kv.key, "list %q: declared twice, first at %s", name, at)
			continue
		}
		l.listAt[name] = here
		what := fmt.Sprintf("list %q", name)
		fields, ok := l.mapping(f, kv.val, what)
		if !ok {
			continue
		}
		var typ ListType
		var typeNode, fileNode, entriesNode *yaml.Node
		for _, fkv := range fields {
			switch fkv.key.Value {
			case "type":
				typeNode = fkv.val
			case "file":
				fileNode = fkv.val
			case "entries":
				entriesNode = fkv.val
			case "description":
			default:
				l.errAt(f, fkv.key, "%s: unknown field %q (want %s)", what, fkv.key.Value, fieldList(listFields...))
			}
		}
		if typeNode == nil {
			l.errAt(f, kv.key, "%s: type is missing (cidr, domain, address or regex)", what)
			continue
		}
		s, ok := l.str(f, typeNode, what+": type")
		if !ok {
			continue
		}
		typ, err := ParseListType(s)
		if err != nil {
			l.errAt(f, typeNode, "%s: %v", what, err)
			continue
		}
		var entries []ListEntry
		var src string // where entries come from, for errors
		good := true
		if fileNode != nil {
			p, ok := l.str(f, fileNode, what+": file")
			if !ok {
				continue
			}
			declared := p
			if !filepath.IsAbs(p) {
				p = filepath.Join(l.dir, p)
			}
			b, err := readListFile(p)
			if err != nil {
				l.errAt(f, fileNode, "%s: %v", what, err)
				continue
			}
			l.listFiles = append(l.listFiles, p)
			fmt.Fprintf(l.hash, "%s\x00%d\x00", declared, len(b))
			l.hash.Write(b)
			entries, err = ReadListEntries(bytes.NewReader(b), typ)
			if err != nil {
				l.errs.add(p, 0, 0, "%s: %v", what, err)
				good = false
			}
			src = p
		}
		if entriesNode != nil {
			seq := resolve(entriesNode)
			if seq.Kind != yaml.SequenceNode {
				l.errAt(f, seq, "%s: entries must be a list, not %s", what, kindName(seq))
				continue
			}
			var inline []ListEntry
			for _, en := range seq.Content {
				v, ok := l.str(f, resolve(en), what+": entry")
				if !ok {
					good = false
					continue
				}
				inline = append(inline, ListEntry{Value: strings.TrimSpace(v), Line: en.Line, Column: en.Column})
			}
			list, errs := BuildList(name, typ, inline)
			bad := map[ListEntry]bool{}
			for _, e := range errs {
				var ee *EntryError
				if errors.As(e, &ee) {
					l.errs.add(f.name, ee.Entry.Line, ee.Entry.Column, "%s: %v", what, ee.Err)
					bad[ee.Entry] = true
				} else {
					l.errAt(f, seq, "%s: %v", what, e)
				}
			}
			if fileNode == nil {
				if len(errs) == 0 && good {
					l.eng.lists[name] = list
				}
				continue
			}
			if len(errs) > 0 {
				good = false
			}
			for _, en := range inline {
				if !bad[en] { // reported above, at their place in the rule file
					entries = append(entries, en)
				}
			}
		}
		if fileNode == nil && entriesNode == nil {
			l.errAt(f, kv.key, "%s: give a file, entries, or both", what)
			continue
		}
		list, errs := BuildList(name, typ, entries)
		for _, e := range errs {
			var ee *EntryError
			if errors.As(e, &ee) {
				l.errs.add(src, ee.Entry.Line, ee.Entry.Column, "%s: %v", what, ee.Err)
			} else {
				l.errs.add(src, 0, 0, "%s: %v", what, e)
			}
			good = false
		}
		list.Source = src
		if good {
			l.eng.lists[name] = list
		}
	}
}

// maxListFile bounds a list file (100,000 networks are about 2 MB).
const maxListFile = 64 << 20

// readListFile reads a regular file of at most maxListFile octets: a rule
// naming /dev/zero or a FIFO must fail, not hang the load.
func readListFile(p string) ([]byte, error) {
	fh, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", p)
	}
	if fi.Size() > maxListFile {
		return nil, fmt.Errorf("%s is larger than %d MiB", p, maxListFile>>20)
	}
	return io.ReadAll(io.LimitReader(fh, maxListFile+1))
}

// ---- rules

var ruleFields = []string{"name", "stage", "if", "action", "reply", "score", "header", "detail", "description"}

// actionsAt is what each stage allows.
var actionsAt = map[Stage][]string{
	StageConnect: {"accept", "reject", "defer", "score", "continue"},
	StageHelo:    {"accept", "reject", "defer", "score", "continue"},
	StageMail:    {"accept", "reject", "defer", "drop", "score", "continue"},
	StageRcpt:    {"accept", "reject", "defer", "greylist", "drop", "score", "continue"},
	StageData:    {"accept", "reject", "defer", "drop", "quarantine", "score", "add_header", "continue"},
}

var allActions = []string{"accept", "reject", "defer", "greylist", "drop", "quarantine", "score", "add_header", "continue"}

var whyNotAt = map[string]string{
	"greylist":   "greylisting needs a recipient: use it at rcpt",
	"drop":       "there is no transaction to drop yet",
	"quarantine": "there is no message before data",
	"add_header": "headers go on the message: use it at data, where the facts of earlier stages are still visible",
}

func (l *loader) loadRules(f *ruleFile, n *yaml.Node) {
	n = resolve(n)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		l.errAt(f, n, "rules must be a list of rules (- name: ...), not %s", kindName(n))
		return
	}
	for _, rn := range n.Content {
		l.loadRule(f, resolve(rn))
	}
}

func (l *loader) loadRule(f *ruleFile, n *yaml.Node) {
	fields, ok := l.mapping(f, n, "a rule")
	if !ok {
		return
	}
	get := map[string]keyVal{}
	for _, kv := range fields {
		if !slices.Contains(ruleFields, kv.key.Value) {
			continue
		}
		get[kv.key.Value] = kv
	}
	r := &rule{}
	r.File, r.Line = f.name, n.Line
	what := "a rule"
	nameKV, ok := get["name"]
	if !ok {
		l.errAt(f, n, "a rule without a name (every rule needs a unique name, for the logs)")
	} else if name, ok := l.str(f, nameKV.val, "name"); ok {
		what = fmt.Sprintf("rule %q", name)
		switch {
		case !nameRE.MatchString(name):
			l.errAt(f, nameKV.val, "%s: a name is letters, digits, _ . and -", what)
		case l.ruleAt[name] != "":
			l.errAt(f, nameKV.val, "%s: duplicate name, first defined at %s", what, l.ruleAt[name])
		default:
			l.ruleAt[name] = fmt.Sprintf("%s:%d:%d", f.name, nameKV.val.Line, nameKV.val.Column)
		}
		r.Name = name
	}
	for _, kv := range fields {
		if !slices.Contains(ruleFields, kv.key.Value) {
			l.errAt(f, kv.key, "%s: unknown field %q (want %s)", what, kv.key.Value, fieldList(ruleFields...))
		}
	}
	stageOK := false
	if kv, ok := get["stage"]; !ok {
		l.errAt(f, n, "%s: stage is missing (connect, helo, mail, rcpt or data)", what)
	} else if s, ok := l.str(f, kv.val, what+": stage"); ok {
		st, err := ParseStage(s)
		if err != nil {
			l.errAt(f, kv.val, "%s: %v", what, err)
		} else {
			r.Stage, stageOK = st, true
		}
	}
	if kv, ok := get["description"]; ok {
		r.Description, _ = l.str(f, kv.val, what+": description")
	}
	var needs NeedSet
	var use facets
	var stages []Stage // where the rule applies, for what its condition and texts read
	if stageOK {
		stages = []Stage{r.Stage}
	}
	if kv, ok := get["if"]; ok {
		if src, ok := l.condSource(f, kv.val, what); ok {
			r.Condition = src
			c := l.compileCond(f, kv.val, src, what+": if", stages)
			if c != nil {
				r.cond, needs, use = c.prog, c.needs, c.use
			}
		}
	}
	actKV, ok := get["action"]
	if !ok {
		l.errAt(f, n, "%s: action is missing (%s)", what, fieldList(allActions...))
		return
	}
	act, ok := l.str(f, actKV.val, what+": action")
	if !ok {
		return
	}
	if !slices.Contains(allActions, act) {
		l.errAt(f, actKV.val, "%s: unknown action %q (want %s)", what, act, fieldList(allActions...))
		return
	}
	r.Action = act
	if stageOK && !slices.Contains(actionsAt[r.Stage], act) {
		l.errAt(f, actKV.val, "%s: action %s is not allowed at stage %s (%s; allowed there: %s)",
			what, act, r.Stage, whyNotAt[act], fieldList(actionsAt[r.Stage]...))
	}
	// The fields that go with the action.
	replyKV, hasReply := get["reply"]
	scoreKV, hasScore := get["score"]
	headerKV, hasHeader := get["header"]
	switch act {
	case "reject", "defer", "greylist":
		r.kind = kindTerminal
		if stageOK {
			r.reply = l.loadReply(f, replyKV.val, hasReply, Action(act), r.Stage, stages, what, &needs)
		}
	case "accept", "drop", "quarantine":
		r.kind = kindTerminal
		if hasReply {
			l.errAt(f, replyKV.key, "%s: reply is only for reject, defer and greylist (%s answers with the gateway's own 2xx reply)", what, act)
		}
	case "score":
		r.kind = kindScore
		if !hasScore {
			l.errAt(f, actKV.val, "%s: action score needs score: POINTS (negative to lower the score)", what)
		} else if v, ok := l.number(f, scoreKV.val, what+": score"); ok {
			r.points, r.Score = v, v
		}
	case "add_header":
		r.kind = kindHeader
		if !hasHeader {
			l.errAt(f, actKV.val, "%s: action add_header needs header: {name: ..., value: ...}", what)
		} else {
			r.header = l.loadHeader(f, headerKV.val, stages, what, &needs)
		}
	case "continue":
		r.kind = kindContinue
	}
	if hasScore && act != "score" {
		l.errAt(f, scoreKV.key, "%s: score is only for action score", what)
	}
	if hasHeader && act != "add_header" {
		l.errAt(f, headerKV.key, "%s: header is only for action add_header", what)
	}
	if hasReply && (act == "score" || act == "add_header" || act == "continue") {
		l.errAt(f, replyKV.key, "%s: reply is only for reject, defer and greylist", what)
	}
	if kv, ok := get["detail"]; ok {
		if s, ok := l.str(f, kv.val, what+": detail"); ok {
			r.detail = l.template(f, kv.val, 0, "detail", s, what+": detail", stages, &needs)
		}
	}
	if act == "greylist" {
		needs.Greylist = true
	}
	if r.Name == "" || !stageOK {
		return
	}
	st := &l.eng.stages[stageIndex[r.Stage]]
	r.needs = needs
	st.rules = append(st.rules, r)
	st.needs = st.needs.Union(needs)
	st.use |= use
	l.eng.rules = append(l.eng.rules, r.RuleInfo)
}

// condSource returns the text of a condition; a YAML boolean is accepted
// as the expression true or false.
func (l *loader) condSource(f *ruleFile, n *yaml.Node, what string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		l.errAt(f, n, "%s: if must be an expression, not %s", what, kindName(n))
		return "", false
	}
	if strings.TrimSpace(n.Value) == "" {
		l.errAt(f, n, "%s: if is empty (leave it out for a rule that always applies)", what)
		return "", false
	}
	return n.Value, true
}

// defaultReplies are the replies of rules that give none.
func defaultReply(a Action, s Stage) Reply {
	switch a {
	case ActionReject:
		if s == StageConnect {
			return Reply{Code: 554, Enhanced: "5.7.1", Text: "Connection refused"}
		}
		return Reply{Code: 550, Enhanced: "5.7.1", Text: "Rejected by policy"}
	case ActionDefer:
		if s == StageConnect {
			return Reply{Code: 421, Enhanced: "4.7.0", Text: "Try again later"}
		}
		return Reply{Code: 451, Enhanced: "4.7.1", Text: "Try again later"}
	case ActionGreylist:
		return Reply{Code: 451, Enhanced: "4.7.1", Text: "Greylisted, try again later"}
	}
	return Reply{}
}

var replyFields = []string{"code", "enhanced", "text"}

// replyShortRE is the one-line form "550 5.7.1 text". A second word that
// starts with a class digit and a dot (2., 4., 5.) and has two dots,
// digits and signs is taken as the enhanced code, for ValidateEnhanced to
// judge: "550 5.07.001 text" is an error, not a text after a default
// code. Another word is text: "421 24.12.2025 maintenance" is a date.
var replyShortRE = regexp.MustCompile(`^(\d{3})(?:\s+([245]\.[0-9+-]*\.[0-9+-]*))?(?:\s+(.*))?$`)

// loadReply reads reply: {code, enhanced, text} or reply: "550 5.7.1 text"
// and checks it against the action and the stage s; its text is checked
// against the stages where it is used.
func (l *loader) loadReply(f *ruleFile, n *yaml.Node, given bool, a Action, s Stage, stages []Stage, what string, needs *NeedSet) replyTmpl {
	def := defaultReply(a, s)
	out := replyTmpl{code: def.Code, enhanced: def.Enhanced, deftext: def.Text}
	if !given {
		return out
	}
	out.given = true
	n = resolve(n)
	code, enhanced, text := 0, "", ""
	codeNode, enhNode, textNode := n, n, n
	enhKey := "reply"
	textAt := 0 // the offset of the text in textNode's value
	hasText := false
	switch n.Kind {
	case yaml.ScalarNode:
		trimmed := strings.TrimSpace(n.Value)
		m := replyShortRE.FindStringSubmatchIndex(trimmed)
		if m == nil {
			l.errAt(f, n, "%s: reply must be \"CODE [X.Y.Z] TEXT\" or {code, enhanced, text}, not %q", what, n.Value)
			return out
		}
		group := func(i int) string {
			if m[2*i] < 0 {
				return ""
			}
			return trimmed[m[2*i]:m[2*i+1]]
		}
		code, _ = strconv.Atoi(group(1))
		enhanced, text = group(2), group(3)
		if hasText = text != ""; hasText {
			// Where the text starts in the scalar, for the places of
			// its errors.
			textAt = strings.Index(n.Value, trimmed) + m[6]
		}
	case yaml.MappingNode:
		kvs, _ := l.mapping(f, n, what+": reply")
		for _, kv := range kvs {
			switch kv.key.Value {
			case "code":
				codeNode = kv.val
				if v, ok := l.number(f, kv.val, what+": reply.code"); ok {
					code = int(v)
					if float64(code) != v {
						l.errAt(f, kv.val, "%s: reply.code must be a whole number", what)
					}
				}
			case "enhanced":
				enhNode, enhKey = kv.val, "reply.enhanced"
				enhanced, _ = l.str(f, kv.val, what+": reply.enhanced")
			case "text":
				textNode = kv.val
				text, hasText = l.str(f, kv.val, what+": reply.text")
			default:
				l.errAt(f, kv.key, "%s: reply: unknown field %q (want %s)", what, kv.key.Value, fieldList(replyFields...))
			}
		}
	default:
		l.errAt(f, n, "%s: reply must be \"CODE [X.Y.Z] TEXT\" or {code, enhanced, text}, not %s", what, kindName(n))
		return out
	}
	if code == 0 {
		code = def.Code
	}
	if enhanced == "" && code/100 == def.Code/100 {
		enhanced = def.Enhanced
	}
	rep := Reply{Code: code, Enhanced: enhanced}
	if enhanced != "" {
		if err := ValidateEnhanced(enhanced); err != nil {
			l.errAt(f, enhNode, "%s: %s: %v", what, enhKey, err)
			rep.Enhanced = "" // reported: Validate below checks the rest
		}
	}
	switch {
	case a == ActionReject && !rep.Permanent():
		l.errAt(f, codeNode, "%s: a reject needs a 5xx code, not %d (use defer for a 4xx)", what, code)
	case (a == ActionDefer || a == ActionGreylist) && !rep.Temporary():
		l.errAt(f, codeNode, "%s: a %s needs a 4xx code, not %d (use reject for a 5xx)", what, a, code)
	case s == StageConnect && a == ActionReject && code != 554:
		l.errAt(f, codeNode, "%s: at connect a reject is 554 (RFC 5321 section 3.1), not %d", what, code)
	case s == StageConnect && a == ActionDefer && code != 421:
		l.errAt(f, codeNode, "%s: at connect a defer is 421 (RFC 5321 section 3.1), not %d", what, code)
	default:
		if err := rep.Validate(); err != nil {
			l.errAt(f, codeNode, "%s: reply: %v", what, err)
		}
	}
	out.code, out.enhanced = code, enhanced
	if hasText {
		out.text = l.template(f, textNode, textAt, "reply", text, what+": reply text", stages, needs)
	}
	return out
}

// template parses the template src of node n (a reply text, header value
// or detail) used at stages, adds the checks it reads to needs, and
// reports its problems at their place in the file. src starts at the
// offset at of n's value.
func (l *loader) template(f *ruleFile, n *yaml.Node, at int, name, src, what string, stages []Stage, needs *NeedSet) *tmpl {
	report := func(off int, msg string) {
		line, col := byteOffsetPos(n.Value, at+off)
		fl, fc := f.exprPos(n, n.Value, line, col)
		l.errs.add(f.name, fl, fc, "%s: %s", what, msg)
	}
	t, tn, err := parseTemplate(name, src)
	if err != nil {
		var te *tmplError
		if errors.As(err, &te) && te.off >= 0 {
			report(te.off, te.msg)
		} else {
			l.errAt(f, n, "%s: %v", what, err)
		}
		return nil
	}
	bad := false
	seen := map[string]bool{}
	for _, u := range t.uses {
		if from, ok := templateFactFrom[u.name]; ok && !seen[u.name] {
			seen[u.name] = true
			if why := factMissing("."+u.name, from, stages); why != "" {
				report(u.off, why)
				bad = true
			}
		}
	}
	if bad {
		return nil
	}
	*needs = needs.Union(tn)
	return t
}

var headerFields = []string{"name", "value"}

// headerNameRE is a field name (RFC 5322 section 3.6.8): printable ASCII
// but the colon.
var headerNameRE = regexp.MustCompile(`^[!-9;-~]+$`)

// ourHeaders are fields the gateway writes itself; a rule may not add one.
var ourHeaders = []string{"received", "authentication-results", "return-path"}

func (l *loader) loadHeader(f *ruleFile, n *yaml.Node, stages []Stage, what string, needs *NeedSet) headerTmpl {
	var h headerTmpl
	kvs, ok := l.mapping(f, n, what+": header")
	if !ok {
		return h
	}
	var nameNode, valueNode *yaml.Node
	for _, kv := range kvs {
		switch kv.key.Value {
		case "name":
			nameNode = kv.val
		case "value":
			valueNode = kv.val
		default:
			l.errAt(f, kv.key, "%s: header: unknown field %q (want %s)", what, kv.key.Value, fieldList(headerFields...))
		}
	}
	if nameNode == nil || valueNode == nil {
		l.errAt(f, n, "%s: header needs a name and a value", what)
		return h
	}
	if name, ok := l.str(f, nameNode, what+": header.name"); ok {
		switch {
		case !headerNameRE.MatchString(name):
			l.errAt(f, nameNode, "%s: header.name %q is not a header field name", what, name)
		case slices.Contains(ourHeaders, strings.ToLower(name)):
			l.errAt(f, nameNode, "%s: header.name %q is written by the gateway itself", what, name)
		}
		h.name = name
	}
	if v, ok := l.str(f, valueNode, what+": header.value"); ok {
		h.value = l.template(f, valueNode, 0, "header", v, what+": header.value", stages, needs)
	}
	return h
}

// ---- thresholds

var thresholdFields = []string{"score", "if", "reply", "header"}

// thresholdStages is where each threshold applies.
var thresholdStages = map[string][]Stage{
	"greylist":   {StageRcpt},
	"reject":     {StageRcpt, StageData},
	"quarantine": {StageData},
	"add_header": {StageData},
}

func (l *loader) loadThresholds(f *ruleFile, n *yaml.Node) {
	if isNull(n) {
		return
	}
	kvs, ok := l.mapping(f, n, "thresholds")
	if !ok {
		return
	}
	for _, kv := range kvs {
		name := kv.key.Value
		stages, known := thresholdStages[name]
		if !known {
			l.errAt(f, kv.key, "thresholds: unknown threshold %q (want greylist, reject, quarantine, add_header)", name)
			continue
		}
		what := "threshold " + name
		if at, dup := l.threshAt[name]; dup {
			l.errAt(f, kv.key, "%s: defined twice, first at %s", what, at)
			continue
		}
		l.threshAt[name] = fmt.Sprintf("%s:%d:%d", f.name, kv.key.Line, kv.key.Column)
		fields, ok := l.mapping(f, kv.val, what)
		if !ok {
			continue
		}
		t := &threshold{name: name, stages: stages}
		var needs NeedSet
		var use facets
		hasScore := false
		for _, fkv := range fields {
			switch fkv.key.Value {
			case "score":
				hasScore = true
				t.score, _ = l.number(f, fkv.val, what+": score")
			case "if":
				if src, ok := l.condSource(f, fkv.val, what); ok {
					if c := l.compileCond(f, fkv.val, src, what+": if", stages); c != nil {
						t.cond, needs, use = c.prog, c.needs, c.use
					}
				}
			case "reply":
				if name == "add_header" || name == "quarantine" {
					l.errAt(f, fkv.key, "%s: reply is only for reject and greylist", what)
					continue
				}
			case "header":
				if name != "add_header" {
					l.errAt(f, fkv.key, "%s: header is only for add_header", what)
					continue
				}
			default:
				l.errAt(f, fkv.key, "%s: unknown field %q (want %s)", what, fkv.key.Value, fieldList(thresholdFields...))
			}
		}
		if !hasScore {
			l.errAt(f, kv.key, "%s: score is missing", what)
		}
		var replyNode, headerNode *yaml.Node
		for _, fkv := range fields {
			switch fkv.key.Value {
			case "reply":
				replyNode = fkv.val
			case "header":
				headerNode = fkv.val
			}
		}
		switch name {
		case "reject":
			t.action = ActionReject
		case "greylist":
			t.action = ActionGreylist
			needs.Greylist = true
		case "quarantine":
			t.action = ActionQuarantine
		case "add_header":
			t.action = ActionContinue
		}
		if t.action == ActionReject || t.action == ActionGreylist {
			// The reply is checked against the stricter stage it applies
			// at (rcpt); connect does not come into it.
			t.reply = l.loadReply(f, replyNode, replyNode != nil, t.action, StageRcpt, stages, what, &needs)
			if replyNode == nil && name == "reject" {
				t.reply.deftext = "Rejected as spam"
			}
		}
		if name == "add_header" {
			if headerNode != nil {
				t.header = l.loadHeader(f, headerNode, stages, what, &needs)
			} else {
				t.header.name = "X-Spam-Flag"
				t.header.value, _, _ = parseTemplate("header", "YES")
			}
		}
		t.needs = needs
		l.eng.nthresh++
		for _, s := range stages {
			st := &l.eng.stages[stageIndex[s]]
			st.thresholds = append(st.thresholds, t)
			st.needs = st.needs.Union(needs)
			st.use |= use
		}
	}
}

// ---- conditions

type compiled struct {
	prog  *vm.Program
	needs NeedSet
	use   facets
}

// compileCond parses, checks and compiles a condition used at stages.
// The names it uses give the checks it needs; the literal arguments of
// in_list, ip_in and dnsbl_code are checked here, and so is what can
// never hold (see known.go).
func (l *loader) compileCond(f *ruleFile, n *yaml.Node, src, what string, stages []Stage) *compiled {
	tree, err := parser.Parse(src)
	if err != nil {
		l.exprErr(f, n, src, what, err)
		return nil
	}
	// The walker's checks that depend on a type (the receiver of a method,
	// the left operand of in 1..10) read the types the checker gives the
	// nodes; its errors are reported by expr.Compile below.
	cfg := conf.CreateNew()
	expr.Env(Env{})(cfg)
	_, _ = checker.Check(tree, cfg)
	w := &condWalker{l: l, f: f, n: n, src: src, what: what, stages: stages, elems: closureElems(&tree.Node),
		inRange: literalRanges(&tree.Node), seen: map[string]bool{}}
	ast.Walk(&tree.Node, w)
	// The type check too, when the walker found problems: all are
	// reported at once.
	prog, err := expr.Compile(src, expr.Env(Env{}), expr.AsBool(), expr.Patch(zonePatcher{}))
	if err != nil {
		l.exprErr(f, n, src, what, err)
		return nil
	}
	if w.bad {
		return nil
	}
	return &compiled{prog: prog, needs: w.needs, use: w.use}
}

func (l *loader) exprErr(f *ruleFile, n *yaml.Node, src, what string, err error) {
	var fe *file.Error
	if errors.As(err, &fe) {
		line, col := f.exprPos(n, src, fe.Line, fe.Column)
		msg := fe.Message
		if n.Style == 0 && line-1 < len(f.lines) && strings.Contains(f.lines[line-1], " #") {
			msg += ` (in YAML " #" starts a comment: put the condition in quotes)`
		}
		l.errs.add(f.name, line, col, "%s: %s", what, msg)
		return
	}
	msg := err.Error()
	if strings.HasPrefix(msg, "expected bool, but got ") {
		msg = "a condition must be true or false, this one is " + strings.TrimPrefix(msg, "expected bool, but got ")
	}
	line, col := f.exprPos(n, src, 1, 0)
	l.errs.add(f.name, line, col, "%s: %s", what, msg)
}

type condWalker struct {
	l      *loader
	f      *ruleFile
	n      *yaml.Node
	src    string
	what   string
	stages []Stage                       // where the condition is evaluated
	elems  map[*ast.PointerNode]ast.Node // the list each # ranges over
	seen   map[string]bool               // the facts reported missing
	// inRange are the ranges x in 1..10 with literal bounds, which the
	// range operator may build (a list of at most the VM's memory
	// budget; for an int x, two comparisons).
	inRange map[*ast.BinaryNode]bool
	// nesting is how deep the closures a closure holds go (itself 1).
	nesting map[*ast.PredicateNode]int
	// costs is what checkSenderClosure knows of each node.
	costs map[ast.Node]costInfo
	needs NeedSet
	use   facets
	bad   bool
}

func (w *condWalker) errAt(node ast.Node, format string, args ...any) {
	w.errAtOffset(node.Location().From, format, args...)
}

// errAtOffset reports an error at the rune offset off of the condition.
func (w *condWalker) errAtOffset(off int, format string, args ...any) {
	line, col := offsetPos(w.src, off)
	fl, fc := w.f.exprPos(w.n, w.src, line, col)
	w.l.errs.add(w.f.name, fl, fc, "%s: %s", w.what, fmt.Sprintf(format, args...))
	w.bad = true
}

// literalRanges returns the ranges of tree that are the right operand of
// in, with literal bounds.
func literalRanges(tree *ast.Node) map[*ast.BinaryNode]bool {
	out := map[*ast.BinaryNode]bool{}
	ast.Walk(tree, visitFunc(func(n *ast.Node) {
		if in, ok := (*n).(*ast.BinaryNode); ok && in.Operator == "in" {
			if r, ok := in.Right.(*ast.BinaryNode); ok && r.Operator == ".." {
				out[r] = intLiteral(r.Left) && intLiteral(r.Right)
			}
		}
	}))
	return out
}

// intLiteral says whether n is an integer literal, or one with a sign
// (-5: expr folds it into a literal before it rewrites x in -5..0).
func intLiteral(n ast.Node) bool {
	if u, ok := n.(*ast.UnaryNode); ok && (u.Operator == "-" || u.Operator == "+") {
		n = u.Node
	}
	_, ok := n.(*ast.IntegerNode)
	return ok
}

// condBuiltins are the builtins of expr a condition may use: tests,
// numbers, and functions whose result is no larger than what they read.
// The others can build data without bound (the VM's memory budget counts
// list elements, not the size of strings): reduce(1..28, #acc + #acc,
// helo) is 2^28 times helo, repeat and replace multiply a text, join
// puts its separator between every element (of a split of a 1 MiB
// header, say), map, sortBy and groupBy keep a new value per element, and
// string, toJSON and toBase64 grow a text at each nesting. A builtin
// added to a later expr is refused until it is judged here.
var condBuiltins = map[string]bool{
	"all": true, "none": true, "any": true, "one": true, "filter": true, "find": true, "findIndex": true,
	"findLast": true, "findLastIndex": true, "count": true, "sum": true,
	"len": true, "type": true, "abs": true, "ceil": true, "floor": true, "round": true, "int": true, "float": true,
	"trim": true, "trimPrefix": true, "trimSuffix": true, "upper": true, "lower": true, "split": true,
	"splitAfter": true, "indexOf": true, "lastIndexOf": true, "hasPrefix": true, "hasSuffix": true,
	"max": true, "min": true, "mean": true, "median": true,
	"first": true, "last": true, "get": true, "take": true, "keys": true, "values": true, "reverse": true,
	"uniq": true, "sort": true, "concat": true, "flatten": true,
	"now": true, "duration": true, "date": true, "timezone": true,
	"bitand": true, "bitor": true, "bitxor": true, "bitnand": true, "bitnot": true, "bitshl": true,
	"bitshr": true, "bitushr": true,
}

// condRefused says why a builtin is not in condBuiltins.
var condRefused = map[string]string{
	"reduce":   "it accumulates a value without bound",
	"map":      "it builds a list of new values (test them with any, all, filter or count instead)",
	"sortBy":   "it builds a new value for every element",
	"groupBy":  "it builds a new value for every element",
	"repeat":   "it multiplies a text",
	"replace":  "it can multiply a text (replace(s, \"\", t) puts t between every character)",
	"join":     "it puts its separator between every element, and can multiply a text",
	"string":   "it can build a text larger than what it reads",
	"toJSON":   "it can build a text larger than what it reads",
	"toBase64": "it builds a text larger than what it reads",
}

func (w *condWalker) Visit(node *ast.Node) {
	switch x := (*node).(type) {
	case *ast.BuiltinNode:
		w.checkZone(x)
		if !condBuiltins[x.Name] {
			why := condRefused[x.Name]
			if why == "" {
				why = "it is not one of the builtins a condition may use"
			}
			w.errAt(x, "%s is not allowed in conditions: %s", x.Name, why)
		}
		if x.Name == "trim" && len(x.Arguments) == 2 {
			if _, lit := x.Arguments[1].(*ast.StringNode); !lit {
				// strings.Trim looks each character it trims up in the
				// set (a scan of it) and reads the whole set first.
				w.errAt(x.Arguments[1], "trim: the characters to trim must be a literal string (each character of the text is looked up in them: two texts of the header cost the product of their lengths)")
			}
		}
		if x.Name == "uniq" && len(x.Arguments) > 0 {
			// expr's uniq compares each element with every one kept
			// (and allocates for each comparison of a []string).
			if s := w.senderList(x.Arguments[0]); s != "" {
				w.errAt(x, "uniq over %s is not allowed in conditions: it compares every element with every other, and the sender sets the length of the list (1,000 Received: 500,000 comparisons; split of a 600 KB Subject: minutes)", s)
			}
		}
		if len(x.Arguments) > 0 && closureBuiltins[x.Name] {
			// split anywhere in the list: any(reverse(split(...)), ...)
			// runs as often as any(split(...), ...).
			if s := w.splitList(x.Arguments[0]); s != "" {
				w.errAt(x, "%s over %s is not allowed in conditions: it runs once per piece of a text the sender writes, which has no bound (test the text with contains, matches or in_list instead)", x.Name, strings.TrimSuffix(s, "()"))
			}
			w.checkSenderClosure(x)
		}
	case *ast.PredicateNode:
		w.checkClosure(x)
	case *ast.BinaryNode:
		if _, lit := x.Right.(*ast.StringNode); x.Operator == "matches" && !lit {
			// expr compiles a pattern that is not a literal at every
			// evaluation, and this one can come from the message.
			w.errAt(x.Right, "matches: the pattern must be a literal string (one read from the message is compiled at every evaluation, and the sender chooses it)")
		}
		if x.Operator == ".." && !w.inRange[x] {
			w.errAt(x, "the range operator .. is allowed only as x in 1..10, with literal bounds (elsewhere it builds a list of any length)")
		}
		if r, ok := x.Right.(*ast.BinaryNode); ok && x.Operator == "in" && r.Operator == ".." && w.inRange[r] {
			// expr turns x in a..b into two comparisons only for an x of
			// type int; for another (size is an int64, score a float) it
			// builds the list at every evaluation, which exceeds the
			// memory budget once it is long.
			if t := x.Left.Type(); t == nil || t.Kind() != reflect.Int {
				what := "unknown"
				if t != nil {
					what = t.String()
				}
				w.errAt(x, "x in a..b is allowed only for an x of type int (here %s): write x >= a && x <= b", what)
			}
		}
		w.checkValues(x)
	case *ast.VariableDeclaratorNode:
		// The node is at the name; the error goes to its "let".
		off := x.Location().From
		if i := strings.LastIndex(string([]rune(w.src)[:min(off, utf8.RuneCountInString(w.src))]), "let"); i >= 0 {
			off = utf8.RuneCountInString(w.src[:i])
		}
		w.errAtOffset(off, "let is not allowed in conditions: a variable used twice doubles what it holds (let a = helo + helo; let b = a + a; ...)")
	case *ast.IdentifierNode:
		if x.Value == "$env" {
			w.errAt(x, "$env is not allowed in conditions: name the variables (what a condition reads decides which checks run, and at which stage it has a value)")
		}
		w.noteName(x.Value)
		if from, ok := factFrom[x.Value]; ok && !w.seen[x.Value] {
			w.seen[x.Value] = true
			name := x.Value
			if name == "header" || name == "headers" || name == "dkim_pass_domain" {
				name += "()"
			}
			if why := factMissing(name, from, w.stages); why != "" {
				w.errAt(x, "%s", why)
			}
		}
	case *ast.MemberNode:
		// dnsbl["zone"], domainbl["zone"]
		if id, ok := x.Node.(*ast.IdentifierNode); ok && (id.Value == "dnsbl" || id.Value == "domainbl") {
			if s, ok := x.Property.(*ast.StringNode); ok {
				w.noteZone(x.Property, s.Value)
			}
		}
		w.checkDomainBLKey(x)
	case *ast.CallNode:
		id, ok := x.Callee.(*ast.IdentifierNode)
		if !ok {
			w.checkMethod(x)
			return
		}
		lit := func(i int, what string) (string, bool) {
			if i >= len(x.Arguments) {
				return "", false // the type checker reports the arity
			}
			s, ok := x.Arguments[i].(*ast.StringNode)
			if !ok {
				w.errAt(x.Arguments[i], "%s: the %s must be a literal string", id.Value, what)
				return "", false
			}
			return s.Value, true
		}
		switch id.Value {
		case "in_list":
			if name, ok := lit(0, "list name"); ok {
				if _, known := w.l.listAt[name]; !known {
					w.errAt(x.Arguments[0], "unknown list %q (%s)", name, w.l.knownLists())
				}
			}
		case "ip_in":
			if s, ok := lit(1, "network"); ok {
				p, err := parseNetwork(s)
				if err != nil {
					w.errAt(x.Arguments[1], "ip_in: %v", err)
				} else {
					w.l.eng.prefixes[s] = p
				}
			}
		case "dnsbl_listed":
			if s, ok := lit(0, "zone"); ok {
				w.noteZone(x.Arguments[0], s)
			}
		case "dnsbl_code":
			if s, ok := lit(0, "zone"); ok {
				w.noteZone(x.Arguments[0], s)
			}
			if s, ok := lit(1, "list of codes"); ok {
				fs, err := parseCodes(s)
				if err != nil {
					w.errAt(x.Arguments[1], "dnsbl_code: %v", err)
				} else {
					w.l.eng.codes[s] = fs
				}
			}
		}
	}
}

// condMethods are the methods a condition may call, by the type of their
// receiver: those of time.Time (from now() and date()) and time.Duration
// (from duration() and Sub) whose result is a number, a boolean, a time or
// a duration. The others can build a text without bound: Format and
// String of a date give a text as long as their layout, and a layout made
// by another Format doubles at each nesting (a 974-octet condition
// allocated 651 MB).
var condMethods = map[reflect.Type]map[string]bool{
	reflect.TypeOf(time.Time{}): {
		"Year": true, "Month": true, "Day": true, "Hour": true, "Minute": true, "Second": true,
		"Nanosecond": true, "Weekday": true, "YearDay": true, "Unix": true, "UnixMilli": true,
		"UnixMicro": true, "UnixNano": true, "Before": true, "After": true, "Equal": true,
		"Compare": true, "IsZero": true, "Sub": true, "Add": true, "UTC": true, "In": true,
		"Truncate": true, "Round": true, "Local": true,
	},
	reflect.TypeOf(time.Duration(0)): {
		"Hours": true, "Minutes": true, "Seconds": true, "Milliseconds": true, "Microseconds": true,
		"Nanoseconds": true, "Abs": true, "Truncate": true, "Round": true,
	},
}

// closureBuiltins are the builtins that run a closure over a list.
var closureBuiltins = map[string]bool{
	"all": true, "none": true, "any": true, "one": true, "filter": true, "find": true, "findIndex": true,
	"findLast": true, "findLastIndex": true, "count": true, "sum": true,
}

// maxClosureNesting is how deep closures may nest: a closure in a closure
// runs its body once per pair. Lists are bounded (headers() gives at most
// 1,000 values), and two lists the sender sizes are not nested
// (checkSenderClosure), so two levels stay within about the size of the
// message times that of the condition; a third would multiply again.
const maxClosureNesting = 2

// checkClosure refuses closures nested deeper than maxClosureNesting and
// text built with + in a closure (a copy of the text per element: a
// condition quadratic in the size of a header the sender writes). The
// walk is depth first, children before parents: the closures inside c
// are known already.
func (w *condWalker) checkClosure(c *ast.PredicateNode) {
	if w.nesting == nil {
		w.nesting = map[*ast.PredicateNode]int{}
	}
	depth := 1
	ast.Walk(&c.Node, visitFunc(func(n *ast.Node) {
		switch y := (*n).(type) {
		case *ast.PredicateNode:
			depth = max(depth, w.nesting[y]+1)
		case *ast.BinaryNode:
			if t := y.Type(); y.Operator == "+" && t != nil && t.Kind() == reflect.String {
				w.errAt(y, "+ of texts is not allowed inside a closure: it copies a text for every element (compare the parts instead)")
			}
		}
	}))
	w.nesting[c] = depth
	if depth == maxClosureNesting+1 {
		w.errAt(c, "closures may nest %d deep at most (each level multiplies the steps by the length of its list)", maxClosureNesting)
	}
}

// checkMethod refuses a call of a method not in condMethods.
func (w *condWalker) checkMethod(x *ast.CallNode) {
	if m, ok := x.Callee.(*ast.MemberNode); ok {
		if name, ok := m.Property.(*ast.StringNode); ok {
			if t := m.Node.Type(); t != nil && condMethods[t][name.Value] {
				return
			}
			w.errAt(x, "the method %s is not allowed in conditions: only methods of now(), date() and duration() that give a number, a boolean, a date or a duration are (Hour, Minute, Weekday, Year, Month, Day, Unix, Before, After, Equal, Sub, Hours, ...); Format and String can build a text without bound", name.Value)
			return
		}
	}
	w.errAt(x, "this call is not allowed in conditions: only the functions and builtins of conditions, and some methods of dates and durations, may be called")
}

func (w *condWalker) noteZone(at ast.Node, zone string) {
	z := normZone(zone)
	if z != zone {
		w.errAt(at, "zone %q: write it in lower case without a trailing dot (%q)", zone, z)
		return
	}
	if w.l.knownZones != nil && !w.l.knownZones[z] {
		w.errAt(at, "zone %q is not configured in dnsbl.zones", zone)
		return
	}
	w.l.zones[z] = true
}

func normZone(z string) string { return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(z), ".")) }

func (w *condWalker) noteName(name string) {
	switch name {
	case "dnsbl", "dnsbl_listed", "dnsbl_code":
		w.needs.DNSBL = true
		w.use |= useDNSBL
	case "domainbl":
		w.needs.DomainBL = true
		w.use |= useDomainBL
	case "iprev":
		w.needs.IPRev = true
		w.use |= useIPRev
	case "client_name":
		w.needs.IPRev = true
	case "spf":
		w.needs.SPF = true
	case "dkim", "dkim_pass_domain":
		w.needs.DKIM = true
		w.use |= useDKIM
	case "dmarc":
		w.needs.DMARC = true
	case "greylist":
		w.needs.Greylist = true
	case "$env":
		w.needs = NeedSet{true, true, true, true, true, true, true}
		w.use = useAll
	}
}

func (l *loader) knownLists() string {
	if len(l.listAt) == 0 {
		return "no lists are declared"
	}
	names := make([]string, 0, len(l.listAt))
	for n := range l.listAt {
		names = append(names, n)
	}
	slices.Sort(names)
	return "declared: " + strings.Join(names, ", ")
}

// offsetPos turns a rune offset of src into a line (1-based) and column
// (0-based, in runes), as expr counts them.
func offsetPos(src string, off int) (int, int) {
	line, col, i := 1, 0, 0
	for _, r := range src {
		if i == off {
			break
		}
		if r == '\n' {
			line++
			col = 0
		} else {
			col++
		}
		i++
	}
	return line, col
}

// byteOffsetPos turns a byte offset of src into a line (1-based) and
// column (0-based, in runes), as offsetPos does a rune offset.
func byteOffsetPos(src string, off int) (int, int) {
	off = min(max(off, 0), len(src))
	return offsetPos(src, utf8.RuneCountInString(src[:off]))
}

// exprPos maps a position in a condition (line 1-based, column 0-based)
// to the file: a plain or quoted scalar starts at the node; a literal
// block ("|") keeps its lines below the node; plain, quoted and folded
// (">") scalars that span lines are folded into one, each line break
// becoming a space.
func (f *ruleFile) exprPos(n *yaml.Node, src string, line, col int) (int, int) {
	srcLines := strings.Split(src, "\n")
	if n.Style&yaml.LiteralStyle != 0 {
		fl := n.Line + line // the first content line is below the "|"
		if fl-1 < len(f.lines) {
			return fl, f.blockIndent(n.Line) + col + 1
		}
		return n.Line, n.Column
	}
	// Rune offset of the position in src.
	off := col
	for i := 0; i < line-1 && i < len(srcLines); i++ {
		off += len([]rune(srcLines[i])) + 1
	}
	fl, fc := n.Line, n.Column
	if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
		fc++
	}
	if n.Style&yaml.FoldedStyle != 0 {
		fl, fc = n.Line+1, f.blockIndent(n.Line)+1
	}
	// Walk the file's lines, each contributing its trimmed text and one
	// space, until the offset falls inside one.
	for fl-1 < len(f.lines) {
		text := []rune(f.lines[fl-1])
		start := fc - 1
		if start > len(text) {
			break
		}
		seg := strings.TrimRight(string(text[start:]), " \t\r")
		n := len([]rune(seg))
		if off <= n {
			return fl, fc + off
		}
		off -= n + 1
		fl++
		if fl-1 >= len(f.lines) {
			break
		}
		next := f.lines[fl-1]
		fc = len(next) - len(strings.TrimLeft(next, " \t")) + 1
	}
	return n.Line, n.Column
}

// blockIndent is the indentation of the first non-blank line after line
// (1-based): where a block scalar's text starts.
func (f *ruleFile) blockIndent(line int) int {
	for i := line; i < len(f.lines); i++ {
		s := f.lines[i]
		if strings.TrimSpace(s) == "" {
			continue
		}
		return len(s) - len(strings.TrimLeft(s, " "))
	}
	return 0
}
