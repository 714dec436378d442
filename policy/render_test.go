package policy

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mxgate/gatewayd/checks"
)

// renderRef is render as it was before templates were compiled: always
// text/template, then oneLineRef.
func renderRef(t *tmpl, d TemplateData, max int) (string, error) {
	var sb strings.Builder
	if err := t.t.Execute(&sb, d); err != nil {
		return "", cleanTemplateErr(err)
	}
	return oneLineRef(capRendered(sb.String()), max), nil
}

// oneLineRef is the reference for oneLine.
func oneLineRef(s string, max int) string {
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

// templateShapes are templates of every shape compile knows, and of shapes
// it leaves to text/template; fast is whether it compiles them.
var templateShapes = []struct {
	src  string
	fast bool
}{
	{``, true},
	{`plain text`, true},
	{"  text\twith \x01 controls\r\n and   spaces  ", true},
	{`{{/* a comment */}}text{{- "  trimmed  " -}} more`, true},
	{`{{ .ClientIP }}`, true},
	{`[{{ .ClientIP }}]:{{ .ClientPort }}`, true},
	{`{{ .ClientName }} {{ .Helo }} {{ .TLS }} {{ .TLSVersion }}`, true},
	{`{{ .MailFrom }} {{ .MailFromDomain }} {{ .NullSender }}`, true},
	{`{{ .Rcpt }} {{ .RcptDomain }} {{ .Rcpts }} {{ .Greylist }} {{ .Size }}`, true},
	{`{{ .Rule }} {{ .Score }} {{ .Facts.Score }} {{ .Stage }}`, true},
	{`{{ .Facts.ClientIP }} {{ .Facts.Helo }}`, true},
	{`Service unavailable; client [{{ .ClientIP }}] blocked using zen.spamhaus.org; {{ .ZoneReason "zen.spamhaus.org" }}`, true},
	{`codes {{ .ZoneCodes "zen.spamhaus.org" }} / {{ .ZoneCodes "list.dnswl.org" }} / {{ .ZoneReason "nowhere.test" }}`, true},
	{`{{ .HeaderValue "Subject" }} | {{ .HeaderValue "x-missing" }}`, true},
	{`{{ .HeaderValue .Helo }}`, true},
	{`{{ .ZoneReason (lower "ZEN.SPAMHAUS.ORG") }}`, true},
	{`{{ (.ZoneReason "zen.spamhaus.org") }}`, true},
	{`SPF fail for {{ .SPF.Domain }}`, true},
	{`{{ .SPF.Result }} {{ .SPF.IP }} {{ .SPF.Mechanism }}`, true},
	{`{{ .IPRev.Name }} {{ .IPRev.Names }} {{ .IPRev.IP }} {{ .IPRev.Result }}`, true},
	{`Message rejected: the DMARC policy of {{ .DMARC.Domain }} says to reject`, true},
	{`{{ .DMARC.Pct }} {{ .DMARC.SPFAligned }} {{ .DMARC.Result }}`, true},
	{`{{ .DKIM.Err }}`, true},
	{`zen.spamhaus.org answered with an error code: {{ (index .DNSBL "zen.spamhaus.org").Error }}; query it`, true},
	{`{{ (index .DNSBL "zen.spamhaus.org").Codes }} {{ (index .DNSBL "zen.spamhaus.org").Listed }} {{ (index .DNSBL "zen.spamhaus.org").Weight }}`, true},
	{`{{ (index .DNSBL "missing.test").Reason }}|{{ (index .DNSBL "missing.test").Weight }}`, true},
	{`{{ printf "%.1f" .Score }}`, true},
	{`Refused: too many signs of spam (score {{ printf "%.1f" .Score }})`, true},
	{`{{ .Score | printf "%.2f" }} {{ printf "%f|%.f|%.0f|%.12f" .Score .Score .Score .Score }}`, true},
	{`{{ printf "%v %s %d %v %v" .Score .Helo .ClientPort .TLS .ClientIP }}`, true},
	{`{{ printf "%s|%v|%s" .ClientIP .Rcpts .Rcpts }}`, true},
	{`{{ printf "100%% of %s" .Helo }} {{ printf "no verbs" }} {{ printf "%d" .Size }}`, true},
	{`{{ printf "%s" (.ZoneReason "zen.spamhaus.org") }}`, true},
	{`{{ .Helo | printf "%s-%s" .Rule }}`, true},
	{`{{ lower .Helo }} {{ upper .Helo }} {{ .Helo | lower }} {{ .Helo | lower | upper }}`, true},
	{`{{ .ZoneReason "zen.spamhaus.org" | upper }}`, true},
	{`{{ join .Rcpts ", " }} {{ join .IPRev.Names .Rule }}`, true},
	{`{{ "a string" }} {{ "x" | upper }} {{ ` + "`raw`" + ` }}`, true},

	// Left to text/template.
	{`{{ . }}`, false},
	{`{{ .Facts }}`, false},
	{`{{ .SPF }}`, false},
	{`{{ .DNSBL }}`, false},
	{`{{ .Header }}`, false},
	{`{{ .DKIM.Pass }}`, false},
	{`{{ .HeaderValues "Subject" }}`, false},
	{`{{ index .DNSBL "zen.spamhaus.org" }}`, false},
	{`{{ (index .DomainBL "dbl.test").helo }}`, false},
	{`{{ if .TLS }}tls{{ else }}plain{{ end }}`, false},
	{`{{ with .SPF }}{{ .Domain }}{{ end }}`, false},
	{`{{ $x := .Helo }}{{ $x }}`, false},
	{`{{ $.Helo }}`, false},
	{`{{ len .Rcpts }}`, false},
	{`{{ print .Helo .Score }}`, false},
	{`{{ printf "%5.1f" .Score }}`, false},
	{`{{ printf "%x" .Helo }}`, false},
	{`{{ printf "%s %s" .Helo }}`, false},
	{`{{ printf "%s" .Helo .Helo }}`, false},
	{`{{ printf "%d" .Helo }}`, false},
	{`{{ printf "%.1f" .ClientPort }}`, false},
	{`{{ printf "%[1]s" .Helo }}`, false},
	{`{{ printf "%" .Helo }}`, false},
	{`{{ printf "%s" 3 }}`, false},
	{`{{ printf "%s" .Helo | lower }}`, false},
	{`{{ 3 }} {{ true }}`, false},
	{`{{ if .SPF }}{{ .SPF.Domain }}{{ else }}none{{ end }}`, false},
	{`{{ if .SPF }}spf{{ else if .DMARC }}{{ .DMARC.Domain }}{{ end }}`, false},
	{`{{ with .DMARC }}{{ .Domain }} {{ .Policy }}{{ else }}{{ .Helo }}{{ end }}`, false},
	{`{{ $d := .MailFromDomain }}{{ if eq $d "sender.example" }}{{ $d | upper }}{{ end }}{{ $d = 3 }}{{ $d }}`, false},
	{`{{ if and .TLS (ne .TLSVersion "TLS1.3") }}old tls{{ end }} {{ or .ClientName .Helo "none" | lower }}`, false},
	{`{{ (index .DomainBL "dbl.test" "helo").Status }}`, false},
	{`{{ .SPF.ReceivedSPF "mx.example" }} {{ .ClientIP.Is4 }} {{ $.Rule }} {{ .Facts.SPF.Domain }}`, false},
	{`{{ .Helo | printf "%s %v" .Score }} {{ slice .Helo 0 1 }} {{ not .TLS }} {{ len (.HeaderValues "Subject") }}`, false},
	{`{{ .IPRev.IP.String }} {{ index .Rcpts 1 }} {{ 1.5 }} {{ print nil }}`, false},
}

// renderData is facts with something in every field a shape reads.
func renderData() TemplateData {
	a := netip.MustParseAddr("198.51.100.20")
	f := &Facts{Stage: StageData, ClientIP: a, ClientPort: 40123, ClientName: "mx.sender.example", Helo: "Mx.Sender.Example",
		TLS: true, TLSVersion: "TLS1.3", MailFrom: "alice@sender.example", MailFromDomain: "sender.example",
		Rcpt: "bob@ours.example", RcptDomain: "ours.example", Rcpts: []string{"bob@ours.example", "carol@ours.example"},
		DNSBL: map[string]checks.ZoneResult{
			"zen.spamhaus.org": {Zone: "zen.spamhaus.org", Kind: checks.KindIP, Type: checks.TypeBlock, Subject: a.String(),
				Status: checks.Listed, Listed: true, Codes: []string{"127.0.0.2", "127.0.0.4"}, Weight: 2.5,
				Reason: "https://check.spamhaus.org/query/ip/198.51.100.20", Error: "error code 127.255.255.254"},
			"list.dnswl.org": {Zone: "list.dnswl.org", Status: checks.NotListed, Codes: []string{"127.0.0.1"}},
		},
		IPRev:    &checks.IPRevResult{Result: "pass", IP: a, Name: "mx.sender.example", Names: []string{"mx.sender.example", "b.example"}},
		SPF:      &checks.SPFResult{Result: checks.SPFFail, Domain: "sender.example", IP: a, Mechanism: "matched all"},
		DKIM:     &checks.DKIMResult{Err: "broken"},
		DMARC:    &checks.DMARCResult{Result: checks.DMARCFail, Domain: "sender.example", Pct: 100, SPFAligned: true},
		Greylist: "pass", Size: 12345, Score: 3.25,
		Header: []byte("Subject: hello\r\n  world\r\nX-Spam: yes\r\n"),
	}
	return TemplateData{Facts: f, Rule: "zen_sbl_xbl", Score: 11.5}
}

func sameRender(t *testing.T, tm *tmpl, d TemplateData, max int) {
	t.Helper()
	got, gerr := render(tm, d, max)
	want, werr := renderRef(tm, d, max)
	if got != want || (gerr == nil) != (werr == nil) || (gerr != nil && gerr.Error() != werr.Error()) {
		t.Fatalf("template %q, max %d, data %+v %+v:\ngot  %q, %v\nwant %q, %v", tm.t.Root.String(), max, d, d.Facts, got, gerr, want, werr)
	}
}

func TestRenderShapes(t *testing.T) {
	for _, s := range templateShapes {
		tm, _, err := parseTemplate("reply", s.src)
		if err != nil {
			t.Fatalf("%q: %v", s.src, err)
		}
		if tm.fast != s.fast {
			t.Errorf("%q: compiled %v, want %v", s.src, tm.fast, s.fast)
		}
		d := renderData()
		for _, max := range []int{maxReplyText, maxHeaderValue, 20, 7, 0} {
			sameRender(t, tm, d, max)
		}
		// Empty facts, nil pointers, and no facts at all.
		sameRender(t, tm, TemplateData{Facts: &Facts{}}, maxReplyText)
		sameRender(t, tm, TemplateData{}, maxReplyText)
		d.SPF, d.DMARC, d.IPRev, d.DKIM, d.DNSBL = nil, nil, nil, nil, nil
		sameRender(t, tm, d, maxReplyText)
	}
}

// TestRenderShipped renders every template of the shipped rules with
// compiled and with text/template, and checks that all of them compile.
func TestRenderShipped(t *testing.T) {
	e, err := Load("../rules")
	if err != nil {
		t.Fatal(err)
	}
	type named struct {
		name string
		t    *tmpl
		max  int
	}
	var all []named
	for _, st := range e.stages {
		for _, r := range st.rules {
			for _, x := range []named{{r.Name + " reply", r.reply.text, maxReplyText},
				{r.Name + " detail", r.detail, maxReplyText}, {r.Name + " header", r.header.value, maxHeaderValue}} {
				if x.t != nil {
					all = append(all, x)
				}
			}
		}
		for _, th := range st.thresholds {
			for _, x := range []named{{th.name + " reply", th.reply.text, maxReplyText}, {th.name + " header", th.header.value, maxHeaderValue}} {
				if x.t != nil {
					all = append(all, x)
				}
			}
		}
	}
	if len(all) < 8 {
		t.Fatalf("only %d templates in the shipped rules", len(all))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, x := range all {
		if !x.t.fast {
			t.Errorf("%s: %q is not compiled", x.name, x.t.t.Root.String())
		}
		sameRender(t, x.t, renderData(), x.max)
		sameRender(t, x.t, TemplateData{Facts: &Facts{}}, x.max)
		for range 200 {
			sameRender(t, x.t, randomData(rng), x.max)
		}
	}
}

// TestRenderBounded renders templates whose text would be gigabytes
// without the bounds: the output of a template, and of print, printf,
// join, html, js and urlquery, stops at maxRendered octets.
func TestRenderBounded(t *testing.T) {
	var hdr strings.Builder
	for range 20000 {
		hdr.WriteString("X: a\r\n")
	}
	hdr.WriteString("Y: " + strings.Repeat("y", 100<<10) + "\r\n")
	d := renderData()
	d.Header = []byte(hdr.String())
	nest := func(fn string, n int) string {
		return strings.Repeat("("+fn+" ", n) + `(.HeaderValue "Y")` + strings.Repeat(")", n)
	}
	tests := []struct {
		name, src string
		want      string // the start of the rendered text
	}{
		{"join", `{{ join (.HeaderValues "X") (.HeaderValue "Y") }}`, "ayyy"},
		{"printf_x", `{{ ` + nest(`printf "%x"`, 12) + ` }}`, "3"},
		{"printf_q", `{{ ` + nest(`printf "%q"`, 12) + ` }}`, `"\"`},
		{"print", `{{ ` + nest(`print .Helo`, 12) + ` }}`, "Mx.Sender.Example"},
		{"html", `{{ ` + nest(`html "<>"`, 12) + ` }}`, "&"},
		{"js", `{{ ` + nest(`js "<"`, 12) + ` }}`, `\`},
		{"urlquery", `{{ ` + nest(`urlquery "%"`, 12) + ` }}`, "%25"},
		{"many", strings.Repeat(`{{ .HeaderValue "Y" }}`, 200), "yyy"},
		{"many_slow", strings.Repeat(`{{ if true }}{{ .HeaderValue "Y" }}{{ end }}`, 200), "yyy"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tm, _, err := parseTemplate("header", tc.src)
			if err != nil {
				t.Fatal(err)
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			got, err := render(tm, d, maxHeaderValue)
			took := time.Since(start)
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) > maxHeaderValue || !strings.HasPrefix(got, tc.want) {
				t.Errorf("rendered %d octets: %.40q...", len(got), got)
			}
			if n := after.TotalAlloc - before.TotalAlloc; n > 64<<20 || took > 5*time.Second {
				t.Errorf("one render allocated %d MiB in %v", n>>20, took)
			}
		})
	}
}

// TestRenderRandom renders every shape over random data both ways.
func TestRenderRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var tms []*tmpl
	for _, s := range templateShapes {
		tm, _, err := parseTemplate("reply", s.src)
		if err != nil {
			t.Fatal(err)
		}
		tms = append(tms, tm)
	}
	n := 300
	if testing.Short() {
		n = 30
	}
	for range n {
		d := randomData(rng)
		max := []int{maxReplyText, maxHeaderValue, rng.IntN(60)}[rng.IntN(3)]
		for _, tm := range tms {
			sameRender(t, tm, d, max)
		}
	}
}

var (
	someStrings = []string{"", " ", "a", "zen.spamhaus.org", "MiXeD.Case.Example", "  spaces  around  ",
		"tab\there", "line\r\nbreak", "nul\x00del\x7f", "bad\xffutf8\xc3", "uni\u00a0nbsp\u2003em\u0085nel",
		"repl\ufffdchar", "é à ü 日本", "%s %d %%", "{{ .Helo }}", strings.Repeat("long ", 120),
		strings.Repeat("é", 300), "https://check.spamhaus.org/query/ip/192.0.2.1"}
	someFloats = []float64{0, 1, -1, 0.05, 0.15, 0.25, 1.5, -2.75, 11.5, 1e6, 1e21, 1e-5, 123456789.125,
		math.Copysign(0, -1), math.Inf(1), math.Inf(-1), math.NaN(), math.MaxFloat64, math.SmallestNonzeroFloat64}
	someAddrs = []netip.Addr{{}, netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1"),
		netip.MustParseAddr("::ffff:192.0.2.7"), netip.MustParseAddr("fe80::1%eth0"), netip.MustParseAddr("::")}
)

func randomData(rng *rand.Rand) TemplateData {
	str := func() string {
		s := someStrings[rng.IntN(len(someStrings))]
		if rng.IntN(4) == 0 {
			s += someStrings[rng.IntN(len(someStrings))]
		}
		return s
	}
	strs := func() []string {
		if rng.IntN(4) == 0 {
			return nil
		}
		out := make([]string, rng.IntN(4))
		for i := range out {
			out[i] = str()
		}
		return out
	}
	fl := func() float64 {
		if rng.IntN(3) == 0 {
			return (rng.Float64() - 0.5) * math.Pow(10, float64(rng.IntN(12)-4))
		}
		return someFloats[rng.IntN(len(someFloats))]
	}
	addr := func() netip.Addr { return someAddrs[rng.IntN(len(someAddrs))] }
	f := &Facts{Stage: Stages[rng.IntN(len(Stages))], ClientIP: addr(), ClientPort: rng.IntN(70000) - 10,
		ClientName: str(), Helo: str(), TLS: rng.IntN(2) == 0, TLSVersion: str(), MailFrom: str(), MailFromDomain: str(),
		NullSender: rng.IntN(2) == 0, Rcpt: str(), RcptDomain: str(), Rcpts: strs(), Greylist: str(),
		Size: rng.Int64() - rng.Int64(), Score: fl()}
	if rng.IntN(4) > 0 {
		f.DNSBL = map[string]checks.ZoneResult{}
		for _, z := range []string{"zen.spamhaus.org", "list.dnswl.org", str()} {
			if rng.IntN(3) == 0 {
				continue
			}
			st := []checks.ListStatus{checks.Listed, checks.NotListed, checks.ListError, checks.ListTemp}[rng.IntN(4)]
			f.DNSBL[z] = checks.ZoneResult{Zone: z, Status: st, Listed: st == checks.Listed && rng.IntN(5) > 0,
				Codes: strs(), Reason: str(), Error: str(), Weight: fl()}
		}
	}
	if rng.IntN(3) > 0 {
		f.IPRev = &checks.IPRevResult{Result: str(), IP: addr(), Name: str(), Names: strs()}
	}
	if rng.IntN(3) > 0 {
		f.SPF = &checks.SPFResult{Result: checks.SPFStatus(str()), Domain: str(), IP: addr(), Mechanism: str()}
	}
	if rng.IntN(3) > 0 {
		f.DMARC = &checks.DMARCResult{Result: checks.DMARCStatus(str()), Domain: str(), Pct: rng.IntN(200) - 50,
			SPFAligned: rng.IntN(2) == 0}
	}
	if rng.IntN(3) > 0 {
		f.DKIM = &checks.DKIMResult{Err: str()}
	}
	if rng.IntN(2) == 0 {
		f.Header = []byte("Subject: " + str() + "\r\n" + str() + ": " + str() + "\r\n")
	}
	return TemplateData{Facts: f, Rule: str(), Score: fl()}
}

// FuzzRender renders every shape both ways over fuzzed values.
func FuzzRender(f *testing.F) {
	f.Add("mx.example", "a@b.example", "https://example.test/why\r\nx", 11.5, 25, uint16(400), []byte{192, 0, 2, 1})
	f.Add("", "", "", math.Inf(-1), -1, uint16(3), []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Add("\xff\x00 é\u2003", "%d", "{{", -0.0049, 0, uint16(0), []byte{})
	var tms []*tmpl
	for _, s := range templateShapes {
		tm, _, err := parseTemplate("reply", s.src)
		if err != nil {
			f.Fatal(err)
		}
		tms = append(tms, tm)
	}
	f.Fuzz(func(t *testing.T, s1, s2, s3 string, score float64, port int, max uint16, ip []byte) {
		a, _ := netip.AddrFromSlice(ip)
		d := renderData()
		d.Helo, d.ClientName, d.MailFrom, d.Rule = s1, s1, s2, s2
		d.Rcpts = []string{s1, s2, s3}
		d.ClientIP, d.ClientPort, d.Score, d.Facts.Score = a, port, score, -score
		d.DNSBL["zen.spamhaus.org"] = checks.ZoneResult{Status: checks.Listed, Listed: true, Reason: s3, Codes: []string{s2}, Error: s3}
		d.SPF.Domain, d.DMARC.Domain, d.IPRev.Names = s3, s2, []string{s3}
		d.Header = []byte("Subject: " + s3 + "\r\n")
		for _, tm := range tms {
			sameRender(t, tm, d, int(max))
		}
		if got, want := oneLine([]byte(s1+s2+s3), int(max)), oneLineRef(s1+s2+s3, int(max)); got != want {
			t.Fatalf("oneLine(%q, %d) = %q, want %q", s1+s2+s3, max, got, want)
		}
	})
}

// staticErrors are the run-time errors of text/template that do not
// depend on the data: a template that loads never fails with one.
var staticErrors = []string{"can't evaluate field", "wrong number of args", "wrong type for value",
	"not a defined function", "can't give argument", "can't handle", "has arguments", "is not a method",
	"can't call method", "undefined variable", "can't index item of type", "cannot index slice",
	"value has type", "incompatible types for comparison", "is not a command", "can't slice item",
	"exceeded maximum template depth", "no such template", "invalid type for comparison"}

// FuzzTemplate: whatever a template holds, parseTemplate must not panic,
// and one that loads must not fail, on any data, with an error that the
// static check should have found; nor produce more than maxRendered
// octets.
func FuzzTemplate(f *testing.F) {
	for _, s := range templateShapes {
		f.Add(s.src)
	}
	for _, s := range []string{`{{ .SPF.Domain }}: {{ .ClientAddr }}`, `{{ if .SPF }}{{ .SPF.Domian }}{{ end }}`,
		`{{ .ZoneReason 5 }}`, `{{ template "nope" }}`, `{{ range 10 }}{{ end }}`, `{{ eq .Score 1 }}`,
		`{{ with $x := .DMARC }}{{ $x.Domain }}{{ else }}{{ $.Rule }}{{ end }}`, `{{ index .DomainBL "a" "b" }}`,
		`{{ (or .SPF .DMARC).Domain }}`, `{{ slice .Rcpts 1 }}`, `{{ lt .Size 3 }}`, `{{ .Helo | len }}`,
		// Found by the fuzzer: each loaded and failed at every run.
		`{{if eq $ ""}}{{end}}`, `{{index "" ""}}`, `{{slice}}`, `{{$0 =0}}`, `{{or 1 ""|lower}}`} {
		f.Add(s)
	}
	datas := []TemplateData{renderData(), {Facts: &Facts{}}, {}}
	f.Fuzz(func(t *testing.T, src string) {
		tm, _, err := parseTemplate("reply", src)
		if err != nil {
			return
		}
		for _, d := range datas {
			var sb strings.Builder
			err := tm.t.Execute(&sb, d)
			if err != nil {
				for _, s := range staticErrors {
					if strings.Contains(err.Error(), s) {
						t.Fatalf("%q loads, and fails with %v", src, err)
					}
				}
			}
			if sb.Len() > maxRendered*len(src) {
				t.Fatalf("%q: %d octets", src, sb.Len())
			}
			if _, err := render(tm, d, maxReplyText); err != nil && d.Facts != nil && strings.Contains(err.Error(), "errRenderFull") {
				t.Fatal(err)
			}
		}
	})
}

// TestOneLine compares oneLine with its reference on awkward text.
func TestOneLine(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	pieces := []string{"a", "é", " ", "\t", "\r\n", "\x00", "\x7f", "\xff", "\xc3", "\u00a0", "\u0085", "\u2028",
		"\u3000", "\ufffd", "日", "\U0001F600", "xyz"}
	for range 20000 {
		var sb strings.Builder
		for range rng.IntN(12) {
			sb.WriteString(pieces[rng.IntN(len(pieces))])
		}
		s := sb.String()
		for _, max := range []int{0, 1, 2, 3, 5, 8, 400} {
			if got, want := oneLine([]byte(s), max), oneLineRef(s, max); got != want {
				t.Fatalf("oneLine(%q, %d) = %q, want %q", s, max, got, want)
			}
		}
	}
}

func TestStageIdx(t *testing.T) {
	for s, want := range stageIndex {
		if i, ok := stageIdx(s); !ok || i != want {
			t.Errorf("stageIdx(%s) = %d, %v, want %d", s, i, ok, want)
		}
	}
	if len(stageIndex) != len(Stages) {
		t.Errorf("stageIndex has %d stages, Stages %d", len(stageIndex), len(Stages))
	}
	for _, s := range []Stage{"", "Connect", "end"} {
		if _, ok := stageIdx(s); ok {
			t.Errorf("stageIdx(%q) is ok", s)
		}
	}
}

func TestFmtScore(t *testing.T) {
	ref := func(f float64) string {
		return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", f), "0"), ".")
	}
	rng := rand.New(rand.NewPCG(7, 8))
	fs := append([]float64{}, someFloats...)
	for range 5000 {
		fs = append(fs, math.Round((rng.Float64()-0.5)*math.Pow(10, float64(rng.IntN(8)))*1000)/1000)
	}
	for _, f := range fs {
		if got, want := fmtScore(f), ref(f); got != want {
			t.Fatalf("fmtScore(%v) = %q, want %q", f, got, want)
		}
	}
}
