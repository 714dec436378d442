package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/expr-lang/expr/ast"

	"github.com/mxgate/gatewayd/checks"
)

// What a condition can be sure never holds: a fact read before the stage
// that has it, a result compared with a value the check never gives, a
// domainbl key that does not exist. Such a condition loads silently and
// never matches (or always does, with !=), so these are load errors.

// factFrom is the first stage at which a variable or function of the
// conditions has a value; those not named have one from connect on.
// The gateway fills Facts stage by stage: HELO gives helo and TLS, MAIL
// the sender and SPF (started there), RCPT the recipient and the
// greylisting state, DATA the message and what is checked on it (DKIM,
// DMARC, the From domain in the domain lists).
var factFrom = map[string]Stage{
	"helo": StageHelo, "tls": StageHelo, "tls_version": StageHelo, "domainbl": StageHelo,
	"mail_from": StageMail, "mail_from_domain": StageMail, "null_sender": StageMail, "spf": StageMail,
	"rcpt": StageRcpt, "rcpt_domain": StageRcpt, "rcpts": StageRcpt, "greylist": StageRcpt,
	"header": StageData, "headers": StageData, "size": StageData, "dkim": StageData,
	"dkim_pass_domain": StageData, "dmarc": StageData,
}

// templateFactFrom is factFrom for the fields and methods of TemplateData.
var templateFactFrom = map[string]Stage{
	"Helo": StageHelo, "TLS": StageHelo, "TLSVersion": StageHelo, "DomainBL": StageHelo,
	"MailFrom": StageMail, "MailFromDomain": StageMail, "NullSender": StageMail, "SPF": StageMail,
	"Rcpt": StageRcpt, "RcptDomain": StageRcpt, "Rcpts": StageRcpt, "Greylist": StageRcpt,
	"Header": StageData, "HeaderValues": StageData, "HeaderValue": StageData, "Size": StageData,
	"DKIM": StageData, "DMARC": StageData,
}

// domainBLKeys are what the domain lists look up, and from which stage.
var domainBLKeys = map[string]Stage{"helo": StageHelo, "mail_from": StageMail, "from": StageData}

// factMissing says why name (as the rule writes it) has no value at any
// of stages, "" when it has one at one of them.
func factMissing(name string, from Stage, stages []Stage) string {
	if len(stages) == 0 {
		return ""
	}
	for _, s := range stages {
		if stageIndex[s] >= stageIndex[from] {
			return ""
		}
	}
	at := string(stages[0])
	if len(stages) > 1 {
		at = "s " + strings.Join(stageNames(stages), " and ")
	} else {
		at = " " + at
	}
	return fmt.Sprintf("%s has no value yet at stage%s: it has one from %s on", name, at, from)
}

func stageNames(ss []Stage) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = string(s)
	}
	return out
}

// The values of the result fields, as the checks give them ("" when the
// check did not run).
var (
	spfResults  = []string{"", string(checks.SPFNone), string(checks.SPFNeutral), string(checks.SPFPass), string(checks.SPFFail), string(checks.SPFSoftFail), string(checks.SPFTempError), string(checks.SPFPermError)}
	dmarcResult = []string{"", string(checks.DMARCNone), string(checks.DMARCPass), string(checks.DMARCFail), string(checks.DMARCTempError), string(checks.DMARCPermError)}
	dkimResults = []string{string(checks.DKIMNone), string(checks.DKIMPass), string(checks.DKIMFail), string(checks.DKIMNeutral), string(checks.DKIMTempError), string(checks.DKIMPermError)}
	dmarcPolicy = []string{"", "none", "quarantine", "reject"}
	zoneStatus  = []string{"", string(checks.Listed), string(checks.NotListed), string(checks.ListTemp), string(checks.ListError)}

	// knownValues are the values of fields of the conditions, by the
	// field as written: "spf.result", "dnsbl[].status".
	knownValues = map[string][]string{
		"spf.result":               spfResults,
		"spf.identity":             {"", checks.IdentityMailFrom, checks.IdentityHelo},
		"iprev.result":             {"", "pass", "fail", "temperror", "permerror"}, // checks.IPRev
		"dmarc.result":             dmarcResult,
		"dmarc.policy":             dmarcPolicy,
		"dmarc.applied":            dmarcPolicy,
		"dnsbl[].status":           zoneStatus,
		"dnsbl[].kind":             {"", checks.KindIP, checks.KindDomain},
		"dnsbl[].type":             {"", checks.TypeBlock, checks.TypeAllow},
		"domainbl[][].status":      zoneStatus,
		"domainbl[][].kind":        {"", checks.KindIP, checks.KindDomain},
		"domainbl[][].type":        {"", checks.TypeBlock, checks.TypeAllow},
		"greylist":                 {"", "pass", "defer", "allowed", "autoallowed", "failopen"},
		"stage":                    stageNames(Stages),
		"tls_version":              {"", "TLS1.0", "TLS1.1", "TLS1.2", "TLS1.3"}, // tls.VersionName without the space
		"dkim.signatures[].result": dkimResults,
	}
)

