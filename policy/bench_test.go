package policy_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mxgate/gatewayd/checks"
	"github.com/mxgate/gatewayd/policy"
)

// BenchmarkEvaluate200 evaluates a stage of 200 rules of the usual shapes
// (zone lookups, list membership, string tests, score), of which a few
// match, as a busy rule set at rcpt would.
func BenchmarkEvaluate200(b *testing.B) {
	dir := b.TempDir()
	var sb strings.Builder
	sb.WriteString("lists:\n  nets: {type: cidr, entries: [10.0.0.0/8, 2001:db8::/32]}\n  doms: {type: domain, entries: [.example.com, spam.test]}\n")
	sb.WriteString("rules:\n")
	for i := range 200 {
		var cond string
		switch i % 5 {
		case 0:
			cond = fmt.Sprintf(`dnsbl["zone%d.test"].listed && score > %d`, i%7, i%3)
		case 1:
			cond = fmt.Sprintf(`in_list("nets", client_ip) && rcpt_domain == "d%d.test"`, i)
		case 2:
			cond = fmt.Sprintf(`in_list("doms", mail_from_domain) && spf.result == "fail" && helo endsWith ".h%d"`, i)
		case 3:
			cond = fmt.Sprintf(`rcpt startsWith "user%d@" || (client_name == "" && score >= %d)`, i, 100+i)
		case 4:
			cond = fmt.Sprintf(`dnsbl_code("zone%d.test", "127.0.0.2-127.0.0.3") || null_sender && helo == "x%d"`, i%7, i)
		}
		if i == 123 {
			cond = `spf.result == "softfail"` // matches
		}
		fmt.Fprintf(&sb, "  - name: r%d\n    stage: rcpt\n    if: '%s'\n    action: score\n    score: 0.5\n", i, cond)
	}
	write(b, dir, "rules.yaml", sb.String())
	e, err := policy.Load(dir)
	if err != nil {
		b.Fatal(err)
	}
	f := facts(policy.StageRcpt, ip("192.0.2.9"), helo("mx.sender.test"), from("a@example.com"),
		rcpt("b@rcpt.test"), spf(checks.SPFSoftFail, "example.com"), rdns("mx.sender.test"),
		zone("zone1.test", checks.Listed, "listed", "127.0.0.2"), zone("zone2.test", checks.NotListed, ""))
	if o := e.Evaluate(f); len(o.Reasons) == 0 || len(o.Errors) > 0 {
		b.Fatalf("unexpected outcome %+v", reasons(o))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		_ = e.Evaluate(f)
	}
}
