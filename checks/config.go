package checks

import (
	"errors"
	"fmt"
	"math"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Config gathers the configuration of every check. Each part can also be
// used on its own. Zero values mean the documented defaults; call
// SetDefaults before reading them, and Validate to check a loaded file.
type Config struct {
	// AuthservID names us in Authentication-Results headers (RFC 8601
	// section 2.5); usually the gateway's host name. Default: none, the
	// gateway passes its host name.
	AuthservID string      `yaml:"authserv_id"`
	DNS        DNSConfig   `yaml:"dns"`
	DNSBL      DNSBLConfig `yaml:"dnsbl"`
	SPF        SPFConfig   `yaml:"spf"`
	DKIM       DKIMConfig  `yaml:"dkim"`
	DMARC      DMARCConfig `yaml:"dmarc"`
}

// SetDefaults fills zero values with the defaults.
func (c *Config) SetDefaults() {
	c.DNS.setDefaults()
	c.DNSBL.setDefaults()
	c.SPF.setDefaults()
	c.DKIM.setDefaults()
	c.DMARC.setDefaults()
}

// Validate checks every part and names the first bad key, like
// `dnsbl.zones[1].codes: "127.0.0.300" is not an IPv4 address`.
func (c *Config) Validate() error {
	return errors.Join(c.DNS.Validate(), c.DNSBL.Validate(), c.SPF.Validate(),
		c.DKIM.Validate(), c.DMARC.Validate())
}

// DNSConfig configures the Resolver.
type DNSConfig struct {
	// Servers are the recursive resolvers to ask, in order, as "host" or
	// "host:port" (port 53 by default). Default: the nameservers of
	// /etc/resolv.conf.
	Servers []string `yaml:"servers"`
	// Timeout bounds one lookup, all servers and the TCP retry included,
	// as a Go duration ("2s"). Default: 5s.
	Timeout time.Duration `yaml:"timeout"`
	// CacheSize is the number of answers (name and type) kept in the
	// cache. Default: 10000; -1 disables the cache.
	CacheSize int `yaml:"cache_size"`
	// UDPSocketQueries is how many queries one UDP socket asks before it
	// is closed and a new one, with a new random source port, opens (a
	// socket also closes after 10 seconds, and after any error or
	// timeout). 1 opens a socket per query. Default: 64.
	UDPSocketQueries int `yaml:"udp_socket_queries"`
}

// Defaults of DNSConfig.
const (
	DefaultDNSTimeout   = 5 * time.Second
	DefaultDNSCacheSize = 10000
)

func (c *DNSConfig) setDefaults() {
	if c.Timeout == 0 {
		c.Timeout = DefaultDNSTimeout
	}
	if c.CacheSize == 0 {
		c.CacheSize = DefaultDNSCacheSize
	}
	if c.UDPSocketQueries == 0 {
		c.UDPSocketQueries = DefaultUDPSocketQueries
	}
}

// Validate checks the DNS settings.
func (c *DNSConfig) Validate() error {
	for i, s := range c.Servers {
		host := s
		if h, _, err := net.SplitHostPort(s); err == nil {
			host = h
		}
		if net.ParseIP(strings.Trim(host, "[]")) == nil {
			// Indexed as every other list entry's error, so that the
			// configuration's error is placed at the entry.
			return fmt.Errorf("dns.servers[%d]: %q is not an IP address or IP:port", i, s)
		}
	}
	if c.Timeout < 0 {
		return fmt.Errorf("dns.timeout: %v is negative", c.Timeout)
	}
	if c.CacheSize < -1 {
		return fmt.Errorf("dns.cache_size: %d is not -1 (disabled), 0 (default) or positive", c.CacheSize)
	}
	if c.UDPSocketQueries < 0 {
		return fmt.Errorf("dns.udp_socket_queries: %d is negative (1 opens a socket per query)", c.UDPSocketQueries)
	}
	return nil
}

// DNSBLConfig configures the DNS block and allow lists.
type DNSBLConfig struct {
	Zones []ZoneConfig `yaml:"zones"`
	// HealthInterval is how often every zone is checked for the RFC 5782
	// section 5 test entries. Default: 10m.
	HealthInterval time.Duration `yaml:"health_interval"`
}

// DefaultHealthInterval is the default DNSBLConfig.HealthInterval.
const DefaultHealthInterval = 10 * time.Minute

// MinHealthInterval is the least DNSBLConfig.HealthInterval.
const MinHealthInterval = time.Minute

func (c *DNSBLConfig) setDefaults() {
	if c.HealthInterval == 0 {
		c.HealthInterval = DefaultHealthInterval
	}
	for i := range c.Zones {
		c.Zones[i].setDefaults()
	}
}

// Validate checks the zones.
func (c *DNSBLConfig) Validate() error {
	if c.HealthInterval < 0 {
		return fmt.Errorf("dnsbl.health_interval: %v is negative", c.HealthInterval)
	}
	// The health check asks the zone's test entries past the cache: an
	// interval of "1ms" or "1ns" asked them again as soon as they were
	// answered, without end, a flood any zone operator blocks.
	if c.HealthInterval > 0 && c.HealthInterval < MinHealthInterval {
		return fmt.Errorf("dnsbl.health_interval: %v is less than %v", c.HealthInterval, MinHealthInterval)
	}
	// A zone appears once, whatever its kind: its counters, its health and
	// its metrics series are keyed by zone name alone, and the same name as
	// an "ip" and a "domain" zone made two series with the same labels,
	// which fails the whole /metrics scrape.
	seen := map[string]int{}
	for i := range c.Zones {
		z := &c.Zones[i]
		key := fmt.Sprintf("dnsbl.zones[%d]", i)
		if err := z.validate(key); err != nil {
			return err
		}
		id := lowerDNSName(dns.Fqdn(z.Zone))
		if j, ok := seen[id]; ok {
			return fmt.Errorf("%s.zone: %q is also dnsbl.zones[%d] (a zone is listed once, as kind ip or domain)", key, z.Zone, j)
		}
		seen[id] = i
	}
	return nil
}

// Zone kinds and types.
const (
	KindIP     = "ip"     // the client IP, reversed (RFC 5782 section 2.1, 2.4)
	KindDomain = "domain" // a domain name (RFC 5782 section 2.2)
	TypeBlock  = "block"  // a DNSBL: a listing counts against the sender
	TypeAllow  = "allow"  // a DNSWL: a listing counts for the sender
)

// ZoneConfig is one DNSBL or DNSWL zone.
type ZoneConfig struct {
	// Zone is the DNS zone to query, e.g. "zen.spamhaus.org".
	Zone string `yaml:"zone"`
	// Kind is "ip" (queries for reversed IPv4 octets or IPv6 nibbles) or
	// "domain" (RHSBL/DBL: queries for a domain name). Default: "ip".
	Kind string `yaml:"kind"`
	// Type is "block" or "allow". Default: "block".
	Type string `yaml:"type"`
	// Codes are the answers that count as a listing: an address
	// ("127.0.0.2"), an inclusive range ("127.0.0.2-127.0.0.11") or a
	// bitmask on the last octet ("mask:0x04"; "mask 0x04" also accepted).
	// Default: any answer in 127.0.0.0/8 that is not an error code.
	Codes []string `yaml:"codes"`
	// ErrorCodes are answers that mean the zone refused to answer (never a
	// listing), in the same syntax. Default: 127.255.255.0/24, Spamhaus's
	// "query refused, open resolver, over limit". Answers outside
	// 127.0.0.0/8 are always zone errors.
	ErrorCodes []string `yaml:"error_codes"`
	// Weight is carried into each result for the policy to score.
	// Default: 1 for "block", -1 for "allow".
	Weight *float64 `yaml:"weight"`
	// Reason is the reply text of a listing when the zone's TXT record
	// for it is not known: the zone publishes none, or it was neither in
	// the DNS cache nor answered before the result was needed (the
	// listing never waits for its TXT; see Pending). "{subject}",
	// "{zone}" and "{code}" are replaced. Default: "listed in {zone}".
	Reason string `yaml:"reason"`
	// NoHealthCheck turns off the RFC 5782 test-entry check, for a private
	// zone that does not publish the test entries. Not recommended.
	NoHealthCheck bool `yaml:"no_health_check"`
}

// DefaultErrorCodes is the default ZoneConfig.ErrorCodes.
var DefaultErrorCodes = []string{"127.255.255.0-127.255.255.255"}

func (z *ZoneConfig) setDefaults() {
	if z.Kind == "" {
		z.Kind = KindIP
	}
	if z.Type == "" {
		z.Type = TypeBlock
	}
	if z.ErrorCodes == nil {
		z.ErrorCodes = DefaultErrorCodes
	}
	if z.Weight == nil {
		w := 1.0
		if z.Type == TypeAllow {
			w = -1
		}
		z.Weight = &w
	}
	if z.Reason == "" {
		z.Reason = "listed in {zone}"
	}
}

func (z *ZoneConfig) validate(key string) error {
	zone := strings.TrimSuffix(z.Zone, ".")
	if zone == "" {
		return fmt.Errorf("%s.zone: empty", key)
	}
	if _, ok := dns.IsDomainName(zone); !ok || strings.Contains(zone, "..") {
		return fmt.Errorf("%s.zone: %q is not a domain name", key, z.Zone)
	}
	switch z.Kind {
	case "", KindIP, KindDomain:
	default:
		return fmt.Errorf("%s.kind: %q is not ip or domain", key, z.Kind)
	}
	switch z.Type {
	case "", TypeBlock, TypeAllow:
	default:
		return fmt.Errorf("%s.type: %q is not block or allow", key, z.Type)
	}
	// A weight is added to the message's score: NaN made every score
	// NaN, so that no threshold ever held, and an infinity outweighed
	// every other rule.
	if z.Weight != nil && (math.IsNaN(*z.Weight) || math.IsInf(*z.Weight, 0)) {
		return fmt.Errorf("%s.weight: %v is not a finite number", key, *z.Weight)
	}
	for _, c := range z.Codes {
		if _, err := ParseCodeFilter(c); err != nil {
			return fmt.Errorf("%s.codes: %w", key, err)
		}
	}
	for _, c := range z.ErrorCodes {
		if _, err := ParseCodeFilter(c); err != nil {
			return fmt.Errorf("%s.error_codes: %w", key, err)
		}
	}
	return nil
}

// SPFConfig configures the SPF check.
type SPFConfig struct {
	// Timeout bounds a whole SPF evaluation (all its DNS lookups). RFC 7208
	// section 4.6.4 asks for at least 20 seconds. Default: 20s.
	Timeout time.Duration `yaml:"timeout"`
}

// DefaultSPFTimeout is the default SPFConfig.Timeout.
const DefaultSPFTimeout = 20 * time.Second

func (c *SPFConfig) setDefaults() {
	if c.Timeout == 0 {
		c.Timeout = DefaultSPFTimeout
	}
}

// Validate checks the SPF settings.
func (c *SPFConfig) Validate() error {
	if c.Timeout < 0 {
		return fmt.Errorf("spf.timeout: %v is negative", c.Timeout)
	}
	return nil
}

// DKIMConfig configures DKIM verification.
type DKIMConfig struct {
	// MaxSignatures is how many DKIM-Signature fields are verified, in
	// header order; the others get the result "neutral". Default: 5.
	MaxSignatures int `yaml:"max_signatures"`
	// Timeout bounds the key lookups of one message. Default: 10s.
	Timeout time.Duration `yaml:"timeout"`
}

// Defaults of DKIMConfig.
const (
	DefaultDKIMMaxSignatures = 5
	DefaultDKIMTimeout       = 10 * time.Second
)

func (c *DKIMConfig) setDefaults() {
	if c.MaxSignatures == 0 {
		c.MaxSignatures = DefaultDKIMMaxSignatures
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultDKIMTimeout
	}
}

// Validate checks the DKIM settings.
func (c *DKIMConfig) Validate() error {
	if c.MaxSignatures < 0 {
		return fmt.Errorf("dkim.max_signatures: %d is negative", c.MaxSignatures)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("dkim.timeout: %v is negative", c.Timeout)
	}
	return nil
}

// DMARCConfig configures the DMARC check.
type DMARCConfig struct {
	// Timeout bounds the policy lookups of one message. Default: 10s.
	Timeout time.Duration `yaml:"timeout"`
}

// DefaultDMARCTimeout is the default DMARCConfig.Timeout.
const DefaultDMARCTimeout = 10 * time.Second

func (c *DMARCConfig) setDefaults() {
	if c.Timeout == 0 {
		c.Timeout = DefaultDMARCTimeout
	}
}

// Validate checks the DMARC settings.
func (c *DMARCConfig) Validate() error {
	if c.Timeout < 0 {
		return fmt.Errorf("dmarc.timeout: %v is negative", c.Timeout)
	}
	return nil
}
