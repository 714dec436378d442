package policy

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/expr-lang/expr/vm"

	"github.com/mxgate/gatewayd/checks"
)

// Engine is one loaded, compiled rule set. It is immutable and safe for
// concurrent use; a reload builds a new Engine (see Store). Take one Engine
// per transaction so that every stage of it sees the same rules.
type Engine struct {
	dir    string
	stages [5]stageRules // by stageIndex
	lists  map[string]*List
	// Literal arguments of ip_in and dnsbl_code, parsed at load.
	prefixes map[string]netip.Prefix
	codes    map[string][]checks.CodeFilter
	zones    []string
	files    []string // every file read: rule files, then list files
	digest   string
	loaded   time.Time
	rules    []RuleInfo
	nthresh  int
	pool     sync.Pool
}

var stageIndex = map[Stage]int{StageConnect: 0, StageHelo: 1, StageMail: 2, StageRcpt: 3, StageData: 4}

// stageIdx is stageIndex[s], without hashing s.
func stageIdx(s Stage) (int, bool) {
	switch s {
	case StageConnect:
		return 0, true
	case StageHelo:
		return 1, true
	case StageMail:
		return 2, true
	case StageRcpt:
		return 3, true
	case StageData:
		return 4, true
	}
	return 0, false
}

type stageRules struct {
	rules      []*rule
	thresholds []*threshold
	needs      NeedSet
	use        facets
}

// ruleKind is what a rule does when its condition holds.
type ruleKind uint8

const (
	kindTerminal ruleKind = iota // accept, reject, defer, greylist, drop, quarantine
	kindScore                    // add points, go on
	kindHeader                   // add a header field, go on
	kindContinue                 // note that the rule matched, go on
)

type rule struct {
	RuleInfo
	kind   ruleKind
	needs  NeedSet     // what its condition and texts read
	cond   *vm.Program // nil: always
	points float64
	reply  replyTmpl
	header headerTmpl
	detail *tmpl
}

type replyTmpl struct {
	code     int
	enhanced string
	text     *tmpl
	deftext  string
	given    bool // the rule wrote a reply
}

type headerTmpl struct {
	name  string
	value *tmpl
}

// RuleInfo describes a rule, for listings and explanations.
type RuleInfo struct {
	Name        string
	Stage       Stage
	Action      string  // as written: accept, reject, ..., score, add_header, continue
	Score       float64 // the points of a score rule
	Condition   string  // the source of the condition, "" for always
	Description string
	File        string
	Line        int
}

// threshold is a score threshold of the thresholds section.
type threshold struct {
	name   string // "reject", "quarantine", "greylist", "add_header"
	action Action // ActionContinue for add_header
	score  float64
	needs  NeedSet // what its condition and texts read
	cond   *vm.Program
	reply  replyTmpl
	header headerTmpl
	stages []Stage
}

// NeedSet names the checks whose results the rules of a stage read, so
// that the gateway runs (or awaits) only those. It is computed when the
// rules load, from the names their conditions and templates use.
type NeedSet struct {
	DNSBL    bool // IP zone results: dnsbl, dnsbl_listed, dnsbl_code
	DomainBL bool // domain zone results: domainbl
	IPRev    bool // reverse DNS: iprev, client_name
	SPF      bool // spf
	DKIM     bool // dkim, dkim_pass_domain
	DMARC    bool // dmarc (which itself needs the SPF and DKIM results)
	// Greylist is set when the rules read the greylist state, or when a
	// rule or threshold of the stage may answer "greylist".
	Greylist bool
}

// Union is the checks needed by n or o.
func (n NeedSet) Union(o NeedSet) NeedSet {
	return NeedSet{n.DNSBL || o.DNSBL, n.DomainBL || o.DomainBL, n.IPRev || o.IPRev, n.SPF || o.SPF,
		n.DKIM || o.DKIM, n.DMARC || o.DMARC, n.Greylist || o.Greylist}
}

// Intersect is the checks needed by both n and o.
func (n NeedSet) Intersect(o NeedSet) NeedSet {
	return NeedSet{n.DNSBL && o.DNSBL, n.DomainBL && o.DomainBL, n.IPRev && o.IPRev, n.SPF && o.SPF,
		n.DKIM && o.DKIM, n.DMARC && o.DMARC, n.Greylist && o.Greylist}
}

