package greylist

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the greylist block of the gateway configuration (yaml key
// "greylist"). Decoding YAML into a Config starts from DefaultConfig, so a
// block only names what it changes. Durations are Go duration strings
// ("300ms", "5m", "48h"), and a whole number of days may lead them ("35d",
// "1d12h").
type Config struct {
	// Enabled turns greylisting on. Default true: greylisting stops most
	// spam from botnets, which do not retry, at the cost of a delay for a
	// first-time sender. When false, Check passes everything.
	Enabled bool `yaml:"enabled"`

	// Delay is how long a new triplet must wait before a retry passes.
	// Default 5m: real MTAs retry after 5 to 30 minutes, and spam software
	// that retries at all usually does so within seconds; longer delays
	// mostly hurt legitimate mail (password resets, sign-in codes).
	Delay Duration `yaml:"delay"`

	// RetryWindow is how long after first sight a retry is still accepted.
	// A retry later than that starts over as a new first sight. Default 48h:
	// long enough for slow retry schedules and queues that back off for
	// hours, short enough that stale entries go away.
	RetryWindow Duration `yaml:"retry_window"`

	// PassTTL is how long a triplet that passed is remembered, and how long
	// a network stays auto-allowed; every pass refreshes it. Default 35d
	// (840h): covers monthly newsletters and statements, so regular
	// correspondents are delayed only once.
	PassTTL Duration `yaml:"pass_ttl"`

	// AutoAllowAfter is the number of passes after which the client network
	// is allowed for every triplet, so a well-behaved server is not delayed
	// again for each new sender or recipient. 0 turns auto-allow off.
	// Default 5: a network that retried properly five times (in five
	// different hours) is a real MTA.
	AutoAllowAfter int `yaml:"auto_allow_after"`

	// AutoAllowInterval is the least time between two passes counted
	// towards AutoAllowAfter. Default 1h: a burst of messages (one
	// newsletter to many recipients) counts as one pass, so five passes show
	// retry behaviour over time rather than volume.
	AutoAllowInterval Duration `yaml:"auto_allow_interval"`

	// IPv4Prefix groups IPv4 clients into networks of this prefix length.
	// Default 24: large senders retry from another address of the same
	// farm, usually in the same /24.
	IPv4Prefix int `yaml:"ipv4_prefix"`

	// IPv6Prefix groups IPv6 clients likewise. Default 64: one /64 is one
	// site's LAN; hosts pick addresses freely inside it.
	IPv6Prefix int `yaml:"ipv6_prefix"`

	// Deadline bounds one decision, store round trip included. Default
	// 300ms: a local Redis answers in well under a millisecond, and an SMTP
	// client waits minutes for RCPT, but a stuck store must not hold
	// sessions (and their memory) for long.
	Deadline Duration `yaml:"deadline"`

	// FailMode says what a decision is when the store fails or misses the
	// deadline: "open" (pass, flagged FailOpen and counted) or "closed"
	// (defer with 451, which senders retry). Default "open": a Redis outage
	// should not delay all inbound mail; content checks still run.
	FailMode string `yaml:"fail_mode"`

	// AllowCIDRs are client networks never greylisted (e.g. partners,
	// secondary MX hosts, large senders known to retry from far apart
	// addresses). Default none.
	AllowCIDRs []string `yaml:"allow_cidrs"`

	// AllowDomains are domains never greylisted when they, or a parent of
	// them, match the client's verified reverse name (Triplet.ClientName)
	// or the envelope sender's domain. Sender domains are easy to forge:
	// prefer client names. Default none.
	AllowDomains []string `yaml:"allow_domains"`

	// AllowRecipients are recipients never greylisted: a full address
	// ("postmaster@example.com"), a local part with a trailing "@"
	// ("abuse@", any of our domains) or a domain ("@example.org"). Default
	// none.
	AllowRecipients []string `yaml:"allow_recipients"`

	// PassCache is how long a gateway remembers by itself that a triplet
	// passed or that its network is allowed, and answers again without a
	// store round trip. Used with Redis only (the in-process store is as
	// fast). Default 1m: a burst from one correspondent costs one round
	// trip, while the store loses nothing that matters: pass records live
	// for pass_ttl and passes count towards auto-allow at most once per
	// auto_allow_interval. 0 asks the store every time.
	PassCache Duration `yaml:"pass_cache"`

	// MaxMemoryEntries caps the in-process store (used when no Redis is
	// configured), counting one entry per triplet and per network record.
	// At the cap, expired entries go first, then the least recently
	// written. Default 200000: about 60 MB, several weeks of triplets for a
	// site receiving some ten thousand messages a day.
	MaxMemoryEntries int `yaml:"max_memory_entries"`

	// Redis selects the shared store. With no addresses the in-process
	// memory store is used.
	Redis RedisConfig `yaml:"redis"`
}

// RedisConfig reaches Redis as a single node, through Sentinel or as a
// Cluster, from one block.
type RedisConfig struct {
	// Addrs are host:port addresses: the node, the Sentinels (with
	// MasterName), or a seed list of cluster nodes (with Cluster).
	Addrs []string `yaml:"addrs"`
	// MasterName is the Sentinel master name; set it to use Sentinel.
	MasterName string `yaml:"master_name"`
	// Cluster selects the cluster client, even with one seed address.
	Cluster bool `yaml:"cluster"`
	// Username and Password authenticate (Redis 6 ACL or requirepass).
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// SentinelPassword authenticates to the Sentinels, if they need it.
	SentinelPassword string `yaml:"sentinel_password"`
	// DB is the database number (single node and Sentinel only).
	DB int `yaml:"db"`
	// KeyPrefix is put before every key, to share a Redis with other
	// applications or gateways groups. Default "" (keys start with "gl:").
	KeyPrefix string `yaml:"key_prefix"`
	// DialTimeout bounds connecting. Default 1s.
	DialTimeout Duration `yaml:"dial_timeout"`
	// PoolSize is the number of connections per node. Default 0: go-redis'
	// default of ten per CPU.
	PoolSize int `yaml:"pool_size"`
}

// Failure modes for Config.FailMode.
const (
	FailOpen   = "open"
	FailClosed = "closed"
)

// DefaultConfig returns the defaults documented on Config's fields.
func DefaultConfig() Config {
	return Config{
		Enabled:           true,
		Delay:             Duration(5 * time.Minute),
		RetryWindow:       Duration(48 * time.Hour),
		PassTTL:           Duration(35 * 24 * time.Hour),
		AutoAllowAfter:    5,
		AutoAllowInterval: Duration(time.Hour),
		IPv4Prefix:        24,
		IPv6Prefix:        64,
		Deadline:          Duration(300 * time.Millisecond),
		FailMode:          FailOpen,
		MaxMemoryEntries:  200000,
		PassCache:         Duration(time.Minute),
		Redis: RedisConfig{
			DialTimeout: Duration(time.Second),
		},
	}
}

// UnmarshalYAML decodes the block over DefaultConfig.
func (c *Config) UnmarshalYAML(n *yaml.Node) error {
	type plain Config
	d := plain(DefaultConfig())
	if err := n.Decode(&d); err != nil {
		return err
	}
	*c = Config(d)
	return nil
}

// Validate checks the configuration and names the offending key, as in
// "greylist.delay: must be > 0". A disabled configuration is still checked,
// so a typo does not wait for the day it is switched on.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("greylist.%s: %s", key, fmt.Sprintf(format, args...)))
	}
	// The stores keep times in milliseconds, and a delay under a second
	// would not stop a sender that retries at once.
	if c.Delay < Duration(time.Second) {
		bad("delay", "must be at least 1s, got %v", c.Delay)
	}
	if c.RetryWindow <= c.Delay {
		bad("retry_window", "must be longer than greylist.delay (%v)", c.Delay)
	}
	if c.PassTTL < Duration(time.Second) {
		bad("pass_ttl", "must be at least 1s, got %v", c.PassTTL)
	}
	if c.AutoAllowAfter < 0 {
		bad("auto_allow_after", "must be >= 0 (0 turns auto-allow off)")
	}
	if c.AutoAllowInterval < 0 {
		bad("auto_allow_interval", "must be >= 0")
	}
	if c.IPv4Prefix < 8 || c.IPv4Prefix > 32 {
		bad("ipv4_prefix", "must be between 8 and 32, got %d", c.IPv4Prefix)
	}
	if c.IPv6Prefix < 16 || c.IPv6Prefix > 128 {
		bad("ipv6_prefix", "must be between 16 and 128, got %d", c.IPv6Prefix)
	}
	if c.PassCache < 0 || c.PassCache > c.AutoAllowInterval && c.AutoAllowInterval > 0 && c.AutoAllowAfter > 0 {
		bad("pass_cache", "must be between 0 and greylist.auto_allow_interval (%v)", c.AutoAllowInterval)
	}
	if c.Deadline <= 0 {
		bad("deadline", "must be > 0")
	}
	if c.FailMode != FailOpen && c.FailMode != FailClosed {
		bad("fail_mode", "must be %q or %q, got %q", FailOpen, FailClosed, c.FailMode)
	}
	for i, s := range c.AllowCIDRs {
		if _, err := parsePrefix(s); err != nil {
			bad(fmt.Sprintf("allow_cidrs[%d]", i), "%v", err)
		}
	}
	for i, s := range c.AllowDomains {
		if !allowDomainSyntax(s) {
			bad(fmt.Sprintf("allow_domains[%d]", i), "not a domain: %q (a domain includes its subdomains: write example.com, not *.example.com)", s)
		}
	}
	for i, s := range c.AllowRecipients {
		if !strings.Contains(s, "@") || strings.TrimSpace(s) == "@" {
			bad(fmt.Sprintf("allow_recipients[%d]", i), "want address, local@ or @domain, got %q", s)
		}
	}
	if c.MaxMemoryEntries <= 0 {
		bad("max_memory_entries", "must be > 0")
	}
	r := c.Redis
	if r.Cluster && r.MasterName != "" {
		bad("redis.cluster", "cannot be combined with greylist.redis.master_name")
	}
	if (r.Cluster || r.MasterName != "") && len(r.Addrs) == 0 {
		bad("redis.addrs", "needed with cluster or master_name")
	}
	for i, a := range r.Addrs {
		if _, _, err := splitHostPort(a); err != nil {
			bad(fmt.Sprintf("redis.addrs[%d]", i), "%v", err)
		}
	}
	if r.DB < 0 || (r.DB != 0 && r.Cluster) {
		bad("redis.db", "must be >= 0, and 0 with a cluster")
	}
	if strings.ContainsAny(r.KeyPrefix, "{}") {
		bad("redis.key_prefix", "must not contain { or }: the network is the cluster hash tag")
	}
	if r.DialTimeout < 0 {
		bad("redis.dial_timeout", "must be >= 0")
	}
	if r.PoolSize < 0 {
		bad("redis.pool_size", "must be >= 0")
	}
	return errors.Join(errs...)
}

