package policy_test

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/mxgate/gatewayd/checks"
	"github.com/mxgate/gatewayd/policy"
)

// FuzzLoad: whatever a rule file holds, Load must not panic, and an
// engine that loads must evaluate every stage without panicking; and
// EvaluateLazy, asking for the check results as the rules reach them,
// must decide as Evaluate does with every result there (a rule reading a
// check its NeedSet misses would be evaluated without it).
func FuzzLoad(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*/*.yaml")
	more, _ := filepath.Glob("testdata/errors/*/*.yaml")
	shipped, _ := filepath.Glob("../rules/*.yaml")
	for _, p := range append(append(seeds, more...), shipped...) {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("rules:\n  - {name: a, stage: data, if: 'header(\"x\") matches \"(\"', action: reject}\n"))
	f.Add([]byte("rules: &a [*a]\n"))
	f.Add([]byte("lists: {x: {type: cidr, file: /dev/zero}}\n"))
	f.Add([]byte("rules:\n- {name: a, stage: data, action: add_header, header: {name: X-A, value: '{{ if .SPF }}{{ range 10000000000 }}{{ end }}{{ end }}'}}\n"))
	f.Add([]byte("rules:\n- {name: a, stage: data, action: add_header, header: {name: X-A, value: '{{ printf \"%x\" (printf \"%x\" .Header) }}'}}\n"))
	f.Add([]byte("rules:\n- {name: a, stage: helo, if: 'len(reduce(1..28, #acc + #acc, helo)) > 0', action: score, score: 1}\n"))
	f.Add([]byte("rules:\n- {name: a, stage: rcpt, if: 'dmarc.result == \"fail\"', action: reject}\n- {name: b, stage: mail, action: continue, detail: '{{ .DKIM }}'}\n"))
	f.Add([]byte("rules:\n- {name: a, stage: connect, if: '$env[\"dmarc\"].result == \"fail\"', action: reject}\n"))
	f.Add([]byte("rules:\n- {name: a, stage: data, if: 'count(split(header(\"x\"), \"\"), # in headers(\"x\")) > 1', action: score, score: 1}\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), src, 0o644); err != nil {
			t.Fatal(err)
		}
		e, err := policy.Load(dir)
		if err != nil {
			return
		}
		for _, s := range policy.Stages {
			_ = e.Evaluate(facts(s, helo("x.test"), from("a@b.test"), rcpt("c@d.test"), header("Subject: x")))
			_ = e.Needs(s)
			lazyMatchesEager(t, e, s)
		}
		// No rule reads a check before the stage that has its result
		// (only rules apply before rcpt; a threshold may read at rcpt
		// what it has at data).
		for s, later := range map[policy.Stage]policy.NeedSet{
			policy.StageConnect: {DomainBL: true, SPF: true, DKIM: true, DMARC: true, Greylist: true},
			policy.StageHelo:    {SPF: true, DKIM: true, DMARC: true, Greylist: true},
			policy.StageMail:    {DKIM: true, DMARC: true, Greylist: true},
		} {
			if n := e.Needs(s).Intersect(later); !n.Empty() {
				t.Errorf("stage %s reads %v, which it cannot have", s, n)
			}
		}
		_ = e.Summary()
	})
}

// The check results of lazyMatchesEager, one fact each.
var lazyLoads = []struct {
	need policy.NeedSet
	set  fact
}{
	{policy.NeedSet{IPRev: true}, rdns("")},
	{policy.NeedSet{DNSBL: true}, func(f *policy.Facts) {
		zone("bl.test", checks.Listed, "listed", "127.0.0.2")(f)
		zone("list.dnswl.org", checks.Listed, "", "127.0.10.3")(f)
	}},
	{policy.NeedSet{DomainBL: true}, func(f *policy.Facts) {
		f.DomainBL = map[string]map[string]checks.ZoneResult{"dbl.test": {"helo": {Zone: "dbl.test",
			Kind: checks.KindDomain, Type: checks.TypeBlock, Subject: "x.test", Status: checks.Listed,
			Listed: true, Codes: []string{"127.0.1.2"}}}}
	}},
	{policy.NeedSet{SPF: true}, spf(checks.SPFFail, "b.test")},
	{policy.NeedSet{DKIM: true}, dkim("b.test=fail")},
	{policy.NeedSet{DMARC: true}, dmarc(checks.DMARCFail, "b.test", "reject", "reject")},
}

func lazyMatchesEager(t *testing.T, e *policy.Engine, s policy.Stage) {
	base := []fact{helo("x.test"), from("a@b.test"), rcpt("c@d.test"), header("Subject: x")}
	full := facts(s, base...)
	var all policy.NeedSet
	for _, l := range lazyLoads {
		l.set(full)
		all = all.Union(l.need)
	}
	want := e.Evaluate(full)
	lazy := facts(s, base...)
	var asked policy.NeedSet
	got := e.EvaluateLazy(lazy, all, func(n policy.NeedSet) {
		if !n.Intersect(asked).Empty() || n.Empty() {
			t.Errorf("stage %s: asked for %v after %v", s, n, asked)
		}
		asked = asked.Union(n)
		for _, l := range lazyLoads {
			if !n.Intersect(l.need).Empty() {
				l.set(lazy)
			}
		}
	})
	if !reflect.DeepEqual(got, want) {
		t.Errorf("stage %s: lazy %+v, eager %+v", s, got, want)
	}
}
