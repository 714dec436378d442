// Package config loads and validates gatewayd's YAML configuration file.
//
// Every key is documented in the README and in gatewayd.example.yaml. An
// unknown key, a key given twice, or a bad value is an error that names the
// file, line, column and key path, and the daemon refuses to start on it.
// With no file at all, Default gives a gateway good for a first try: it
// listens on 127.0.0.1:2525, accepts mail for example.com and delivers to
// ./var/maildir.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mxgate/gatewayd/checks"
	"github.com/mxgate/gatewayd/greylist"
	"github.com/mxgate/gatewayd/internal/yamldoc"
)

// Config is the whole configuration file.
type Config struct {
	Hostname        string        `yaml:"hostname"`
	AuthservID      string        `yaml:"authserv_id"`
	Listen          []string      `yaml:"listen"`
	Domains         []string      `yaml:"domains"`
	TLS             TLS           `yaml:"tls"`
	Limits          Limits        `yaml:"limits"`
	Upstream        Upstream      `yaml:"upstream"`
	Maildir         string        `yaml:"maildir"`
	Quarantine      string        `yaml:"quarantine"`
	ProxyProtocol   ProxyProtocol `yaml:"proxy_protocol"`
	Metrics         Metrics       `yaml:"metrics"`
	Log             Log           `yaml:"log"`
	TempDir         string        `yaml:"temp_dir"`
	ShutdownTimeout Duration      `yaml:"shutdown_timeout"`
	// CPUs is how many threads run the gateway's Go code at once
	// (GOMAXPROCS); 0 leaves Go's default (every CPU the process may
	// use, cgroup quotas included, or the GOMAXPROCS variable). At most
	// MaxCPUs.
	CPUs int `yaml:"cpus"`

	// Checks names the checks to run: iprev, dnsbl, spf, dkim, dmarc.
	// The embedded defaults run none, so a first try needs no DNS.
	Checks   []string           `yaml:"checks"`
	DNS      checks.DNSConfig   `yaml:"dns"`
	DNSBL    checks.DNSBLConfig `yaml:"dnsbl"`
	SPF      checks.SPFConfig   `yaml:"spf"`
	DKIM     checks.DKIMConfig  `yaml:"dkim"`
	DMARC    checks.DMARCConfig `yaml:"dmarc"`
	Greylist greylist.Config    `yaml:"greylist"`

	// Rules configures the rule engine; without a directory the fixed
	// default policy applies.
	Rules Rules `yaml:"rules"`

	// File is the path the configuration was loaded from ("" for defaults).
	File  string `yaml:"-"`
	pos   map[string][2]int
	nulls map[string]bool // keys given with no value (the default kept)
}

// TLS holds the certificate for STARTTLS.
type TLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Limits bound what one client may cost us.
type Limits struct {
	MaxMessageSize      ByteSize `yaml:"max_message_size"`
	MaxRecipients       int      `yaml:"max_recipients"`
	MaxConnections      int      `yaml:"max_connections"`
	MaxConnectionsPerIP int      `yaml:"max_connections_per_ip"`
	IdleTimeout         Duration `yaml:"idle_timeout"`
	DataTimeout         Duration `yaml:"data_timeout"`
	MaxErrors           int      `yaml:"max_errors"`
	MaxLineLength       int      `yaml:"max_line_length"`
	MemoryThreshold     ByteSize `yaml:"memory_threshold"`
}

// Upstream is the internal MTA.
type Upstream struct {
	Addrs          []string `yaml:"addrs"`
	Helo           string   `yaml:"helo"`
	ConnectTimeout Duration `yaml:"connect_timeout"`
	CommandTimeout Duration `yaml:"command_timeout"`
	DataTimeout    Duration `yaml:"data_timeout"`
	MaxIdle        int      `yaml:"max_idle"`
	IdleTimeout    Duration `yaml:"idle_timeout"`
	StartTLS       string   `yaml:"starttls"`
	TLSSkipVerify  bool     `yaml:"tls_skip_verify"`
	Pipelining     bool     `yaml:"pipelining"`
	Chunking       bool     `yaml:"chunking"`
}

