package main

import (
	"path/filepath"
	"testing"

	"github.com/mxgate/gatewayd/config"
)

func TestColdRange(t *testing.T) {
	for _, c := range []struct {
		network string
		k, n    int
		want    string
	}{
		{"127.16.0.0/12", 0, 5000, "127.16.0.0-127.16.19.135"},
		{"127.16.0.0/12", 1, 5000, "127.16.19.136-127.16.39.15"},
		{"127.32.0.0/12", 2, 256, "127.32.2.0-127.32.2.255"},
		// Past the end of the network: the first block again.
		{"127.16.0.0/12", 1 << 20, 1, "127.16.0.0-127.16.0.0"},
		{"127.16.0.0/12", 209, 5000, "127.16.0.0-127.16.19.135"}, // 209 whole blocks fit
	} {
		if got := coldRange(c.network, c.k, c.n); got != c.want {
			t.Errorf("coldRange(%s, %d, %d) = %s, want %s", c.network, c.k, c.n, got, c.want)
		}
	}
}

func TestSpread(t *testing.T) {
	for _, c := range []struct {
		xs   []float64
		want string
	}{
		{nil, ""},
		{[]float64{0.5}, ""},
		{[]float64{0.58, 0.46, 0.64}, " (0.46–0.64)"},
	} {
		if got := spread(c.xs); got != c.want {
			t.Errorf("spread(%v) = %q, want %q", c.xs, got, c.want)
		}
	}
}

// TestConfigYAMLLoads: the configuration the bench writes loads, at the
// flags' defaults and at each setting a flag can give, with the values
// asked for and no others: a written 0 the configuration refuses (where
// 0 means nothing) must not reach it.
func TestConfigYAMLLoads(t *testing.T) {
	dir := t.TempDir()
	a := configAddrs{gateway: "127.0.0.1:2525", sink: "127.0.0.1:2526", dns: "127.0.0.1:5353", redis: "127.0.0.1:6379",
		decisions: filepath.Join(dir, "d.log"), tmp: dir, rules: filepath.Join("..", "..", "rules")}
	def := options{passCache: "1m"}
	for _, c := range []struct {
		name    string
		o       options
		udp     int
		cpus    int
		noRules bool
	}{
		{name: "defaults", o: def},
		{name: "udp 1", o: options{passCache: "1m", udpSocketQueries: 1}, udp: 1},
		{name: "cpus 1", o: options{passCache: "1m", cpus: 1}, cpus: 1},
		{name: "pass cache 0", o: options{passCache: "0"}},
		{name: "no rules", o: def, noRules: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := a
			if c.noRules {
				a.rules = ""
			}
			cfg, err := config.Parse("bench.yaml", []byte(configYAML(a, 20000, c.o)))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.CPUs != c.cpus || cfg.Limits.MaxConnections != 20000 || (cfg.Rules.Dir != "") == c.noRules {
				t.Errorf("cpus %d, max_connections %d, rules %q", cfg.CPUs, cfg.Limits.MaxConnections, cfg.Rules.Dir)
			}
			if c.udp > 0 && cfg.DNS.UDPSocketQueries != c.udp {
				t.Errorf("udp_socket_queries %d, want %d", cfg.DNS.UDPSocketQueries, c.udp)
			}
		})
	}
}
