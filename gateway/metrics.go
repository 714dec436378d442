package gateway

import (
	"fmt"

	"github.com/mxgate/gatewayd/policy"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the gateway's Prometheus series. Later checks register theirs
// on the same registry.
type Metrics struct {
	Connections    *prometheus.CounterVec
	SessionsActive prometheus.Gauge
	Decisions      *prometheus.CounterVec
	Relay          *prometheus.CounterVec
	RelayLatency   prometheus.Histogram
	MessageBytes   prometheus.Histogram
}

// NewMetrics creates the series and registers them on reg (when not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatewayd_connections_total",
			Help: "SMTP connections by outcome: accepted, limit (refused by a connection limit), refused (refused at the connect stage).",
		}, []string{"result"}),
		SessionsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gatewayd_sessions_in_flight",
			Help: "SMTP sessions open now.",
		}),
		Decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatewayd_decisions_total",
			Help: "Decisions logged, by stage and action.",
		}, []string{"stage", "action"}),
		Relay: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatewayd_relay_total",
			Help: "Messages handed to the internal MTA, by result: ok, rejected (5xx), deferred (4xx), failed (no answer).",
		}, []string{"result"}),
		RelayLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gatewayd_relay_duration_seconds",
			Help:    "Time from sending DATA to the internal MTA to its final reply.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		MessageBytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gatewayd_message_bytes",
			Help:    "Size of received messages.",
			Buckets: prometheus.ExponentialBuckets(1024, 4, 10),
		}),
	}
	for _, l := range []string{"accepted", "limit", "refused"} {
		m.Connections.WithLabelValues(l)
	}
	if reg != nil {
		reg.MustRegister(m.Connections, m.SessionsActive, m.Decisions, m.Relay, m.RelayLatency, m.MessageBytes)
	}
	return m
}

// RuleMetrics count what the rules did, so an operator sees which rules
// fire and how often (as rspamd's symbol statistics do).
type RuleMetrics struct {
	// Matches counts stage decisions by the rules (and the greylist)
	// among their reasons: a rule is counted once per decision.
	Matches *prometheus.CounterVec
	// Errors counts rules that failed at run time, by stage.
	Errors *prometheus.CounterVec
}

// NewRuleMetrics creates the series, unregistered.
func NewRuleMetrics() *RuleMetrics {
	return &RuleMetrics{
		Matches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatewayd_rule_matches_total",
			Help: "Decisions a rule (or the greylist, rule=\"greylist\") was among the reasons of, by stage and rule.",
		}, []string{"stage", "rule"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatewayd_rule_errors_total",
			Help: "Rules that failed at run time (their condition or template), by stage; the log says which.",
		}, []string{"stage"}),
	}
}

// Register registers the series on reg.
func (m *RuleMetrics) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.Matches, m.Errors} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("rule metrics: %w", err)
		}
	}
	return nil
}

// matched counts each rule among the reasons once.
func (m *RuleMetrics) matched(stage policy.Stage, reasons []policy.Reason) {
	for i, r := range reasons {
		seen := false
		for _, prev := range reasons[:i] {
			if prev.Rule == r.Rule {
				seen = true
				break
			}
		}
		if !seen {
			m.Matches.WithLabelValues(string(stage), r.Rule).Inc()
		}
	}
}