// allowDomainSyntax reports whether s can match an allow_domains entry:
// a domain name, a leading dot allowed. "*.example.com" was taken and
// never matched anything, since no name has a "*" in it: letters, digits,
// "-", "_" and non-ASCII (a U-label) only, in labels that are not empty.
func allowDomainSyntax(s string) bool {
	d := strings.TrimPrefix(normDomain(s), ".")
	if d == "" {
		return false
	}
	for _, l := range strings.Split(d, ".") {
		if l == "" {
			return false
		}
		for _, c := range []byte(l) {
			if c < 0x80 && !(c == '-' || c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z') {
				return false
			}
		}
	}
	return true
}

func splitHostPort(a string) (string, int, error) {
	i := strings.LastIndexByte(a, ':')
	if i <= 0 {
		return "", 0, fmt.Errorf("want host:port, got %q", a)
	}
	p, err := strconv.Atoi(a[i+1:])
	if err != nil || p <= 0 || p > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", a)
	}
	return a[:i], p, nil
}

// parsePrefix parses a CIDR or a bare address (taken as a host route) and
// masks it.
func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap().WithZone("")
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Duration is a time.Duration that reads and writes as a Go duration
// string in YAML and JSON, with whole days allowed in front ("35d").
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML reads a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalText reads a duration string (JSON, flags).
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// ParseDuration parses a Go duration string, optionally led by a whole
// number of days: "35d", "2d12h", "90m", "-1h" (negative values parse; the
// config validation rejects them where they make no sense).
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	neg := false
	rest := s
	if strings.HasPrefix(rest, "-") {
		neg, rest = true, rest[1:]
	} else if strings.HasPrefix(rest, "+") {
		rest = rest[1:]
	}
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	if i > 0 && i < len(rest) && rest[i] == 'd' {
		days, err := strconv.ParseInt(rest[:i], 10, 64)
		const maxDays = int64((1<<63 - 1) / int64(24*time.Hour))
		if err != nil || days > maxDays {
			return 0, fmt.Errorf("duration %q: too many days", s)
		}
		total := time.Duration(days) * 24 * time.Hour
		if tail := rest[i+1:]; tail != "" {
			t, err := time.ParseDuration(tail)
			if err != nil || t < 0 {
				return 0, fmt.Errorf("duration %q: bad part after days", s)
			}
			if t > time.Duration(1<<63-1)-total {
				return 0, fmt.Errorf("duration %q: too long", s)
			}
			total += t
		}
		if neg {
			total = -total
		}
		return total, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("duration %q: %w", s, err)
	}
	return v, nil
}
