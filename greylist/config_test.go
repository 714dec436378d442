package greylist

import (
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestDefaultConfigValid(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigYAML(t *testing.T) {
	var doc struct {
		Greylist Config `yaml:"greylist"`
	}
	src := `
greylist:
  delay: 2m
  pass_ttl: 30d
  fail_mode: closed
  allow_cidrs: [192.0.2.0/24, "2001:db8::1"]
  redis:
    addrs: ["127.0.0.1:6379"]
    key_prefix: "mx1:"
`
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	c := doc.Greylist
	if c.Delay.D() != 2*time.Minute || c.PassTTL.D() != 30*24*time.Hour || c.FailMode != FailClosed {
		t.Errorf("decoded %+v", c)
	}
	// Unnamed keys keep their defaults.
	d := DefaultConfig()
	if !c.Enabled || c.RetryWindow != d.RetryWindow || c.AutoAllowAfter != 5 || c.IPv4Prefix != 24 ||
		c.Deadline != d.Deadline || c.Redis.DialTimeout != d.Redis.DialTimeout {
		t.Errorf("defaults lost: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
	out, err := yaml.Marshal(c)
	if err != nil || !strings.Contains(string(out), "delay: 2m0s") {
		t.Errorf("marshal: %s %v", out, err)
	}
	var bad Config
	if err := yaml.Unmarshal([]byte("delay: soon"), &bad); err == nil {
		t.Error("bad duration decoded")
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.Delay = 0 }, "greylist.delay: must be at least 1s"},
		{func(c *Config) { c.Delay = Duration(900 * time.Microsecond) }, "greylist.delay: must be at least 1s, got 900µs"},
		{func(c *Config) { c.PassTTL = Duration(500 * time.Millisecond) }, "greylist.pass_ttl: must be at least 1s"},
		{func(c *Config) { c.RetryWindow = c.Delay }, "greylist.retry_window:"},
		{func(c *Config) { c.PassTTL = -1 }, "greylist.pass_ttl:"},
		{func(c *Config) { c.AutoAllowAfter = -1 }, "greylist.auto_allow_after:"},
		{func(c *Config) { c.AutoAllowInterval = -1 }, "greylist.auto_allow_interval:"},
		{func(c *Config) { c.IPv4Prefix = 33 }, "greylist.ipv4_prefix:"},
		{func(c *Config) { c.IPv6Prefix = 8 }, "greylist.ipv6_prefix:"},
		{func(c *Config) { c.Deadline = 0 }, "greylist.deadline:"},
		{func(c *Config) { c.FailMode = "maybe" }, "greylist.fail_mode:"},
		{func(c *Config) { c.AllowCIDRs = []string{"192.0.2.0/24", "x"} }, "greylist.allow_cidrs[1]:"},
		{func(c *Config) { c.AllowDomains = []string{"a@b"} }, "greylist.allow_domains[0]:"},
		// Never matched: no name has a "*" or an empty label.
		{func(c *Config) { c.AllowDomains = []string{"example.org", "*.example.com"} }, `greylist.allow_domains[1]: not a domain: "*.example.com"`},
		{func(c *Config) { c.AllowDomains = []string{"a..example.com"} }, "greylist.allow_domains[0]:"},
		{func(c *Config) { c.AllowDomains = []string{"example.com/24"} }, "greylist.allow_domains[0]:"},
		{func(c *Config) { c.AllowRecipients = []string{"bob"} }, "greylist.allow_recipients[0]:"},
		{func(c *Config) { c.MaxMemoryEntries = 0 }, "greylist.max_memory_entries:"},
		{func(c *Config) { c.PassCache = -1 }, "greylist.pass_cache:"},
		{func(c *Config) { c.PassCache = Duration(2 * time.Hour) }, "greylist.pass_cache:"},
		{func(c *Config) { c.Redis.Cluster = true }, "greylist.redis.addrs:"},
		{func(c *Config) { c.Redis.Cluster, c.Redis.MasterName = true, "m" }, "greylist.redis.cluster:"},
		{func(c *Config) { c.Redis.Addrs = []string{"nohost"} }, "greylist.redis.addrs[0]:"},
		{func(c *Config) { c.Redis.Addrs = []string{"h:1"}; c.Redis.Cluster = true; c.Redis.DB = 1 }, "greylist.redis.db:"},
		{func(c *Config) { c.Redis.KeyPrefix = "{x}" }, "greylist.redis.key_prefix:"},
	}
	ok := DefaultConfig()
	ok.AllowDomains = []string{"Example.COM.", ".example.org", "mail-1.example.net", "bücher.example", "[mx.example]"}
	if err := ok.Validate(); err != nil {
		t.Errorf("good allow_domains: %v", err)
	}
	for _, tt := range tests {
		c := DefaultConfig()
		tt.mod(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("want %q, got %v", tt.want, err)
		}
	}
}
