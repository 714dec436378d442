package policy_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/mxgate/gatewayd/policy"
)

func loadCond(t *testing.T, cond string) (*policy.Engine, error) {
	t.Helper()
	y := fmt.Sprintf("rules:\n  - name: r\n    stage: data\n    if: '%s'\n    action: continue\n", cond)
	return loadRules(t, y)
}

// A method of time.Time (Format) doubles a text at each nesting: a call
// of a method that can build a text is refused at load.
func TestMethodCallsRefused(t *testing.T) {
	nested := `"1"`
	for i := 0; i < 26; i++ {
		nested = `date("2020-12-31T23:59:59Z").Format(` + nested + `)`
	}
	for _, c := range []string{
		"len(" + nested + ") > 0",
		`len(now().Format("2006")) > 0`,
		`now().String() != ""`,
		`len(string(now().AppendFormat([], "2006"))) > 0`,
		`now().AddDate(1, 0, 0).Year() > 0`,
		`len(duration("1h").String()) > 0`,
	} {
		_, err := loadCond(t, c)
		if err == nil || !strings.Contains(err.Error(), "not allowed in conditions") {
			t.Errorf("%s: loaded (err %v)", c, err)
		}
	}
}

func TestMethodCallsAllowed(t *testing.T) {
	for _, c := range []string{
		`now().Hour() >= 0 && now().Minute() < 60`,
		`int(now().Weekday()) < 7 && int(now().Month()) > 0 && now().Year() > 2000`,
		`date("2020-12-31T23:59:59Z").Before(now())`,
		`now().Sub(date("2020-12-31T23:59:59Z")).Hours() > 1`,
		`now().In(timezone("Europe/Berlin")).Hour() >= 0`, // business hours in local time
		`now().Truncate(duration("1h")).Minute() == 0`,
		// Two levels of closures, the inner one over a list of the rule's
		// own (two over headers() are refused: TestSenderClosureCost).
		`any(headers("To"), any(["x", "y"], # == "x")) || true`,
	} {
		e, err := loadCond(t, c)
		if err != nil {
			t.Errorf("%s: %v", c, err)
			continue
		}
		o := e.Evaluate(facts(policy.StageData))
		if len(o.Errors) > 0 || len(o.Reasons) != 1 {
			t.Errorf("%s: reasons %v, errors %v", c, reasons(o), o.Errors)
		}
	}
}

// x in a..b with literal bounds is two comparisons for an int x, with
// negative bounds too; for an int64 or a float x expr would build the
// list at every evaluation (size in 1..5000000 exceeded the memory
// budget on every message): refused at load.
func TestInRange(t *testing.T) {
	for _, c := range []string{`int(score) in -5..5`, `client_port in 1..65535`, `int(size) in 1..5000000`} {
		e, err := loadCond(t, c)
		if err != nil {
			t.Errorf("%s: %v", c, err)
			continue
		}
		o := e.Evaluate(facts(policy.StageData, size(100), score(3)))
		if len(o.Errors) > 0 || len(o.Reasons) != 1 {
			t.Errorf("%s: reasons %v, errors %v", c, reasons(o), o.Errors)
		}
	}
	for _, c := range []string{`size in 1..5000000`, `score in 0..2000000`, `get(rcpts, 0) in 1..3`} {
		_, err := loadCond(t, c)
		if err == nil || !strings.Contains(err.Error(), "write x >= a && x <= b") {
			t.Errorf("%s: loaded (err %v)", c, err)
		}
	}
}

