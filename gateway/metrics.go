package gateway

import (
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
