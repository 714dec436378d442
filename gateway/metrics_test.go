package gateway

import (
	"testing"

	"github.com/mxgate/gatewayd/policy"
	dto "github.com/prometheus/client_model/go"
)

// TestRuleMetricsOncePerDecision: a rule among a decision's reasons twice
// (a greylisted recipient's stage is evaluated again after the greylist
// passed it) counts once.
func TestRuleMetricsOncePerDecision(t *testing.T) {
	m := NewRuleMetrics()
	m.matched(policy.StageRcpt, []policy.Reason{{Rule: "no_rdns", Score: 2}, {Rule: "greylist", Detail: "pass"}, {Rule: "no_rdns", Score: 2}})
	m.matched(policy.StageRcpt, []policy.Reason{{Rule: "no_rdns", Score: 2}})
	for _, c := range []struct {
		rule string
		want float64
	}{{"no_rdns", 2}, {"greylist", 1}} {
		var out dto.Metric
		if err := m.Matches.WithLabelValues("rcpt", c.rule).Write(&out); err != nil {
			t.Fatal(err)
		}
		if got := out.GetCounter().GetValue(); got != c.want {
			t.Errorf("%s: %v, want %v", c.rule, got, c.want)
		}
	}
}