// ProxyProtocol configures PROXY protocol v1/v2 from trusted load balancers.
type ProxyProtocol struct {
	Trusted       []string `yaml:"trusted"`
	HeaderTimeout Duration `yaml:"header_timeout"`
}

// Metrics is the loopback HTTP listener for /metrics, /healthz, /readyz.
type Metrics struct {
	Listen string `yaml:"listen"`
}

// Rules is the rule files' directory.
type Rules struct {
	Dir   string `yaml:"dir"`   // rule files (*.yaml), loaded in lexical order; "" = built-in defaults
	Watch bool   `yaml:"watch"` // reload when a rule or list file changes (fsnotify)
}

// Log configures the decision log and the service log.
type Log struct {
	Decisions string `yaml:"decisions"` // stdout, stderr or a file path
	Level     string `yaml:"level"`     // debug, info, warn, error
	Format    string `yaml:"format"`    // text or json (service log)
}

// Default returns the embedded defaults.
func Default() *Config {
	return &Config{
		Listen:  []string{"127.0.0.1:2525"},
		Domains: []string{"example.com"},
		Limits: Limits{
			MaxMessageSize:      25 << 20,
			MaxRecipients:       100,
			MaxConnections:      10000,
			MaxConnectionsPerIP: 20,
			IdleTimeout:         Duration(5 * time.Minute),
			DataTimeout:         Duration(10 * time.Minute),
			MaxErrors:           10,
			MaxLineLength:       2048,
			MemoryThreshold:     1 << 20,
		},
		Upstream: Upstream{
			ConnectTimeout: Duration(10 * time.Second),
			CommandTimeout: Duration(time.Minute),
			DataTimeout:    Duration(10 * time.Minute),
			MaxIdle:        16,
			IdleTimeout:    Duration(30 * time.Second),
			StartTLS:       "none",
			Pipelining:     true,
			Chunking:       true,
		},
		Maildir:         "./var/maildir",
		Quarantine:      "./var/quarantine",
		ProxyProtocol:   ProxyProtocol{HeaderTimeout: Duration(5 * time.Second)},
		Metrics:         Metrics{Listen: "127.0.0.1:9025"},
		Log:             Log{Decisions: "stdout", Level: "info", Format: "text"},
		ShutdownTimeout: Duration(30 * time.Second),
		Greylist:        defaultGreylist(),
		Rules:           Rules{Watch: true},
	}
}

// defaultGreylist is greylisting on, with the local host never greylisted
// (local submissions, and a first try from the same machine).
func defaultGreylist() greylist.Config {
	g := greylist.DefaultConfig()
	g.AllowCIDRs = []string{"127.0.0.0/8", "::1/128"}
	return g
}

// CheckNames are the checks the `checks` key may name.
var CheckNames = []string{"iprev", "dnsbl", "spf", "dkim", "dmarc"}

// CheckOn reports whether the named check is enabled.
func (c *Config) CheckOn(name string) bool {
	for _, n := range c.Checks {
		if n == name {
			return true
		}
	}
	return false
}

// MaxCPUs bounds the cpus key. runtime.GOMAXPROCS takes its argument as
// an int32 and makes a P (scheduler state) for each: 2147483648 stopped
// the daemon at start ("procresize: invalid arg"), 4294967297 ran it on
// one CPU, and tens of millions exhausted memory, all after the
// configuration had been checked.
const MaxCPUs = 1024

// maxFileSize bounds the configuration file: a real one is a few KiB.
const maxFileSize = 4 << 20

// Load reads a configuration file over the defaults and validates it.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("config: %s: larger than %d MiB", path, maxFileSize>>20)
	}
	return Parse(path, data)
}