// The first word of a one-line reply is an enhanced code only when it
// starts with a class digit and a dot; a date is text.
func TestReplyTextStartingWithDate(t *testing.T) {
	y := "rules:\n  - name: maint\n    stage: connect\n    action: defer\n    reply: \"421 24.12.2025 maintenance, try again later\"\n"
	e, err := loadRules(t, y)
	if err != nil {
		t.Fatal(err)
	}
	o := e.Evaluate(facts(policy.StageConnect))
	if o.Reply.Code != 421 || o.Reply.Text != "24.12.2025 maintenance, try again later" || !strings.HasPrefix(o.Reply.Enhanced, "4.") {
		t.Errorf("reply %+v", o.Reply)
	}
	y = "rules:\n  - name: maint\n    stage: connect\n    action: defer\n    reply: \"421 4.07.1 maintenance\"\n"
	if _, err := loadRules(t, y); err == nil {
		t.Errorf("421 4.07.1 loaded")
	}
}

// A pattern that is not a literal is compiled at every evaluation, and
// the sender can choose it (a 64 KB X-Filter took 5 s): refused at load.
func TestMatchesLiteralPattern(t *testing.T) {
	for _, c := range []string{`header("Subject") matches header("X-Filter")`, `helo matches lower(helo)`, `helo matches "a" + "b"`} {
		_, err := loadCond(t, c)
		if err == nil || !strings.Contains(err.Error(), "the pattern must be a literal string") {
			t.Errorf("%s: loaded (err %v)", c, err)
		}
	}
	if _, err := loadCond(t, `header("Subject") matches "^(?i)viagra" && !(helo matches "^[0-9.]+$")`); err != nil {
		t.Error(err)
	}
}

// headerFields is a header section of n short fields named name.
func headerFields(name string, n int) fact {
	return func(f *policy.Facts) {
		var b strings.Builder
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "%s: a%d\r\n", name, i)
		}
		f.Header = []byte(b.String())
	}
}

// header() in a closure over headers() parsed the whole header section
// once per element: fields x size. It is parsed once per evaluation, and
// headers() gives at most the first 1000 values.
func TestHeaderInClosureBounded(t *testing.T) {
	e, err := loadCond(t, `any(headers("To"), # == header("From")) || len(headers("to")) != 1000 || headers("TO")[999] != "a999"`)
	if err != nil {
		t.Fatal(err)
	}
	f := facts(policy.StageData, headerFields("To", 4000))
	var o policy.Outcome
	allocs := testing.AllocsPerRun(1, func() { o = e.Evaluate(f) })
	if len(o.Errors) > 0 || len(o.Reasons) != 0 {
		t.Errorf("reasons %v, errors %v", reasons(o), o.Errors)
	}
	// Parsing the section once is a few allocations per field; once per
	// element was millions.
	if allocs > 40000 {
		t.Errorf("one evaluation made %.0f allocations for 4000 fields", allocs)
	}
	e, err = loadCond(t, `header("to") == "a0" && header("From") == "" && len(headers("X")) == 0`)
	if err != nil {
		t.Fatal(err)
	}
	if o = e.Evaluate(f); len(o.Reasons) != 1 {
		t.Errorf("reasons %v, errors %v", reasons(o), o.Errors)
	}
}

