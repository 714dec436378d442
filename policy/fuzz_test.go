package policy_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/mxgate/gatewayd/policy"
)

// FuzzLoad: whatever a rule file holds, Load must not panic, and an
// engine that loads must evaluate every stage without panicking.
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
		}
		_ = e.Summary()
	})
}
