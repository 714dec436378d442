package checks

import (
	"github.com/prometheus/client_golang/prometheus"
)

// The Resolver and the DNSBL are prometheus.Collectors: the daemon
// registers them (registry.MustRegister(res, bl)). Nothing here registers
// itself globally, so tests can build as many as they like.

var (
	dnsQueriesDesc = prometheus.NewDesc("gatewayd_dns_queries_total",
		"DNS queries sent to the recursive servers (UDP and TCP).", nil, nil)
	dnsLookupsDesc = prometheus.NewDesc("gatewayd_dns_lookups_total",
		"DNS lookups by outcome: cache hit, cache miss, joined an in-flight query, timeout, error.",
		[]string{"outcome"}, nil)
	dnsTCPDesc = prometheus.NewDesc("gatewayd_dns_tcp_retries_total",
		"Truncated UDP answers asked again over TCP.", nil, nil)
	dnsCacheDesc = prometheus.NewDesc("gatewayd_dns_cache_entries",
		"Answers in the DNS cache.", nil, nil)

	dnsblLookupsDesc = prometheus.NewDesc("gatewayd_dnsbl_lookups_total",
		"DNSBL/DNSWL lookups by zone and result (listed, notlisted, temperror, zoneerror).",
		[]string{"zone", "result"}, nil)
	dnsblHealthDesc = prometheus.NewDesc("gatewayd_dnsbl_zone_healthy",
		"1 if the zone passed its last RFC 5782 test-entry check (or was not checked yet), 0 if not.",
		[]string{"zone", "state"}, nil)
	dnsblHealthFailDesc = prometheus.NewDesc("gatewayd_dnsbl_health_failures_total",
		"Failed RFC 5782 test-entry checks by zone.", []string{"zone"}, nil)
)

// Describe implements prometheus.Collector.
func (r *Resolver) Describe(ch chan<- *prometheus.Desc) {
	ch <- dnsQueriesDesc
	ch <- dnsLookupsDesc
	ch <- dnsTCPDesc
	ch <- dnsCacheDesc
}

// Collect implements prometheus.Collector.
func (r *Resolver) Collect(ch chan<- prometheus.Metric) {
	s := r.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(dnsQueriesDesc, s.Queries)
	counter(dnsLookupsDesc, s.CacheHits, "cache_hit")
	counter(dnsLookupsDesc, s.CacheMisses, "cache_miss")
	counter(dnsLookupsDesc, s.Shared, "shared")
	counter(dnsLookupsDesc, s.Timeouts, "timeout")
	counter(dnsLookupsDesc, s.Errors, "error")
	counter(dnsTCPDesc, s.TCPRetries)
	ch <- prometheus.MustNewConstMetric(dnsCacheDesc, prometheus.GaugeValue, float64(s.CacheEntries))
}

// Describe implements prometheus.Collector.
func (b *DNSBL) Describe(ch chan<- *prometheus.Desc) {
	ch <- dnsblLookupsDesc
	ch <- dnsblHealthDesc
	ch <- dnsblHealthFailDesc
}

// Collect implements prometheus.Collector.
func (b *DNSBL) Collect(ch chan<- prometheus.Metric) {
	for _, z := range b.zones {
		counter := func(d *prometheus.Desc, v uint64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
		}
		counter(dnsblLookupsDesc, z.listed.Load(), z.name, string(Listed))
		counter(dnsblLookupsDesc, z.notListed.Load(), z.name, string(NotListed))
		counter(dnsblLookupsDesc, z.tempErrors.Load(), z.name, string(ListTemp))
		counter(dnsblLookupsDesc, z.zoneErrors.Load(), z.name, string(ListError))
		counter(dnsblHealthFailDesc, z.healthFailures.Load(), z.name)
		h := z.getHealth()
		v := 1.0
		if h.State == HealthBroken || h.State == HealthUnreachable {
			v = 0
		}
		ch <- prometheus.MustNewConstMetric(dnsblHealthDesc, prometheus.GaugeValue, v, z.name, string(h.State))
	}
}