// The first few names asked for are each found by a pass of their own,
// the others from the whole section parsed once: both ways give the same
// values, whatever the case of the name.
func TestHeaderManyNames(t *testing.T) {
	f := facts(policy.StageData, func(f *policy.Facts) {
		f.Header = []byte("From: f\r\nTo: t1\r\nto:  t2 \r\nSubject: s\r\n x\r\nCc: c\r\nX-A: 1\r\n\r\nX-A: body\r\n")
	})
	asks := `header("From") == "f" && len(headers("TO")) == 2 && headers("TO")[1] == "t2" && header("subject") == "s x" && header("Cc") == "c"` +
		` && header("x-a") == "1" && len(headers("X-a")) == 1 && len(headers("Nope")) == 0 && header("from") == "f" && headers("to")[0] == "t1"`
	for _, c := range []struct {
		cond string
		want int
	}{
		{asks, 1},
		{asks + ` && header("X-A") == "2"`, 0},
		{`all(["From", "to", "Subject", "cc", "X-A", "x-b", "FROM"], len(headers(#)) == (# in ["to"] ? 2 : # == "x-b" ? 0 : 1))`, 1},
		// Past four names, from the whole section: the values must be
		// right there too (a case wanting no reason would pass with none).
		{`header("A") == "" && header("B") == "" && header("C") == "" && header("D") == "" && header("subject") == "s x" && header("x-a") == "1"` +
			` && len(headers("TO")) == 2 && headers("to")[1] == "t2" && header("FROM") == "f" && len(headers("Nope")) == 0`, 1},
	} {
		e, err := loadCond(t, c.cond)
		if err != nil {
			t.Fatal(err)
		}
		if o := e.Evaluate(f); len(o.Reasons) != c.want || len(o.Errors) > 0 {
			t.Errorf("%s: reasons %v, errors %v; want %d reasons", c.cond, reasons(o), o.Errors, c.want)
		}
		// A second evaluation of other facts sees none of the first's values.
		if o := e.Evaluate(facts(policy.StageData, headerFields("Other", 1))); len(o.Reasons) != 0 {
			t.Errorf("%s: on other facts, reasons %v", c.cond, reasons(o))
		}
	}
	// The first 1000 values, whichever way a name is looked up.
	e, err := loadCond(t, `len(headers("To")) == 1000 && headers("To")[999] == "a999" && header("A") == "" && header("B") == "" && header("C") == ""`+
		` && len(headers("tO")) == 1000 && headers("tO")[999] == "a999"`)
	if err != nil {
		t.Fatal(err)
	}
	if o := e.Evaluate(facts(policy.StageData, headerFields("To", 1500))); len(o.Reasons) != 1 || len(o.Errors) > 0 {
		t.Errorf("1500 To fields: reasons %v, errors %v; want the first 1000 both ways", reasons(o), o.Errors)
	}
}

// A printf width applies to every element of a slice: "%999v" of a
// 110 KB header section padded each octet (555 MB). With an argument
// that is not a number, boolean or string, a width or precision is an
// error; the detail stays bounded.
func TestPrintfWidthPerElement(t *testing.T) {
	f := facts(policy.StageData, headerFields("To", 10000))
	for _, tmpl := range []string{`{{ printf "%999v" .Header }}`, `{{ printf "%999s" (.HeaderValues "To") }}`, `{{ printf "%.900v" .Rcpts }}`} {
		y := fmt.Sprintf("rules:\n  - name: r\n    stage: data\n    action: continue\n    detail: '%s'\n", tmpl)
		e, err := loadRules(t, y)
		if err != nil {
			t.Fatalf("load: %v", err)
		}
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		o := e.Evaluate(f)
		runtime.ReadMemStats(&m1)
		if len(o.Errors) == 0 || !strings.Contains(strings.Join(o.Errors, " "), "width or precision") {
			t.Errorf("%s: no error: %v", tmpl, o.Errors)
		}
		if a := m1.TotalAlloc - m0.TotalAlloc; a > 16<<20 {
			t.Errorf("%s: %d MB allocated for a %d KB header section", tmpl, a>>20, len(f.Header)>>10)
		}
	}
	y := "rules:\n  - name: r\n    stage: data\n    action: continue\n    detail: '{{ printf \"%05.1f %03d %.1s\" .Score .Size .Helo }} {{ printf \"%v\" .Header }}'\n"
	e, err := loadRules(t, y)
	if err != nil {
		t.Fatal(err)
	}
	if o := e.Evaluate(facts(policy.StageData, score(2.5), size(7), helo("mx"))); len(o.Errors) > 0 || o.Reasons[0].Detail != "002.5 007 m []" {
		t.Errorf("detail %q, errors %v", o.Reasons[0].Detail, o.Errors)
	}
}

