package greylist

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the greylist's Prometheus collectors. Make one with
// NewMetrics, register it once on the daemon's registry and hand it to every
// Greylister built (across config reloads) with WithMetrics:
//
//	m := greylist.NewMetrics()
//	if err := m.Register(reg); err != nil { ... }
//	g, err := greylist.Open(cfg, greylist.WithMetrics(m))
//
// Nothing is registered on the global default registry.
type Metrics struct {
	// Decisions counts decisions by action and reason:
	// gatewayd_greylist_decisions_total{action,reason}.
	Decisions *prometheus.CounterVec
	// Failures counts decisions made without the store because it failed
	// or missed the deadline, by fail mode:
	// gatewayd_greylist_store_failures_total{mode="open"|"closed"}.
	Failures *prometheus.CounterVec
	// StoreErrors counts store errors by store and operation:
	// gatewayd_greylist_store_errors_total{store,op}.
	StoreErrors *prometheus.CounterVec
	// Latency is the time of a decision, store round trip included:
	// gatewayd_greylist_decision_duration_seconds{store}.
	Latency *prometheus.HistogramVec
}

// NewMetrics makes unregistered collectors.
func NewMetrics() *Metrics {
	return &Metrics{
		Decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "gatewayd", Subsystem: "greylist", Name: "decisions_total",
			Help: "Greylist decisions by action and reason.",
		}, []string{"action", "reason"}),
		Failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "gatewayd", Subsystem: "greylist", Name: "store_failures_total",
			Help: "Greylist decisions made without the store (failed or too slow), by fail mode: open passed them, closed deferred them.",
		}, []string{"mode"}),
		StoreErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "gatewayd", Subsystem: "greylist", Name: "store_errors_total",
			Help: "Greylist store errors by store and operation.",
		}, []string{"store", "op"}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "gatewayd", Subsystem: "greylist", Name: "decision_duration_seconds",
			Help:    "Time to make a greylist decision, store round trip included.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}, []string{"store"}),
	}
}

// Collectors returns the collectors, to register by hand.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.Decisions, m.Failures, m.StoreErrors, m.Latency}
}

// Register registers every collector on r.
func (m *Metrics) Register(r prometheus.Registerer) error {
	var errs []error
	for _, c := range m.Collectors() {
		if err := r.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return errors.Join(errors.New("greylist: register metrics"), err)
	}
	return nil
}

func (m *Metrics) decided(d Decision, store string, took time.Duration) {
	m.Decisions.WithLabelValues(d.Action.String(), string(d.Reason)).Inc()
	m.Latency.WithLabelValues(store).Observe(took.Seconds())
}

func (m *Metrics) failed(mode string) { m.Failures.WithLabelValues(mode).Inc() }

func (m *Metrics) storeError(store, op string) { m.StoreErrors.WithLabelValues(store, op).Inc() }
