package policy_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mxgate/gatewayd/policy"
)

// TestLoadErrors loads each directory of testdata/errors and compares every
// error with its golden text: the file, line and column, and why.
func TestLoadErrors(t *testing.T) {
	tests := []struct {
		dir  string
		want []string // without the "testdata/errors/DIR/" prefix
	}{
		{"unknown_field", []string{
			`rules.yaml:4:5: rule "r1": unknown field "actoin" (want name, stage, if, action, reply, score, header, detail, description)`}},
		{"syntax", []string{
			`rules.yaml:4:31: rule "r1": if: unexpected token EOF`}},
		{"unknown_variable", []string{
			`rules.yaml:4:33: rule "r1": if: unknown name spff`}},
		{"not_bool", []string{
			`rules.yaml:4:10: rule "r1": if: a condition must be true or false, this one is float64`}},
		{"type_error", []string{
			`rules.yaml:4:14: rule "r1": if: invalid operation: > (mismatched types int64 and string)`}},
		{"block_scalar", []string{
			`rules.yaml:6:18: rule "r1": if: type policy.DMARC has no field resutl`}},
		{"folded_scalar", []string{
			`rules.yaml:5:13: rule "r1": if: type policy.DMARC has no field resutl`}},
		{"duplicate_name", []string{
			`20-b.yaml:5:11: rule "same": duplicate name, first defined at testdata/errors/duplicate_name/10-a.yaml:2:11`}},
		{"unknown_list", []string{
			`rules.yaml:6:55: rule "r1": if: unknown list "unknown" (declared: known)`}},
		{"list_name_not_literal", []string{
			`rules.yaml:4:17: rule "r1": if: in_list: the list name must be a literal string`}},
		{"bad_network", []string{
			`rules.yaml:4:26: rule "r1": if: ip_in: "192.0.2.0/40" is not a network: netip.ParsePrefix("192.0.2.0/40"): prefix length out of range`}},
		{"bad_codes", []string{
			`rules.yaml:4:40: rule "r1": if: dnsbl_code: "banana" is not an IPv4 address`}},
		{"reject_4xx", []string{
			`rules.yaml:5:19: rule "r1": a reject needs a 5xx code, not 451 (use defer for a 4xx)`}},
		{"defer_5xx", []string{
			`rules.yaml:5:12: rule "r1": a defer needs a 4xx code, not 550 (use reject for a 5xx)`}},
		{"enhanced_mismatch", []string{
			`rules.yaml:6:13: rule "r1": reply: enhanced code "4.7.1" disagrees with reply code 550 (class 4 vs 5xx)`}},
		// RFC 3463: digits only, no leading zeros, class 2, 4 or 5.
		{"enhanced_syntax", []string{
			`rules.yaml:5:34: rule "sign": reply.enhanced: enhanced code "5.+7.1": the subject "+7" is not a number of 1 to 3 digits`,
			`rules.yaml:9:34: rule "minus": reply.enhanced: enhanced code "5.-0.1": the subject "-0" is not a number of 1 to 3 digits`,
			`rules.yaml:13:12: rule "zeros": reply: enhanced code "4.07.001": the subject "07" has a leading zero`,
			`rules.yaml:17:34: rule "too_long": reply.enhanced: enhanced code "5.7.1000": the detail "1000" is not a number of 1 to 3 digits`,
			`rules.yaml:21:34: rule "class": reply.enhanced: enhanced code "3.0.0": class must be 2, 4 or 5`,
			`rules.yaml:25:12: rule "short_sign": reply: enhanced code "5.+7.1": the subject "+7" is not a number of 1 to 3 digits`}},
		{"connect_code", []string{
			`rules.yaml:5:12: rule "r1": at connect a reject is 554 (RFC 5321 section 3.1), not 550`}},
		{"action_stage", []string{
			`rules.yaml:4:13: rule "grey_at_connect": action greylist is not allowed at stage connect (greylisting needs a recipient: use it at rcpt; allowed there: accept, reject, defer, score, continue)`,
			`rules.yaml:7:13: rule "quarantine_at_rcpt": action quarantine is not allowed at stage rcpt (there is no message before data; allowed there: accept, reject, defer, greylist, drop, score, continue)`,
			`rules.yaml:10:13: rule "header_at_mail": action add_header is not allowed at stage mail (headers go on the message: use it at data, where the facts of earlier stages are still visible; allowed there: accept, reject, defer, drop, score, continue)`}},
		{"bad_template", []string{
			`rules.yaml:5:12: rule "r1": reply text: reply:1: unclosed action`}},
		{"template_field", []string{
			`rules.yaml:5:30: rule "r1": reply text: TemplateData has no field or method HeloName`}},
		// What could never hold: result values the checks never give, a
		// domainbl key that does not exist, facts read before the stage
		// that has them (in conditions and in texts).
		{"never_true", []string{
			`rules.yaml:5:54: rule "spf_case": if: spf.result is never "Fail" (its values: "", "none", "neutral", "pass", "fail", "softfail", "temperror", "permerror")`,
			`rules.yaml:6:65: rule "iprev_spelling": if: iprev.result is never "temp_error" (its values: "", "pass", "fail", "temperror", "permerror")`,
			`rules.yaml:7:68: rule "in_array": if: iprev.result is never "perm_error" (its values: "", "pass", "fail", "temperror", "permerror")`,
			`rules.yaml:8:40: rule "reversed": if: dmarc.applied is never "quarantined" (its values: "", "none", "quarantine", "reject")`,
			`rules.yaml:9:82: rule "zone_status": if: dnsbl[...].status is never "error" (its values: "", "listed", "notlisted", "temperror", "zoneerror")`,
			`rules.yaml:10:76: rule "dkim_closure": if: dkim.signatures[...].result is never "passed" (its values: "none", "pass", "fail", "neutral", "temperror", "permerror")`,
			`rules.yaml:11:71: rule "dkim_index": if: dkim.signatures[...].result is never "ok" (its values: "none", "pass", "fail", "neutral", "temperror", "permerror")`,
			`rules.yaml:12:58: rule "greylist_value": if: greylist is never "passed" (its values: "", "pass", "defer", "allowed", "autoallowed", "failopen")`,
			`rules.yaml:13:58: rule "tls_version": if: tls_version is never "TLSv1.3" (its values: "", "TLS1.0", "TLS1.1", "TLS1.2", "TLS1.3")`,
			`rules.yaml:14:68: rule "domainbl_key": if: domainbl has no key "mailfrom" (the keys: "helo", "mail_from", "from")`,
			`rules.yaml:15:89: rule "domainbl_status": if: domainbl[...][...].status is never "listd" (its values: "", "listed", "notlisted", "temperror", "zoneerror")`,
			`rules.yaml:16:70: rule "domainbl_early": if: domainbl[...]["from"] has no value yet at stage helo: it has one from data on`,
			`rules.yaml:17:45: rule "dmarc_at_rcpt": if: dmarc has no value yet at stage rcpt: it has one from data on`,
			`rules.yaml:18:43: rule "spf_at_helo": if: spf has no value yet at stage helo: it has one from mail on`,
			`rules.yaml:19:46: rule "header_at_mail": if: header() has no value yet at stage mail: it has one from data on`,
			`rules.yaml:20:50: rule "helo_at_connect": if: helo has no value yet at stage connect: it has one from helo on`,
			`rules.yaml:21:44: rule "size_at_rcpt": if: size has no value yet at stage rcpt: it has one from data on`,
			`rules.yaml:22:38: rule "env": if: $env is not allowed in conditions: name the variables (what a condition reads decides which checks run, and at which stage it has a value)`,
			`rules.yaml:23:87: rule "reply_stage": reply text: .SPF has no value yet at stage helo: it has one from mail on`,
			`rules.yaml:24:69: rule "detail_stage": detail: .HeaderValue has no value yet at stage rcpt: it has one from data on`,
			`rules.yaml:33:29: threshold greylist: if: dmarc has no value yet at stage rcpt: it has one from data on`}},
		// Conditions may not build data without bound.
		{"cond_unbounded", []string{
			`rules.yaml:3:42: rule "reduce": if: reduce is not allowed in conditions: it accumulates a value without bound`,
			`rules.yaml:3:50: rule "reduce": if: the range operator .. is allowed only as x in 1..10, with literal bounds (elsewhere it builds a list of any length)`,
			`rules.yaml:4:42: rule "range": if: the range operator .. is allowed only as x in 1..10, with literal bounds (elsewhere it builds a list of any length)`,
			`rules.yaml:5:45: rule "repeat": if: repeat is not allowed in conditions: it multiplies a text`,
			`rules.yaml:6:39: rule "replace": if: replace is not allowed in conditions: it can multiply a text (replace(s, "", t) puts t between every character)`,
			`rules.yaml:7:36: rule "join": if: join is not allowed in conditions: it puts its separator between every element, and can multiply a text`,
			`rules.yaml:8:35: rule "map": if: any over split is not allowed in conditions: it runs once per piece of a text the sender writes, which has no bound (test the text with contains, matches or in_list instead)`,
			`rules.yaml:8:39: rule "map": if: map is not allowed in conditions: it builds a list of new values (test them with any, all, filter or count instead)`,
			`rules.yaml:8:79: rule "map": if: + of texts is not allowed inside a closure: it copies a text for every element (compare the parts instead)`,
			`rules.yaml:9:35: rule "let": if: let is not allowed in conditions: a variable used twice doubles what it holds (let a = helo + helo; let b = a + a; ...)`,
			`rules.yaml:9:56: rule "let": if: let is not allowed in conditions: a variable used twice doubles what it holds (let a = helo + helo; let b = a + a; ...)`,
			`rules.yaml:10:39: rule "to_json": if: toJSON is not allowed in conditions: it can build a text larger than what it reads`,
			`rules.yaml:10:46: rule "to_json": if: toJSON is not allowed in conditions: it can build a text larger than what it reads`,
			`rules.yaml:10:53: rule "to_json": if: toJSON is not allowed in conditions: it can build a text larger than what it reads`,
			`rules.yaml:11:43: rule "sort_by": if: sortBy is not allowed in conditions: it builds a new value for every element`,
			`rules.yaml:11:86: rule "sort_by": if: + of texts is not allowed inside a closure: it copies a text for every element (compare the parts instead)`,
			`rules.yaml:12:46: rule "from_pairs": if: fromPairs is not allowed in conditions: it is not one of the builtins a condition may use`,
			`rules.yaml:13:81: rule "in_range": if: x in a..b is allowed only for an x of type int (here float64): write x >= a && x <= b`,
			`rules.yaml:14:62: rule "not_literal": if: the range operator .. is allowed only as x in 1..10, with literal bounds (elsewhere it builds a list of any length)`,
			`rules.yaml:15:50: rule "in_range_size": if: x in a..b is allowed only for an x of type int (here int64): write x >= a && x <= b`,
			`rules.yaml:16:42: rule "over_split": if: any over split is not allowed in conditions: it runs once per piece of a text the sender writes, which has no bound (test the text with contains, matches or in_list instead)`,
			`rules.yaml:17:58: rule "nested3": if: closures may nest 2 deep at most (each level multiplies the steps by the length of its list)`,
			`rules.yaml:17:62: rule "nested3": if: headers("Cc") is run over in a closure over headers("To"): the sender sets the length of both lists, and the steps are their product (up to 1,000,000 for two headers()); there, use it only with len, first, last, get or [i]`,
			`rules.yaml:17:81: rule "nested3": if: headers("Bcc") is run over in a closure over headers("Cc"): the sender sets the length of both lists, and the steps are their product (up to 1,000,000 for two headers()); there, use it only with len, first, last, get or [i]`,
			`rules.yaml:18:79: rule "concat": if: + of texts is not allowed inside a closure: it copies a text for every element (compare the parts instead)`}},
		// Every field chain, call and function of every branch.
		{"template_check", []string{
			`rules.yaml:4:100: rule "after_nil": reply text: TemplateData has no field or method ClientAddr`,
			`rules.yaml:5:94: rule "in_if": reply text: checks.SPFResult has no field or method Domian (it has Result, Domain, Identity, Sender, Helo, IP, Mechanism, Err, ReceivedSPF)`,
			`rules.yaml:6:105: rule "in_else": reply text: TemplateData has no field or method Tls`,
			`rules.yaml:7:96: rule "in_with": reply text: checks.DMARCResult has no field or method Domian (it has Result, Domain, OrgDomain, RecordDomain, Record, Policy, Applied, Pct, Sampled, SPFAlignment, DKIMAlignment, SPFAligned, DKIMAligned, AlignedDKIMDomain, FromAddresses, Reason)`,
			`rules.yaml:8:92: rule "arg_type": reply text: .ZoneReason: 5 cannot be an argument of type string`,
			`rules.yaml:9:81: rule "too_few": reply text: wrong number of arguments for .ZoneReason: want 1, got 0`,
			`rules.yaml:10:88: rule "too_many": reply text: wrong number of arguments for .ZoneReason: want 1, got 2`,
			`rules.yaml:11:82: rule "field_args": reply text: .MailFrom is a field of TemplateData, not a method: it takes no arguments`,
			`rules.yaml:12:76: rule "method_in_chain": detail: wrong number of arguments for .ReceivedSPF: want 1, got 0`,
			`rules.yaml:13:101: rule "map_elem": detail: checks.ZoneResult has no field or method Reasn (it has Zone, Kind, Type, Subject, Query, Status, Listed, Codes, Reason, Weight, Error)`,
			`rules.yaml:14:72: rule "no_fields": detail: float64 has no field or method Value`,
			`rules.yaml:15:76: rule "wrong_type": detail: lower: wrong type of argument: want string, got Stage`,
			`rules.yaml:16:69: rule "unknown_func": detail: unknown function title (functions: lower, upper, join, print, printf, println, html, js, urlquery, and, or, not, eq, ne, lt, le, gt, ge, len, index, slice)`,
			`rules.yaml:17:61: rule "call": detail: call is not allowed (there are no functions to call in the facts)`,
			`rules.yaml:18:80: rule "template": reply text: template "nope" is not allowed (a template may not call templates)`,
			`rules.yaml:19:62: rule "block": detail: block "b" is not allowed (a template may not call templates)`,
			`rules.yaml:20:65: rule "redefine": detail: define "detail" is not allowed (a template may not call templates)`,
			`rules.yaml:28:42: rule "multi_line": header.value: []checks.DKIMSignature has no field or method Domain`,
			`rules.yaml:30:64: threshold reject: reply text: TemplateData has no field or method Scor`}},
		// Templates may not loop or allocate without bound.
		{"template_loop", []string{
			`rules.yaml:7:36: rule "range_int": header.value: range is not allowed (a template may not loop: a reply is one line)`,
			`rules.yaml:11:49: rule "range_in_if": header.value: range is not allowed (a template may not loop: a reply is one line)`,
			`rules.yaml:15:37: rule "call_template": reply text: template "nope" is not allowed (a template may not call templates)`,
			`rules.yaml:19:34: rule "define": reply text: define "x" is not allowed (a template may not call templates)`,
			`rules.yaml:23:17: rule "format_var": detail: printf: the format must be a literal string`,
			`rules.yaml:27:28: rule "format_width": detail: printf format "%999999999d": a width or precision is at most 999`,
			`rules.yaml:31:24: rule "format_star": detail: printf format "%*d": a width or precision from an argument (*) is not allowed`}},
		{"unknown_stage", []string{
			`rules.yaml:3:12: rule "r1": unknown stage "conect" (want one of connect, helo, mail, rcpt, data)`}},
		{"bad_list_entries", []string{
			`nets.txt:3:3: list "nets": "198.51.100.0/33" is not a network: netip.ParsePrefix("198.51.100.0/33"): prefix length out of range`,
			`nets.txt:5:1: list "nets": "not-an-ip" is not an address or network`}},
		{"missing_list_file", []string{
			`rules.yaml:4:11: list "nets": open testdata/errors/missing_list_file/lists/nope.txt: no such file or directory`}},
		{"comment_in_condition", []string{
			`rules.yaml:4:28: rule "r1": if: unexpected token EOF (in YAML " #" starts a comment: put the condition in quotes)`}},
		{"mixed_list", []string{
			`rules.yaml:5:29: list "nets": "192.0.2.300" is not an address or network`,
			`rules.yaml:6:12: list "empty_ok" must be a mapping (key: value), not empty`,
			`nets.txt:2:1: list "nets": "10.0.0.0/99" is not a network: netip.ParsePrefix("10.0.0.0/99"): prefix length out of range`}},
		{"bad_yaml", []string{
			`rules.yaml:1: not valid YAML: did not find expected '-' indicator`}},
		{"duplicate_threshold", []string{
			`20-b.yaml:2:3: threshold reject: defined twice, first at testdata/errors/duplicate_threshold/10-a.yaml:2:3`}},
		{"score_missing", []string{
			`rules.yaml:4:13: rule "r1": action score needs score: POINTS (negative to lower the score)`,
			`rules.yaml:8:12: rule "r2": score must be a number, not "lots"`}},
		{"header_name", []string{
			`rules.yaml:5:20: rule "r1": header.name "Bad Name" is not a header field name`,
			`rules.yaml:9:20: rule "r2": header.name "Received" is written by the gateway itself`}},
		// Every problem of a load is reported, not only the first.
		{"many", []string{
			`rules.yaml:2:14: list "l1": unknown list type "nosuch" (want cidr, domain, address or regex)`,
			`rules.yaml:7:5: a rule without a name (every rule needs a unique name, for the logs)`,
			`rules.yaml:9:11: rule "bad one": a name is letters, digits, _ . and -`,
			`rules.yaml:11:13: rule "bad one": unknown action "explode" (want accept, reject, defer, greylist, drop, quarantine, score, add_header, continue)`,
			`rules.yaml:14:9: rule "r3": if: unknown name nosuch`,
			`rules.yaml:16:24: rule "r3": reply: unknown field "txt" (want code, enhanced, text)`,
			`rules.yaml:18:19: threshold reject: score must be a number, not "ten"`,
			`rules.yaml:19:3: thresholds: unknown threshold "maybe" (want greylist, reject, quarantine, add_header)`,
			`rules.yaml:20:1: unknown top-level field "unknown" (want rules, lists, thresholds)`}},
	}
	for _, tc := range tests {
		t.Run(tc.dir, func(t *testing.T) {
			dir := filepath.Join("testdata", "errors", tc.dir)
			e, err := policy.Load(dir)
			if err == nil {
				t.Fatalf("loaded %d rules, want errors", len(e.Rules()))
			}
			if e != nil {
				t.Error("an engine came back with the errors")
			}
			var le *policy.LoadError
			if !errors.As(err, &le) {
				t.Fatalf("error %T %v is not a *LoadError", err, err)
			}
			var got []string
			for _, x := range le.Errors {
				got = append(got, strings.TrimPrefix(x.Error(), dir+string(filepath.Separator)))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestDocExamplesLoad loads the rule examples of the README and of the
// package documentation: what the loader refuses must not be in them.
func TestDocExamplesLoad(t *testing.T) {
	var examples []string
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, block := range strings.Split(string(readme), "```yaml\n")[1:] {
		block, _, _ = strings.Cut(block, "```")
		if strings.HasPrefix(block, "lists:") || strings.HasPrefix(block, "rules:") || strings.HasPrefix(block, "thresholds:") {
			examples = append(examples, block)
		}
	}
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	for _, line := range strings.Split(string(doc), "\n") {
		if rest, ok := strings.CutPrefix(line, "//\t"); ok {
			sb.WriteString(rest + "\n")
		} else if sb.Len() > 0 {
			break // the first example only: the others are not rule files
		}
	}
	examples = append(examples, sb.String())
	if len(examples) < 2 {
		t.Fatalf("%d examples found", len(examples))
	}
	for i, ex := range examples {
		if !strings.Contains(ex, "rules:") {
			t.Errorf("example %d has no rules:\n%s", i, ex)
		}
		dir := t.TempDir()
		write(t, dir, "rules.yaml", ex)
		write(t, dir, "lists/allow_networks.txt", "")
		if _, err := policy.Load(dir); err != nil {
			t.Errorf("example %d does not load: %v\n%s", i, err, ex)
		}
	}
}

func TestLoadUnknownZone(t *testing.T) {
	_, err := policy.LoadOptions("testdata/actions", policy.Options{Zones: []string{"zen.spamhaus.org"}})
	want := `testdata/actions/10-connect.yaml:9:15: rule "connect_zone_error": if: zone "bl.test" is not configured in dnsbl.zones`
	if err == nil || !strings.HasPrefix(err.Error(), "3 errors in rules:\n"+want+"\n") {
		t.Errorf("got %v\nwant first %s", err, want)
	}
	if _, err := policy.LoadOptions("testdata/actions", policy.Options{Zones: []string{"BL.test."}}); err != nil {
		t.Errorf("configured zone: %v", err)
	}
}

func TestLoadMissingDir(t *testing.T) {
	_, err := policy.Load("testdata/nosuch")
	if err == nil || !strings.HasPrefix(err.Error(), "testdata/nosuch: reading the rules directory: ") {
		t.Errorf("got %v", err)
	}
}

func TestLoadEmptyAndIgnoredFiles(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "empty.yaml", "")
	write(t, dir, "comments.yml", "# nothing yet\n")
	write(t, dir, ".hidden.yaml", "garbage: [")
	write(t, dir, "README.txt", "not rules")
	write(t, dir, "rules.yaml~", "garbage: [")
	e, err := policy.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(e.Rules()); n != 0 {
		t.Errorf("%d rules", n)
	}
	if got := e.Evaluate(facts(policy.StageConnect)); got.Action != policy.ActionContinue {
		t.Errorf("empty engine: %+v", got)
	}
}

func TestSummaryAndInfo(t *testing.T) {
	e, err := policy.Load("testdata/actions")
	if err != nil {
		t.Fatal(err)
	}
	want := "30 rules (connect 6, helo 4, mail 6, rcpt 6, data 8), 4 thresholds, 4 lists with 9 entries, digest " + e.Digest()[:12]
	if got := e.Summary(); got != want {
		t.Errorf("Summary() = %q\nwant %q", got, want)
	}
	r := e.Rules()[0]
	if r.Name != "connect_allow" || r.Stage != policy.StageConnect || r.Action != "accept" ||
		r.File != filepath.Join("testdata", "actions", "10-connect.yaml") || r.Line != 2 ||
		r.Condition != `in_list("allow_networks", client_ip)` {
		t.Errorf("first rule %+v", r)
	}
	if got := e.Lists(); !slices.Equal(got, []string{"allow_networks", "bad_senders", "good_domains", "trap_rcpts"}) {
		t.Errorf("Lists() = %v", got)
	}
	if l, ok := e.List("allow_networks"); !ok || l.Len() != 3 || l.Type != policy.ListCIDR || !l.Contains("192.0.2.1") {
		t.Errorf("List(allow_networks) = %+v", l)
	}
	if n := len(e.Files()); n != 9 {
		t.Errorf("Files() = %v", e.Files())
	}
}

// TestLoadSecondDocument: a rule file is one YAML document. The rules of a
// second one (after ---) were silently never read, a condition that does
// not compile included; a trailing --- alone is fine.
func TestLoadSecondDocument(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "10-two.yaml", "rules:\n  - name: a\n    stage: rcpt\n    action: reject\n---\nrules:\n  - name: b\n    stage: rcpt\n    if: no_such_name\n    action: reject\n")
	write(t, dir, "20-trailing.yaml", "rules:\n  - name: c\n    stage: rcpt\n    action: reject\n---\n")
	_, err := policy.Load(dir)
	want := filepath.Join(dir, "10-two.yaml") + ":6:1: a second YAML document (after ---): a rule file is one document"
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
	os.Remove(filepath.Join(dir, "10-two.yaml"))
	if _, err := policy.Load(dir); err != nil {
		t.Errorf("trailing ---: %v", err)
	}
}
