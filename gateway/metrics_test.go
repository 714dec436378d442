package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
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

// TestMetricsKeptSeries: decisions and relay results counted through the
// kept series add to the vector's series of their labels, one series per
// pair; a pair outside the known stages and actions is still counted, and
// no pair shows on /metrics before it is counted.
func TestMetricsKeptSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	for range 3 {
		m.decision(policy.StageData, policy.ActionRelay)
	}
	m.decision(policy.StageRcpt, policy.ActionRelay)
	m.decision(policy.StageRcpt, policy.ActionGreylist)
	m.decision("elsewhere", policy.ActionReject)
	m.relayed("ok")
	m.relayed("ok")
	m.relayed("deferred")
	m.relayed("odd")
	m.connAccepted.Inc()
	value := func(c prometheus.Counter) float64 {
		var out dto.Metric
		if err := c.Write(&out); err != nil {
			t.Fatal(err)
		}
		return out.GetCounter().GetValue()
	}
	for _, c := range []struct {
		c    prometheus.Counter
		want float64
	}{
		{m.Decisions.WithLabelValues("data", "relay"), 3},
		{m.Decisions.WithLabelValues("rcpt", "relay"), 1},
		{m.Decisions.WithLabelValues("rcpt", "greylist"), 1},
		{m.Decisions.WithLabelValues("elsewhere", "reject"), 1},
		{m.Relay.WithLabelValues("ok"), 2},
		{m.Relay.WithLabelValues("deferred"), 1},
		{m.Relay.WithLabelValues("odd"), 1},
		{m.Connections.WithLabelValues("accepted"), 1},
		{m.Connections.WithLabelValues("refused"), 0},
	} {
		if got := value(c.c); got != c.want {
			t.Errorf("%v: %v, want %v", c.c.Desc(), got, c.want)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "gatewayd_relay_total" && len(mf.GetMetric()) != 3 {
			t.Errorf("gatewayd_relay_total has %d series, want the 3 counted", len(mf.GetMetric()))
		}
	}
}