// Minus is the checks of n that o does not name.
func (n NeedSet) Minus(o NeedSet) NeedSet {
	return NeedSet{n.DNSBL && !o.DNSBL, n.DomainBL && !o.DomainBL, n.IPRev && !o.IPRev, n.SPF && !o.SPF,
		n.DKIM && !o.DKIM, n.DMARC && !o.DMARC, n.Greylist && !o.Greylist}
}

// Empty reports whether n names no check.
func (n NeedSet) Empty() bool { return n == NeedSet{} }

func (n NeedSet) String() string {
	var out []string
	for _, x := range []struct {
		on   bool
		name string
	}{{n.DNSBL, "dnsbl"}, {n.DomainBL, "domainbl"}, {n.IPRev, "iprev"}, {n.SPF, "spf"}, {n.DKIM, "dkim"},
		{n.DMARC, "dmarc"}, {n.Greylist, "greylist"}} {
		if x.on {
			out = append(out, x.name)
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ",")
}

// Scope is how far an accept reaches: which checks and rules the gateway
// may skip after it.
type Scope string

// The scopes of an accept.
const (
	// ScopeNone: the verdict is not an accept.
	ScopeNone Scope = ""
	// ScopeSession: accepted at connect or HELO, the client is trusted
	// for the whole session: run no more checks or rules for it (the
	// gateway's own safety, like accepted domains, still applies).
	ScopeSession Scope = "session"
	// ScopeTransaction: accepted at MAIL (or at end of DATA): skip the
	// remaining checks and rules of this transaction; the next MAIL
	// starts afresh.
	ScopeTransaction Scope = "transaction"
	// ScopeRecipient: accepted at RCPT, this recipient passes the RCPT
	// stage (no greylisting, no threshold); the message is still judged
	// at end of DATA, because the other recipients of the transaction
	// were not allow-listed and one allow-listed recipient must not open
	// the door for them all.
	ScopeRecipient Scope = "recipient"
)

func scopeOf(s Stage) Scope {
	switch s {
	case StageConnect, StageHelo:
		return ScopeSession
	case StageRcpt:
		return ScopeRecipient
	}
	return ScopeTransaction
}

// Outcome is the result of evaluating one stage: the verdict, and what the
// gateway needs beside it.
//
// Verdict.Score is what this stage's rules added (the sum of the scores
// in Verdict.Reasons), not the running total: the gateway adds it to the
// score it carries (see Facts.Score and the package documentation).
type Outcome struct {
	Verdict
	// Scope is set when Action is accept.
	Scope Scope `json:"scope,omitempty"`
	// Rule is the rule (or "threshold:NAME") whose action is the verdict's,
	// "" when no terminal action was taken.
	Rule string `json:"rule,omitempty"`
	// DefaultReply is set when the rule gave no reply and Verdict.Reply is
	// the action's default: the gateway may put a better text of its own
	// (a greylist's retry time, say) in its place, keeping the codes.
	DefaultReply bool `json:"default_reply,omitempty"`
	// Total is Facts.Score plus Verdict.Score.
	Total float64 `json:"total"`
	// Errors are conditions or templates that failed at run time (an
	// index out of range, say). Such a rule is skipped (its condition
	// counts as false; a failed reply template falls back to the default
	// text) and the error is reported here to be logged.
	Errors []string `json:"errors,omitempty"`
}

// Step is one rule looked at by Explain.
type Step struct {
	Rule    string
	Matched bool
	Err     string
}

// Needs is the checks the rules and thresholds of stage read.
func (e *Engine) Needs(stage Stage) NeedSet {
	i, ok := stageIdx(stage)
	if !ok {
		return NeedSet{}
	}
	return e.stages[i].needs
}

// Evaluate runs the rules of f.Stage in order over f and returns the
// outcome. Rules whose condition holds act: score adds points and goes on,
// add_header adds a header field and goes on, continue only notes the
// rule, and the other actions end the stage. When no rule ended it, the
// thresholds of the stage (rcpt and data) are applied to the total score.
func (e *Engine) Evaluate(f *Facts) Outcome {
	return e.evaluate(f, nil, lazy{})
}

// EvaluateLazy is Evaluate over facts that lack the results of the checks
// in pending: just before the first rule or threshold that reads one of
// them, load is called with those it reads (a subset of pending, each
// asked once) and must put their results in f. A stage ended by an
// earlier rule never asks: a client refused by its DNSBL listing costs no
// reverse DNS lookup when the rules read iprev only after that.
func (e *Engine) EvaluateLazy(f *Facts, pending NeedSet, load func(NeedSet)) Outcome {
	return e.evaluate(f, nil, lazy{pending, load})
}

// ExplainLazy is EvaluateLazy, also returning each rule looked at and
// whether its condition held.
func (e *Engine) ExplainLazy(f *Facts, pending NeedSet, load func(NeedSet)) (Outcome, []Step) {
	var steps []Step
	out := e.evaluate(f, &steps, lazy{pending, load})
	return out, steps
}

// lazy is what EvaluateLazy asks for, and how.
type lazy struct {
	pending NeedSet
	load    func(NeedSet)
}

// before loads the pending checks that the rule or threshold about to be
// evaluated reads (needs), and fills env again with their results.
func (l *lazy) before(needs NeedSet, env *Env, f *Facts, use facets) {
	if l.load == nil {
		return
	}
	n := needs.Intersect(l.pending)
	if n.Empty() {
		return
	}
	l.pending = l.pending.Minus(n)
	l.load(n)
	env.fill(f, use)
}

// Explain is Evaluate, also returning each rule looked at and whether its
// condition held.
func (e *Engine) Explain(f *Facts) (Outcome, []Step) {
	var steps []Step
	out := e.evaluate(f, &steps, lazy{})
	return out, steps
}

func (e *Engine) evaluate(f *Facts, steps *[]Step, lz lazy) Outcome {
	out := Outcome{Verdict: Verdict{Action: ActionContinue}, Total: f.Score}
	i, ok := stageIdx(f.Stage)
	if !ok {
		out.Errors = append(out.Errors, fmt.Sprintf("unknown stage %q", f.Stage))
		return out
	}
	st := &e.stages[i]
	if len(st.rules) == 0 && len(st.thresholds) == 0 {
		return out
	}
	env, _ := e.pool.Get().(*Env)
	if env == nil {
		env = newEnv(e)
	}
	defer func() {
		env.clear()
		e.pool.Put(env)
	}()
	env.fill(f, st.use)
	data := TemplateData{Facts: f}

	for _, r := range st.rules {
		if r.Action == "greylist" && f.Greylist != "" {
			continue // the greylist store was asked already for this recipient
		}
		lz.before(r.needs, env, f, st.use)
		env.Score = out.Total
		matched, err := env.run(r.cond)
		if steps != nil {
			s := Step{Rule: r.Name, Matched: matched}
			if err != nil {
				s.Err = err.Error()
			}
			*steps = append(*steps, s)
		}
		if err != nil {
			out.Errors = append(out.Errors, fmt.Sprintf("rule %s: %v", r.Name, err))
			continue
		}
		if !matched {
			continue
		}
		data.Rule, data.Score = r.Name, out.Total
		reason := Reason{Rule: r.Name}
		if r.kind == kindScore {
			reason.Score = r.points
			out.Score += r.points
			out.Total += r.points
			data.Score = out.Total
		}
		if r.detail != nil {
			d, err := render(r.detail, data, maxReplyText)
			if err != nil {
				out.Errors = append(out.Errors, fmt.Sprintf("rule %s: detail: %v", r.Name, err))
			}
			reason.Detail = d
		}
		out.Reasons = append(out.Reasons, reason)
		switch r.kind {
		case kindScore, kindContinue:
		case kindHeader:
			out.addHeader(r.Name, r.header, data)
		case kindTerminal:
			out.decide(Action(r.Action), r.Name, r.reply, f.Stage, data)
			return out
		}
	}

	for _, t := range st.thresholds {
		if out.Total < t.score || (t.action == ActionGreylist && f.Greylist != "") {
			continue
		}
		name := "threshold:" + t.name
		lz.before(t.needs, env, f, st.use)
		env.Score = out.Total
		matched, err := env.run(t.cond)
		if steps != nil {
			s := Step{Rule: name, Matched: matched}
			if err != nil {
				s.Err = err.Error()
			}
			*steps = append(*steps, s)
		}
		if err != nil {
			out.Errors = append(out.Errors, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		if !matched {
			continue
		}
		data.Rule, data.Score = name, out.Total
		out.Reasons = append(out.Reasons, Reason{Rule: name,
			Detail: "score " + fmtScore(out.Total) + " >= " + fmtScore(t.score)})
		if t.action == ActionContinue {
			out.addHeader(name, t.header, data)
			continue
		}
		out.decide(t.action, name, t.reply, f.Stage, data)
		return out
	}
	return out
}

// run evaluates a condition; nil always holds.
func (env *Env) run(p *vm.Program) (bool, error) {
	if p == nil {
		return true, nil
	}
	v, err := env.vm.Run(p, env)
	if err != nil {
		return false, err
	}
	b, _ := v.(bool)
	return b, nil
}

func (out *Outcome) addHeader(rule string, h headerTmpl, data TemplateData) {
	v, err := render(h.value, data, maxHeaderValue)
	if err != nil {
		out.Errors = append(out.Errors, fmt.Sprintf("%s: header: %v", rule, err))
		return
	}
	out.Headers = append(out.Headers, Header{Name: h.name, Value: v})
}

func (out *Outcome) decide(a Action, rule string, r replyTmpl, stage Stage, data TemplateData) {
	out.Action = a
	out.Rule = rule
	if a == ActionAccept {
		out.Scope = scopeOf(stage)
	}
	if r.code == 0 {
		return
	}
	out.Reply = Reply{Code: r.code, Enhanced: r.enhanced, Text: r.deftext}
	out.DefaultReply = !r.given
	if r.text != nil {
		t, err := render(r.text, data, maxReplyText)
		if err != nil {
			out.Errors = append(out.Errors, fmt.Sprintf("%s: reply: %v", rule, err))
		} else if t != "" {
			out.Reply.Text = t
		}
	}
}

// fmtScore is f with two decimals at most and no trailing zeros: "%.2f"
// trimmed.
func fmtScore(f float64) string {
	var buf [32]byte
	b := strconv.AppendFloat(buf[:0], f, 'f', 2, 64) // fmt's %.2f
	b = bytes.TrimRight(b, "0")
	b = bytes.TrimSuffix(b, []byte("."))
	return string(b)
}

// Rules describes every rule in load order.
func (e *Engine) Rules() []RuleInfo { return slices.Clone(e.rules) }

// List returns the named list.
func (e *Engine) List(name string) (*List, bool) {
	l, ok := e.lists[name]
	return l, ok
}

// Lists returns the names of the declared lists, sorted.
func (e *Engine) Lists() []string {
	out := make([]string, 0, len(e.lists))
	for n := range e.lists {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Zones returns the DNSBL/DNSWL zones the conditions name, sorted: the
// daemon's configuration should query each of them (a zone it does not
// query reads as "not listed").
func (e *Engine) Zones() []string { return slices.Clone(e.zones) }

// Files returns every file the engine was loaded from: rule files, then
// list files.
func (e *Engine) Files() []string { return slices.Clone(e.files) }

// Dir is the directory the rules were loaded from.
func (e *Engine) Dir() string { return e.dir }

// Digest identifies the content of the rule and list files (SHA-256, hex):
// two engines with the same digest were loaded from the same text.
func (e *Engine) Digest() string { return e.digest }

// LoadedAt is when the engine was loaded.
func (e *Engine) LoadedAt() time.Time { return e.loaded }

// Summary is one line about the engine, for `gatewayd rules check` and
// logs: rule counts by stage, thresholds and lists.
func (e *Engine) Summary() string {
	var per []string
	n := 0
	for _, s := range Stages {
		c := len(e.stages[stageIndex[s]].rules)
		n += c
		if c > 0 {
			per = append(per, fmt.Sprintf("%s %d", s, c))
		}
	}
	entries := 0
	for _, l := range e.lists {
		entries += l.Len()
	}
	detail := ""
	if len(per) > 0 {
		detail = " (" + strings.Join(per, ", ") + ")"
	}
	return fmt.Sprintf("%d %s%s, %d %s, %d %s with %d %s, digest %.12s",
		n, plural(n, "rule", "rules"), detail, e.nthresh, plural(e.nthresh, "threshold", "thresholds"),
		len(e.lists), plural(len(e.lists), "list", "lists"), entries, plural(entries, "entry", "entries"), e.digest)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