// Parse decodes configuration data over the defaults and validates it. name
// is used in error messages.
func Parse(name string, data []byte) (*Config, error) {
	c := Default()
	c.File = name
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return c, c.Validate()
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	// Documents after the first must be empty (a trailing "---").
	if at, err := yamldoc.Extra(dec); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	} else if at != nil {
		return nil, &Error{File: name, Line: at.Line, Column: max(at.Column, 1),
			Msg: "a second YAML document (after ---): the configuration is one document"}
	}
	d := &decoder{pos: map[string][2]int{}, nulls: map[string]bool{}}
	if err := d.decode(&root, reflect.ValueOf(c).Elem(), ""); err != nil {
		var ce *Error
		if errors.As(err, &ce) {
			ce.File = name
		}
		return nil, err
	}
	c.pos, c.nulls = d.pos, d.nulls
	c.trimRootDots()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate checks every value; the error names the first bad key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		e := &Error{File: c.File, Key: key, Msg: fmt.Sprintf(format, args...)}
		if p, ok := c.pos[key]; ok {
			e.Line, e.Column = p[0], p[1]
		}
		errs = append(errs, e)
	}
	// Our name goes into the greeting, the Received field and EHLO
	// upstream: a name that is not a domain would be sent as is.
	if c.Hostname != "" && !validDomain(c.Hostname) {
		bad("hostname", "%q is not a domain name", c.Hostname)
	}
	// The authserv-id starts our Authentication-Results field, and
	// incoming fields are removed when theirs equals it (RFC 8601 section
	// 5). Read back, it is a token: with a space, ";" or "(" in it, our
	// field was malformed and no forged field ever matched, so forged
	// results reached the internal MTA under our name.
	if c.AuthservID != "" && !validToken(c.AuthservID) {
		bad("authserv_id", "%q is not a token (RFC 8601 section 2.2: no spaces, controls or ()<>@,;:\\\"/[]?=); a domain name is usual", c.AuthservID)
	}
	if c.Upstream.Helo != "" && !validDomain(c.Upstream.Helo) && !validAddressLiteral(c.Upstream.Helo) {
		bad("upstream.helo", "%q is not a domain name or an address literal like [192.0.2.1]", c.Upstream.Helo)
	}
	if len(c.Listen) == 0 {
		bad("listen", "at least one address is needed")
	}
	// The same address twice stopped the daemon at start ("address
	// already in use") after the check of the file had passed it.
	listenAt := map[string]string{}
	for i, a := range c.Listen {
		key := fmt.Sprintf("listen[%d]", i)
		if err := hostPort(a); err != nil {
			bad(key, "%v", err)
			continue
		}
		id := sameAddr(a)
		if first, ok := listenAt[id]; ok {
			bad(key, "%q is also %s", a, first)
			continue
		}
		listenAt[id] = key
	}
	if len(c.Domains) == 0 {
		bad("domains", "at least one accepted domain is needed (the gateway accepts mail for no other)")
	}
	for i, d := range c.Domains {
		if !validDomain(d) {
			bad(fmt.Sprintf("domains[%d]", i), "%q is not a domain name", d)
		}
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		bad("tls", "cert and key go together")
	}
	for _, f := range []struct{ key, path string }{{"tls.cert", c.TLS.Cert}, {"tls.key", c.TLS.Key}} {
		if f.path != "" {
			if _, err := os.Stat(f.path); err != nil {
				bad(f.key, "%v", err)
			}
		}
	}
	l := c.Limits
	positive := func(key string, v int64) {
		if v <= 0 {
			bad(key, "must be greater than 0")
		}
	}
	positive("limits.max_message_size", int64(l.MaxMessageSize))
	positive("limits.max_recipients", int64(l.MaxRecipients))
	positive("limits.max_connections", int64(l.MaxConnections))
	positive("limits.max_connections_per_ip", int64(l.MaxConnectionsPerIP))
	positive("limits.idle_timeout", int64(l.IdleTimeout))
	positive("limits.data_timeout", int64(l.DataTimeout))
	positive("limits.max_errors", int64(l.MaxErrors))
	positive("limits.memory_threshold", int64(l.MemoryThreshold))
	if c.CPUs < 0 || c.CPUs > MaxCPUs {
		bad("cpus", "must be from 0 (Go's default) to %d", MaxCPUs)
	}
	if l.MaxLineLength < 512 {
		bad("limits.max_line_length", "must be at least 512 (RFC 5321 section 4.5.3.1.4)")
	}
	if l.MaxRecipients > 0 && l.MaxRecipients < 100 {
		// RFC 5321 section 4.5.3.1.8 asks servers to take at least 100.
		bad("limits.max_recipients", "must be at least 100 (RFC 5321 section 4.5.3.1.8)")
	}
	for i, a := range c.Upstream.Addrs {
		if err := hostPort(a); err != nil {
			bad(fmt.Sprintf("upstream.addrs[%d]", i), "%v", err)
		}
	}
	if c.Quarantine == "" {
		bad("quarantine", "a Maildir path is needed for quarantined messages")
	}
	if len(c.Upstream.Addrs) == 0 && c.Maildir == "" {
		bad("upstream.addrs", "no internal MTA and no maildir: mail would have nowhere to go")
	}
	u := c.Upstream
	positive("upstream.connect_timeout", int64(u.ConnectTimeout))
	positive("upstream.command_timeout", int64(u.CommandTimeout))
	positive("upstream.data_timeout", int64(u.DataTimeout))
	positive("upstream.idle_timeout", int64(u.IdleTimeout))
	if u.MaxIdle < 0 {
		bad("upstream.max_idle", "must not be negative")
	}
	switch u.StartTLS {
	case "none", "require":
	default:
		bad("upstream.starttls", "%q: want none or require", u.StartTLS)
	}
	for i, t := range c.ProxyProtocol.Trusted {
		if _, err := parsePrefix(t); err != nil {
			bad(fmt.Sprintf("proxy_protocol.trusted[%d]", i), "%q is not an IP address or CIDR", t)
		}
	}
	positive("proxy_protocol.header_timeout", int64(c.ProxyProtocol.HeaderTimeout))
	if c.Metrics.Listen != "" {
		if err := hostPort(c.Metrics.Listen); err != nil {
			bad("metrics.listen", "%v", err)
		} else if first, ok := listenAt[sameAddr(c.Metrics.Listen)]; ok {
			bad("metrics.listen", "%q is also %s", c.Metrics.Listen, first)
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q: want debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "%q: want text or json", c.Log.Format)
	}
	if c.Log.Decisions == "" {
		bad("log.decisions", "want stdout, stderr or a file path")
	}
	if c.TempDir != "" {
		// Checked here, not at the first large message: without it every
		// message over limits.memory_threshold would get a 451.
		if st, err := os.Stat(c.TempDir); err != nil {
			bad("temp_dir", "%v", err)
		} else if !st.IsDir() {
			bad("temp_dir", "%q is not a directory", c.TempDir)
		}
	}
	positive("shutdown_timeout", int64(c.ShutdownTimeout))
	for i, n := range c.Checks {
		if !slices.Contains(CheckNames, n) {
			bad(fmt.Sprintf("checks[%d]", i), "%q: want one of %s", n, strings.Join(CheckNames, ", "))
		}
	}
	if c.Rules.Dir != "" {
		if st, err := os.Stat(c.Rules.Dir); err != nil || !st.IsDir() {
			bad("rules.dir", "%q is not a directory", c.Rules.Dir)
		}
	}
	// dns.servers' syntax is checked by checks.DNSConfig.Validate, which
	// takes any port; the range is checked here.
	for i, a := range c.DNS.Servers {
		if _, _, err := net.SplitHostPort(a); err == nil {
			if err := hostPort(a); err != nil {
				bad(fmt.Sprintf("dns.servers[%d]", i), "%v", err)
			}
		}
	}
	// These keys take their zero value for "the default", so that the
	// checks' structures work unset; written in the file, 0 was taken for
	// the default without a word: "dns.cache_size: 0" kept a cache of
	// 10000 (-1 disables it), "dkim.max_signatures: 0" verified five, and
	// a timeout of 0 was the default, not "no timeout".
	for _, z := range []struct {
		key, def string
		zero     bool
	}{
		{"dns.timeout", "5s", c.DNS.Timeout == 0},
		{"dns.cache_size", "10000; -1 disables the cache", c.DNS.CacheSize == 0},
		{"dns.udp_socket_queries", "64", c.DNS.UDPSocketQueries == 0},
		{"dnsbl.health_interval", "10m", c.DNSBL.HealthInterval == 0},
		{"spf.timeout", "20s", c.SPF.Timeout == 0},
		{"dkim.max_signatures", "5", c.DKIM.MaxSignatures == 0},
		{"dkim.timeout", "10s", c.DKIM.Timeout == 0},
		{"dmarc.timeout", "10s", c.DMARC.Timeout == 0},
		{"greylist.redis.dial_timeout", "1s", c.Greylist.Redis.DialTimeout == 0},
	} {
		if _, given := c.pos[z.key]; given && z.zero && !c.nulls[z.key] {
			bad(z.key, "must be greater than 0 (leave the key out for the default, %s)", z.def)
		}
	}
	if c.CheckOn("dnsbl") && len(c.DNSBL.Zones) == 0 {
		bad("dnsbl.zones", "the dnsbl check is on but no zone is configured")
	}
	var subs []error
	for _, sub := range []error{c.DNS.Validate(), c.DNSBL.Validate(), c.SPF.Validate(), c.DKIM.Validate(), c.DMARC.Validate(), c.Greylist.Validate()} {
		// greylist.Config.Validate joins an error per bad key: each is
		// placed on its own, or all but the first went without the file
		// and position.
		if j, ok := sub.(interface{ Unwrap() []error }); ok {
			subs = append(subs, j.Unwrap()...)
		} else {
			subs = append(subs, sub)
		}
	}
	for _, sub := range subs {
		if sub != nil {
			e := &Error{File: c.File, Msg: sub.Error()}
			// The sub-configurations name their key first: find its position.
			if key, _, ok := strings.Cut(sub.Error(), ":"); ok {
				if p, ok := c.pos[key]; ok {
					e.Line, e.Column = p[0], p[1]
				}
			}
			errs = append(errs, e)
		}
	}
	return errors.Join(errs...)
}