// property is the name of a member access with a literal name
// (spf.result, spf["result"]), "" for another.
func property(m *ast.MemberNode) string {
	if s, ok := m.Property.(*ast.StringNode); ok {
		return s.Value
	}
	return ""
}

func unchain(n ast.Node) ast.Node {
	for {
		c, ok := n.(*ast.ChainNode)
		if !ok {
			return n
		}
		n = c.Node
	}
}

func isIdent(n ast.Node, name string) bool {
	id, ok := unchain(n).(*ast.IdentifierNode)
	return ok && id.Value == name
}

// fieldOf names the field n reads as in knownValues, "" for another
// expression. elems maps the # of a closure to the list it ranges over.
func fieldOf(n ast.Node, elems map[*ast.PointerNode]ast.Node) string {
	switch x := unchain(n).(type) {
	case *ast.IdentifierNode:
		return x.Value
	case *ast.MemberNode:
		p := property(x)
		if p == "" {
			return ""
		}
		switch y := unchain(x.Node).(type) {
		case *ast.IdentifierNode:
			return y.Value + "." + p
		case *ast.PointerNode:
			// .result in any(dkim.signatures, .result == "fail")
			if y.Name == "" && fieldOf(elems[y], elems) == "dkim.signatures" {
				return "dkim.signatures[]." + p
			}
		case *ast.MemberNode:
			if isIdent(y.Node, "dnsbl") {
				return "dnsbl[]." + p
			}
			if z, ok := unchain(y.Node).(*ast.MemberNode); ok {
				switch {
				case isIdent(z.Node, "domainbl"):
					return "domainbl[][]." + p
				case isIdent(z.Node, "dkim") && property(z) == "signatures":
					return "dkim.signatures[]." + p
				}
			}
		}
	}
	return ""
}

// closureElems maps the # of every closure of tree to the list its
// builtin ranges over (the innermost closure's).
func closureElems(tree *ast.Node) map[*ast.PointerNode]ast.Node {
	elems := map[*ast.PointerNode]ast.Node{}
	ast.Walk(tree, visitFunc(func(n *ast.Node) {
		b, ok := (*n).(*ast.BuiltinNode)
		if !ok || len(b.Arguments) < 2 {
			return
		}
		for _, a := range b.Arguments[1:] {
			if p, ok := a.(*ast.PredicateNode); ok {
				// ast.Walk visits inner closures first: their # are set.
				ast.Walk(&p.Node, visitFunc(func(n *ast.Node) {
					if ptr, ok := (*n).(*ast.PointerNode); ok && ptr.Name == "" && elems[ptr] == nil {
						elems[ptr] = b.Arguments[0]
					}
				}))
			}
		}
	}))
	return elems
}

type visitFunc func(*ast.Node)

func (f visitFunc) Visit(n *ast.Node) { f(n) }

// checkValues checks the string literals compared with a field of known
// values: field == "x", "x" != field, field in ["x", "y"].
func (w *condWalker) checkValues(b *ast.BinaryNode) {
	check := func(field ast.Node, lits ...ast.Node) {
		name := fieldOf(field, w.elems)
		values, ok := knownValues[name]
		if !ok {
			return
		}
		for _, l := range lits {
			s, ok := l.(*ast.StringNode)
			if ok && !slices.Contains(values, s.Value) {
				quoted := make([]string, len(values))
				for i, v := range values {
					quoted[i] = fmt.Sprintf("%q", v)
				}
				w.errAt(s, "%s is never %q (its values: %s)", strings.ReplaceAll(name, "[]", "[...]"), s.Value, strings.Join(quoted, ", "))
			}
		}
	}
	switch b.Operator {
	case "==", "!=":
		check(b.Left, b.Right)
		check(b.Right, b.Left)
	case "in":
		if a, ok := b.Right.(*ast.ArrayNode); ok {
			check(b.Left, a.Nodes...)
		}
	}
}

// checkDomainBLKey checks the key of domainbl["zone"]["key"].
func (w *condWalker) checkDomainBLKey(m *ast.MemberNode) {
	inner, ok := unchain(m.Node).(*ast.MemberNode)
	if !ok || !isIdent(inner.Node, "domainbl") {
		return
	}
	s, ok := m.Property.(*ast.StringNode)
	if !ok {
		return
	}
	from, known := domainBLKeys[s.Value]
	if !known {
		w.errAt(s, "domainbl has no key %q (the keys: \"helo\", \"mail_from\", \"from\")", s.Value)
		return
	}
	if why := factMissing(fmt.Sprintf("domainbl[...][%q]", s.Value), from, w.stages); why != "" {
		w.errAt(s, "%s", why)
	}
}
