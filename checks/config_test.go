package checks

import (
	"os"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestConfigLoad(t *testing.T) {
	b, err := os.ReadFile("testdata/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c Config
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.DNS.Timeout != 2*time.Second || c.DNS.CacheSize != 5000 || len(c.DNS.Servers) != 2 {
		t.Errorf("dns = %+v", c.DNS)
	}
	z := c.DNSBL.Zones
	if len(z) != 3 || *z[0].Weight != 5 || z[0].Kind != KindIP || z[0].Type != TypeBlock ||
		z[1].Kind != KindDomain || *z[1].Weight != 1 || z[1].ErrorCodes[0] != "127.0.1.255" ||
		z[2].Type != TypeAllow || *z[2].Weight != -2.5 || z[2].ErrorCodes[0] != DefaultErrorCodes[0] {
		t.Errorf("zones = %+v", z)
	}
	if c.DNSBL.HealthInterval != 5*time.Minute || c.DKIM.MaxSignatures != 3 || c.SPF.Timeout != 10*time.Second ||
		c.DMARC.Timeout != 3*time.Second || c.AuthservID != "gw.example.net" {
		t.Errorf("config = %+v", c)
	}

	var d Config
	d.SetDefaults()
	if d.DNS.Timeout != DefaultDNSTimeout || d.DNS.CacheSize != DefaultDNSCacheSize || d.DKIM.MaxSignatures != 5 ||
		d.SPF.Timeout != DefaultSPFTimeout || d.DNSBL.HealthInterval != DefaultHealthInterval {
		t.Errorf("defaults = %+v", d)
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		yaml, err string
	}{
		{"dnsbl: {zones: [{zone: a.example}, {zone: b.example, codes: [127.0.0.300]}]}",
			`dnsbl.zones[1].codes: "127.0.0.300" is not an IPv4 address`},
		{"dnsbl: {zones: [{zone: a.example, error_codes: [mask:0]}]}", "dnsbl.zones[0].error_codes: "},
		{"dnsbl: {zones: [{zone: a.example, kind: url}]}", `dnsbl.zones[0].kind: "url" is not ip or domain`},
		{"dnsbl: {zones: [{zone: a.example, type: deny}]}", `dnsbl.zones[0].type: "deny" is not block or allow`},
		{"dnsbl: {zones: [{zone: ''}]}", "dnsbl.zones[0].zone: empty"},
		{"dnsbl: {zones: [{zone: 'a..example'}]}", `dnsbl.zones[0].zone: "a..example" is not a domain name`},
		{"dnsbl: {zones: [{zone: a.example}, {zone: A.example.}]}", `dnsbl.zones[1].zone: "A.example." is also dnsbl.zones[0]`},
		// Not even as another kind: metrics and stats are by zone name.
		{"dnsbl: {zones: [{zone: a.example}, {zone: b.example}, {zone: A.example., kind: domain}]}",
			`dnsbl.zones[2].zone: "A.example." is also dnsbl.zones[0]`},
		{"dns: {servers: [dns.example]}", `dns.servers[0]: "dns.example" is not an IP address`},
		{"dns: {servers: [192.0.2.1, dns.example]}", `dns.servers[1]: "dns.example" is not an IP address`},
		{"dns: {timeout: -1s}", "dns.timeout: -1s is negative"},
		{"dns: {cache_size: -2}", "dns.cache_size: -2"},
		{"dkim: {max_signatures: -1}", "dkim.max_signatures: -1 is negative"},
		{"spf: {timeout: -1s}", "spf.timeout"},
		{"dmarc: {timeout: -1s}", "dmarc.timeout"},
		{"dnsbl: {health_interval: -1s}", "dnsbl.health_interval"},
		{"dnsbl: {health_interval: 1ns}", "dnsbl.health_interval: 1ns is less than 1m0s"},
		{"dnsbl: {health_interval: 59s}", "dnsbl.health_interval: 59s is less than 1m0s"},
		{"dnsbl: {zones: [{zone: a.example, weight: .nan}]}", "dnsbl.zones[0].weight: NaN is not a finite number"},
		{"dnsbl: {zones: [{zone: a.example, weight: -.inf}]}", "dnsbl.zones[0].weight: -Inf is not a finite number"},
	}
	for _, c := range cases {
		var cfg Config
		if err := yaml.Unmarshal([]byte(c.yaml), &cfg); err != nil {
			t.Fatalf("%s: %v", c.yaml, err)
		}
		cfg.SetDefaults()
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: Validate() = %v, want %q", c.yaml, err, c.err)
		}
	}
	// A duration must be a Go duration string.
	var cfg Config
	if err := yaml.Unmarshal([]byte("dns: {timeout: 5}"), &cfg); err == nil {
		t.Error("timeout: 5 accepted; want a duration string")
	}
}