// KeyError returns err as an error of key, placed at the key's value in
// the file when the file gave it: for what is found wrong only when a
// value is used (a path that does not open), so that the message names
// the key as Validate's do.
func (c *Config) KeyError(key string, err error) error {
	e := &Error{File: c.File, Key: key, Msg: err.Error()}
	if p, ok := c.pos[key]; ok {
		e.Line, e.Column = p[0], p[1]
	}
	return e
}

// ZoneNames are the configured DNSBL/DNSWL zones, for the rules to check
// the zones they name against.
func (c *Config) ZoneNames() []string {
	out := []string{}
	for _, z := range c.DNSBL.Zones {
		out = append(out, strings.ToLower(strings.TrimSuffix(z.Zone, ".")))
	}
	return out
}

// ProxyTrusted returns the parsed trusted networks.
func (c *Config) ProxyTrusted() []netip.Prefix {
	var out []netip.Prefix
	for _, t := range c.ProxyProtocol.Trusted {
		if p, err := parsePrefix(t); err == nil {
			out = append(out, p)
		}
	}
	return out
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// hostPort checks a host:port address as the daemon will use it: the
// syntax net.Listen and net.Dial take, and a port of 1 to 65535 (as
// greylist.redis.addrs is checked), by number or by a service name of
// /etc/services. Port 0, which would listen on a random port, is refused.
func hostPort(a string) error {
	_, p, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("%q is not host:port", a)
	}
	n, err := strconv.Atoi(p)
	if err != nil && p != "" && strings.Trim(p, "+-0123456789") != "" {
		n, err = net.LookupPort("tcp", p)
	}
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: the port must be a number from 1 to 65535", a)
	}
	return nil
}

