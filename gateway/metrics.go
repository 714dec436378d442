package gateway

import (
	"fmt"
	"sync/atomic"

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

	// The series of the counters above the sessions add to, kept once
	// made: a CounterVec hashes, checks and looks up its labels on every
	// call. A series appears on /metrics when first counted, as before.
	decisions [len(stageNames)][len(actionNames)]atomic.Pointer[prometheus.Counter]
	relay     [len(relayResults)]atomic.Pointer[prometheus.Counter]
	// Connections' series, made with the vector.
	connAccepted, connRefused, connLimit prometheus.Counter
}

var (
	stageNames   = [...]policy.Stage{policy.StageConnect, policy.StageHelo, policy.StageMail, policy.StageRcpt, policy.StageData}
	actionNames  = [...]policy.Action{policy.ActionContinue, policy.ActionAccept, policy.ActionReject, policy.ActionDefer, policy.ActionGreylist, policy.ActionDrop, policy.ActionQuarantine, policy.ActionRelay}
	relayResults = [...]string{"ok", "rejected", "deferred", "failed"}
)

// series returns the series of vec for labels, from slot once made.
func series(slot *atomic.Pointer[prometheus.Counter], vec *prometheus.CounterVec, labels ...string) prometheus.Counter {
	if c := slot.Load(); c != nil {
		return *c
	}
	c := vec.WithLabelValues(labels...)
	slot.Store(&c)
	return c
}

// decision counts a logged decision.
func (m *Metrics) decision(stage policy.Stage, action policy.Action) {
	si, ai := -1, -1
	for i, s := range stageNames {
		if s == stage {
			si = i
		}
	}
	for i, a := range actionNames {
		if a == action {
			ai = i
		}
	}
	if si < 0 || ai < 0 {
		m.Decisions.WithLabelValues(string(stage), string(action)).Inc()
		return
	}
	series(&m.decisions[si][ai], m.Decisions, string(stage), string(action)).Inc()
}

// relayed counts a message handed to the internal MTA by result (one of
// relayResults).
func (m *Metrics) relayed(result string) {
	for i, r := range relayResults {
		if r == result {
			series(&m.relay[i], m.Relay, result).Inc()
			return
		}
	}
	m.Relay.WithLabelValues(result).Inc()
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
	m.connAccepted = m.Connections.WithLabelValues("accepted")
	m.connLimit = m.Connections.WithLabelValues("limit")
	m.connRefused = m.Connections.WithLabelValues("refused")
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