// A closure over a list the sender sizes (headers(), rcpts) runs its body
// up to 1,000 times: another such list run over there (two headers():
// 1,000,000 steps), or a text of the header scanned there (lower of a
// 900 KB Subject at each of 1,000 Received: 884 MB; split of it: 14 GB),
// is refused at load. What remains costs about the size of the message.
func TestSenderClosureCost(t *testing.T) {
	const nested = "is run over in a closure over"
	const perElem = "is read at every element of"
	for _, tc := range []struct{ cond, want string }{
		{`any(headers("Received"), {any(headers("X"), {# == "a"})})`, nested},
		{`any(headers("Received"), any(headers("X"), # == "a"))`, nested},
		{`any(headers("To"), {# in headers("Cc")})`, nested},
		{`any(headers("To"), {# in rcpts})`, nested},
		{`any(rcpts, {count(headers("To"), {# == "a"}) > 0})`, nested},
		{`any(headers("To"), {len(sort(headers("Cc"))) > 0})`, nested},
		{`any(filter(headers("To"), {# != ""}), {none(take(headers("Cc"), 5), {# == "a"})})`, nested},
		{`any(headers("To"), {any(["a", "b"], {count(headers("Cc"), {# == "a"}) > 1})})`, nested},
		{`any(headers("Received"), {header("Subject") contains "x"})`, perElem},
		{`any(headers("Received"), {lower(header("Subject")) == "x"})`, perElem},
		{`any(headers("Received"), {len(split(header("Subject"), "")) > 1})`, perElem},
		{`any(headers("Received"), {header(#) matches "^a"})`, perElem},
		{`any(headers("Received"), {header("From") == header("Sender")})`, perElem},
		{`any(headers("Received"), {domain_match(header("From"), "example.com")})`, perElem},
		{`any(headers("Received"), {headers("X")[0] startsWith "a" || indexOf(first(headers("X")), "a") > 0})`, perElem},
		{`any(rcpts, {header("To") contains #})`, perElem},
		{`any(headers("Received"), {any(["a", "b"], {header("Subject") contains #})})`, perElem},
		{`any(headers("Received"), {any(dkim.signatures, {.domain contains "x"})})`, perElem},
		// split anywhere in the list of a closure, not only as the list.
		{`any(reverse(split(header("Subject"), "")), # == "x")`, "any over split is not allowed"},
	} {
		_, err := loadCond(t, tc.cond)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: loaded or another error (want %q): %v", tc.cond, tc.want, err)
		}
	}

	// 1,000 Received, 1,000 To and a 900 KB Subject.
	var b strings.Builder
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(&b, "Received: from a%d\r\nTo: b%d@example.com\r\n", i, i)
	}
	b.WriteString("Subject: " + strings.Repeat("Ab ", 300<<10) + "\r\n")
	f := facts(policy.StageData, rcpts("b1@example.com", "c@example.com"), from("a@example.com"),
		func(f *policy.Facts) { f.Header = []byte(b.String()) })
	for _, c := range []string{
		`any(headers("To"), # == header("From"))`,
		`any(headers("Received"), {# contains "x" || lower(#) startsWith "from b"})`,
		`any(headers("Received"), {# contains header("X-Tag") || header("Subject") == #})`,
		`any(headers("To"), {any(["a", "b"], {# == "x"})})`,
		`any(headers("To"), {len(headers("Cc")) > 0 && first(headers("Cc")) != # && headers("Cc")[0] == #})`,
		`any(rcpts, {# endsWith mail_from_domain || # == mail_from || mail_from contains #})`,
		`any(dkim.signatures, {header("Subject") contains .domain})`,
		`any(["viagra", "casino"], {lower(header("Subject")) contains #})`,
		`count(headers("Received"), {# matches "^from a[0-9]+$"}) > 2000`,
		`any(headers("To"), {len(split(#, "@")) != 2})`,
	} {
		e, err := loadCond(t, c)
		if err != nil {
			t.Errorf("%s: %v", c, err)
			continue
		}
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		o := e.Evaluate(f)
		runtime.ReadMemStats(&m1)
		if len(o.Errors) > 0 {
			t.Errorf("%s: errors %v", c, o.Errors)
		}
		if a := m1.TotalAlloc - m0.TotalAlloc; a > 32<<20 {
			t.Errorf("%s: %d MB allocated for a %d KB header section", c, a>>20, len(f.Header)>>10)
		}
	}
}

