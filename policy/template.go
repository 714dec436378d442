package policy

import (
	"errors"
	"strings"
	"text/template"
	"text/template/parse"
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
// and the functions lower, upper, join (join LIST SEP) and printf.
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

var templateFuncs = template.FuncMap{
	"lower": strings.ToLower,
	"upper": strings.ToUpper,
	"join":  func(l []string, sep string) string { return strings.Join(l, sep) },
}

// parseTemplate parses src and tries it on empty facts, so that a field
// that does not exist ({{ .ClientAddr }}) is a load error rather than a
// reply that fails in production.
func parseTemplate(name, src string) (*template.Template, NeedSet, error) {
	t, err := template.New(name).Funcs(templateFuncs).Option("missingkey=zero").Parse(src)
	if err != nil {
		return nil, NeedSet{}, cleanTemplateErr(err)
	}
	var sb strings.Builder
	if err := t.Execute(&sb, TemplateData{Facts: &Facts{}}); err != nil {
		msg := err.Error()
		if strings.Contains(msg, "can't evaluate field") || strings.Contains(msg, "wrong number of args") {
			return nil, NeedSet{}, cleanTemplateErr(err)
		}
	}
	var n NeedSet
	if t.Tree != nil {
		walkTemplate(t.Tree.Root, &n)
	}
	return t, n, nil
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
// most max octets: control characters (CR and LF among them, so a TXT
// record or a header cannot inject lines) become spaces.
func render(t *template.Template, d TemplateData, max int) (string, error) {
	var sb strings.Builder
	if err := t.Execute(&sb, d); err != nil {
		return "", cleanTemplateErr(err)
	}
	return oneLine(sb.String(), max), nil
}

func oneLine(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}