// sameAddr is a listen address in one form, so that 127.0.0.1:025 and
// 127.0.0.1:25, or [::1]:25 and [0:0::1]:25, are seen to be the same.
func sameAddr(a string) string {
	h, p, err := net.SplitHostPort(a)
	if err != nil {
		return a
	}
	if n, err := strconv.Atoi(p); err == nil {
		p = strconv.Itoa(n)
	} else if n, err := net.LookupPort("tcp", p); err == nil {
		p = strconv.Itoa(n)
	}
	if ip, err := netip.ParseAddr(h); err == nil {
		h = ip.Unmap().String()
	} else {
		h = strings.ToLower(strings.TrimSuffix(h, "."))
	}
	return net.JoinHostPort(h, p)
}

// trimRootDots drops the root dot of a fully qualified hostname or
// upstream.helo ("mx.example.com." names mx.example.com): they are sent
// in the greeting, the Received field and EHLO as RFC 5321 Domains, which
// have none. A value that is no domain name is left as written, for
// Validate to refuse ("." is not an empty hostname).
func (c *Config) trimRootDots() {
	for _, name := range []*string{&c.Hostname, &c.Upstream.Helo} {
		if validDomain(*name) {
			*name = strings.TrimSuffix(*name, ".")
		}
	}
}

func validDomain(d string) bool {
	d = strings.TrimSuffix(d, ".")
	if d == "" || len(d) > 253 {
		return false
	}
	for _, l := range strings.Split(d, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range []byte(l) {
			if !(c == '-' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
				return false
			}
		}
	}
	return true
}