// A width or precision applies to the argument its verb prints: one on a
// number, boolean or text is fine beside a list printed without; one on
// a list, map or structure is an error. Explicit argument indexes are
// followed as fmt follows them.
func TestPrintfWidthPerArgument(t *testing.T) {
	f := facts(policy.StageData, helo("mx"), size(7), score(2.5), rcpts("a@b.test", "c@d.test"), header("To: x"))
	for _, tc := range []struct {
		tmpl, want string // want "" for an error
	}{
		{`{{ printf "%-6s|%v" .Helo .Rcpts }}`, "mx |[a@b.test c@d.test]"}, // runs of spaces are one in a detail
		{`{{ printf "%v %05d" .Rcpts .Size }}`, "[a@b.test c@d.test] 00007"},
		{`{{ printf "%05.1f %v %.1s" .Score .Header .Helo }}`, "002.5 [84 111 58 32 120 13 10] m"},
		{`{{ printf "%[2]s %04[1]d|" .Size .Rcpts }}`, "[a@b.test c@d.test] 0007|"},
		{`{{ .Rcpts | printf "%03d %v" .Size }}`, "007 [a@b.test c@d.test]"},
		// %[2]5v: an index before a width is a bad index, which prints nothing.
		{`{{ printf "%[2]5v %[1]s" .Helo .Rcpts }}`, "%!v(BADINDEX) mx"},
		{`{{ printf "%-6s %5v" .Helo .Rcpts }}`, ""},
		{`{{ printf "%v %.3v" .Helo .Rcpts }}`, ""},
		{`{{ printf "%5[2]v %[1]s" .Helo .Rcpts }}`, ""},
		{`{{ printf "%s %s %9v" .Helo .Helo .Header }}`, ""},
		{`{{ .Rcpts | printf "%3d %3v" .Size }}`, ""},
	} {
		y := fmt.Sprintf("rules:\n  - name: r\n    stage: data\n    action: continue\n    detail: '%s'\n", tc.tmpl)
		e, err := loadRules(t, y)
		if err != nil {
			t.Errorf("%s: %v", tc.tmpl, err)
			continue
		}
		o := e.Evaluate(f)
		switch {
		case tc.want == "" && (len(o.Errors) == 0 || !strings.Contains(strings.Join(o.Errors, " "), "width or precision")):
			t.Errorf("%s: no error: %v %v", tc.tmpl, o.Errors, o.Reasons)
		case tc.want != "" && (len(o.Errors) > 0 || len(o.Reasons) != 1 || o.Reasons[0].Detail != tc.want):
			t.Errorf("%s: errors %v, reasons %+v, want detail %q", tc.tmpl, o.Errors, o.Reasons, tc.want)
		}
	}
}

// The element of a closure over a list that mixes a text of the header
// with a sender's list measured there ([header("Subject"),
// headers("X")[0]]) is a text of the header, not a part of a sender's
// list: in a closure over headers() it was taken for short, and lower(#)
// of a 900 KB Subject ran at each of 1,000 Received (884 MB an
// evaluation). Refused at load; a closure over a list made of sender's
// lists only still reads its element freely.
func TestSenderClosureMixedList(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(&b, "Received: from a%d\r\n", i)
	}
	b.WriteString("Subject: " + strings.Repeat("Ab ", 300<<10) + "\r\n")
	f := facts(policy.StageData, func(f *policy.Facts) { f.Header = []byte(b.String()) })
	for _, c := range []string{
		`any(headers("Received"), {any([header("Subject"), headers("Received")[0]], {lower(#) == "x"})})`,
		`any(headers("Received"), {any([true ? header("Subject") : first(headers("To"))], {lower(#) == "x"})})`,
		`any(rcpts, {any([header("Subject"), rcpts[0]], {# contains "x"})})`,
	} {
		e, err := loadCond(t, c)
		if err == nil {
			var m0, m1 runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&m0)
			e.Evaluate(f)
			runtime.ReadMemStats(&m1)
			t.Errorf("%s: loaded; one evaluation allocated %d MB for a %d KB header section", c, (m1.TotalAlloc-m0.TotalAlloc)>>20, len(f.Header)>>10)
			continue
		}
		if !strings.Contains(err.Error(), "is read at every element of") {
			t.Errorf("%s: another error: %v", c, err)
		}
	}
	for _, c := range []string{
		`any(concat(headers("From"), headers("Sender")), {lower(#) contains "x"})`,
		`any(headers("Received")[0:5], {lower(#) contains "x"})`,
		`any(filter(headers("Received"), {# != ""}), {lower(#) startsWith "from b"})`,
	} {
		if _, err := loadCond(t, c); err != nil {
			t.Errorf("%s: %v", c, err)
		}
	}
}

// expr's uniq compares each element with every one it kept: over a list
// the sender sizes it is quadratic (uniq(headers("Received")) of 1,000
// distinct fields, 500,000 comparisons and as many allocations;
// uniq(split(header("Subject"), "")) of a 600 KB Subject ran minutes).
// Refused at load; uniq of a list of the rule's own stays.
func TestUniqSenderList(t *testing.T) {
	f := facts(policy.StageData, headerFields("Received", 1000), rcpts("a@example.com"))
	for _, c := range []string{
		`len(uniq(headers("Received"))) > 1000`,
		`len(uniq(concat(headers("Received"), headers("To")))) > 1000`,
		`len(uniq(split(header("Subject"), ""))) > 0`,
		`len(uniq(rcpts)) != len(rcpts)`,
	} {
		e, err := loadCond(t, c)
		if err == nil {
			allocs := testing.AllocsPerRun(1, func() { e.Evaluate(f) })
			t.Errorf("%s: loaded; one evaluation made %.0f allocations for 1,000 Received fields", c, allocs)
			continue
		}
		if !strings.Contains(err.Error(), "uniq over") {
			t.Errorf("%s: another error: %v", c, err)
		}
	}
	for _, c := range []string{`len(uniq(["a", "b", "a"])) == 2`, `len(uniq(dkim.domains)) < 3`} {
		condHolds(t, f, c, "")
	}
}

// trim(text, set) looks each character of text up in set, and reads set
// whole first: with a set from the message its cost is the product of
// two lengths the sender chooses (trim(header("A"), header("B")) of two
// 400 KB fields ran 3 s, outside any closure; trim(#, header("Subject"))
// in a closure over 1,000 Received read a 900 KB Subject 1,000 times).
// Neither allocates, so the refusal at load is what is tested; the set
// must be a literal.
func TestTrimSetLiteral(t *testing.T) {
	for _, c := range []string{
		`trim(header("A"), header("B")) == ""`,
		`any(headers("Received"), {trim(#, header("Subject")) == "x"})`,
		`trim(helo, lower(helo)) == ""`,
	} {
		if _, err := loadCond(t, c); err == nil || !strings.Contains(err.Error(), "trim: the characters to trim must be a literal string") {
			t.Errorf("%s: loaded or another error: %v", c, err)
		}
	}
	f := facts(policy.StageData, helo("[mx]"), header("Subject:  x "))
	for _, c := range []string{`trim(helo, "[]") == "mx"`, `trim(header("Subject")) == "x"`, `any(headers("Subject"), {trim(#, " ") == "x"})`} {
		condHolds(t, f, c, "")
	}
}