// validToken reports whether s is an RFC 2045 token, the unquoted form
// of an authserv-id.
func validToken(s string) bool {
	for _, c := range []byte(s) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?=`, c) >= 0 {
			return false
		}
	}
	return s != ""
}

// validAddressLiteral reports whether s is an RFC 5321 address literal,
// an EHLO argument for a host without a name: [192.0.2.1] or
// [IPv6:2001:db8::1].
func validAddressLiteral(s string) bool {
	in, ok := strings.CutPrefix(s, "[")
	if in, ok = strings.CutSuffix(in, "]"); !ok {
		return false
	}
	if v6, ok := strings.CutPrefix(in, "IPv6:"); ok {
		a, err := netip.ParseAddr(v6)
		return err == nil && a.Is6() && a.Zone() == ""
	}
	a, err := netip.ParseAddr(in)
	return err == nil && a.Is4()
}

// Duration is a time.Duration written as "300ms", "5s", "10m" or "2h".
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil || n.Kind != yaml.ScalarNode {
		return fmt.Errorf("%q is not a duration (write it like 300ms, 5s, 10m or 2h)", n.Value)
	}
	*d = Duration(v)
	return nil
}

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// ByteSize is a size in octets, written as a number or with a unit: 512KiB,
// 25MiB, 1GiB (or KB, MB, GB as powers of 1000).
type ByteSize int64

// UnmarshalYAML implements yaml.Unmarshaler.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseByteSize(n.Value)
	if err != nil || n.Kind != yaml.ScalarNode {
		return fmt.Errorf("%q is not a size (write it like 1048576, 512KiB or 25MiB)", n.Value)
	}
	*b = ByteSize(v)
	return nil
}

// ParseByteSize parses a size with an optional unit.
func ParseByteSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s = strings.TrimSpace(strings.TrimSuffix(s, u.suffix))
			mult = u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}
