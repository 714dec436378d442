package greylist

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Action is what a decision says to do with the recipient.
type Action int

// Actions.
const (
	// Pass: the triplet retried in time, or passed before. Accept.
	Pass Action = iota + 1
	// Defer: greylisted. The gateway answers 451 4.7.1 and tells the
	// client to retry after Decision.RetryAt.
	Defer
	// Allowed: a static allow list or an operator allow matched.
	Allowed
	// AutoAllowed: the client network earned auto-allow.
	AutoAllowed
)

var actionNames = map[Action]string{Pass: "pass", Defer: "defer", Allowed: "allowed", AutoAllowed: "auto_allowed"}

// String returns "pass", "defer", "allowed" or "auto_allowed".
func (a Action) String() string {
	if s, ok := actionNames[a]; ok {
		return s
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// MarshalText writes the action's name (for the decision log).
func (a Action) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText reads an action's name.
func (a *Action) UnmarshalText(b []byte) error {
	for k, v := range actionNames {
		if v == string(b) {
			*a = k
			return nil
		}
	}
	return fmt.Errorf("greylist: unknown action %q", b)
}

// Reason tells why a decision came out as it did; it is a short snake_case
// word for the decision log.
type Reason string

// Reasons.
const (
	ReasonFirstSeen     Reason = "first_seen"     // Defer: new triplet, or one retried after the window or whose pass expired
	ReasonTooEarly      Reason = "too_early"      // Defer: retried before the delay
	ReasonRetried       Reason = "retried"        // Pass: first retry after the delay
	ReasonKnown         Reason = "known"          // Pass: triplet passed before
	ReasonAllowCIDR     Reason = "allow_cidr"     // Allowed: greylist.allow_cidrs
	ReasonAllowClient   Reason = "allow_client"   // Allowed: client name in greylist.allow_domains
	ReasonAllowSender   Reason = "allow_sender"   // Allowed: sender domain in greylist.allow_domains
	ReasonAllowRcpt     Reason = "allow_rcpt"     // Allowed: greylist.allow_recipients
	ReasonOperatorAllow Reason = "operator_allow" // Allowed: an operator's allow
	ReasonAutoAllow     Reason = "auto_allow"     // AutoAllowed
	ReasonStoreError    Reason = "store_error"    // store failed or was too slow: FailOpen Pass, or Defer
	ReasonDisabled      Reason = "disabled"       // Pass: greylisting is off
)

// Triplet is what the gateway knows at RCPT time.
type Triplet struct {
	// IP is the client's address.
	IP netip.Addr
	// Sender is the envelope sender (MAIL FROM), "" or "<>" for bounces.
	Sender string
	// Recipient is the envelope recipient (RCPT TO).
	Recipient string
	// ClientName is the client's forward-confirmed reverse DNS name, if
	// any; only used for greylist.allow_domains. Leave it empty when not
	// confirmed: a PTR record alone is the client's to choose.
	ClientName string
}

// Decision is the greylist's answer for one recipient. It is a value for
// the gateway to act on and to log; the greylist never writes SMTP replies.
type Decision struct {
	Action Action `json:"action"`
	Reason Reason `json:"reason"`
	// RetryAt is, for Defer, when a retry will pass; the gateway tells the
	// client in its 451 reply.
	RetryAt time.Time `json:"retry_at,omitzero"`
	// FirstSeen is when the triplet was first seen (zero when allowed).
	FirstSeen time.Time `json:"first_seen,omitzero"`
	// Network is the client network of the triplet ("192.0.2.0/24").
	Network string `json:"network"`
	// Key is the triplet's store key (without KeyPrefix).
	Key string `json:"key"`
	// FailOpen says the store failed and the decision passed anyway
	// (fail_mode open). Err says why.
	FailOpen bool `json:"fail_open,omitempty"`
	// Err is the store error behind a store_error decision.
	Err error `json:"-"`
	// Passes is the network's count towards auto-allow.
	Passes int `json:"passes,omitempty"`
	// Cached says the decision is a pass the store gave within
	// greylist.pass_cache, answered without asking it again.
	Cached bool `json:"cached,omitempty"`
}

// Greylister makes greylist decisions. It is safe for concurrent use.
type Greylister struct {
	cfg    Config
	params Params
	store  Store
	owned  bool
	now    func() time.Time
	// clockGiven: WithClock set now, which the stores then use; else a
	// shared store decides on its own clock (Params.ServerClock).
	clockGiven bool
	metrics    *Metrics

	allowNets    []netip.Prefix
	allowDomains []string
	allowRcpts   []string

	passes *passCache // nil: every decision asks the store
}

// Option changes how New builds a Greylister.
type Option func(*Greylister)

// WithClock sets the clock (default time.Now). Tests use a fake clock to
// step over delays and windows without sleeping.
func WithClock(now func() time.Time) Option {
	return func(g *Greylister) { g.now, g.clockGiven = now, true }
}

// WithMetrics records into m, which the daemon registers once (see
// Metrics). Without it the Greylister has metrics of its own, reachable
// with Metrics().
func WithMetrics(m *Metrics) Option { return func(g *Greylister) { g.metrics = m } }

// New returns a Greylister over store, which the caller keeps ownership of
// (Close does not close it). The config is validated.
func New(cfg Config, store Store, opts ...Option) (*Greylister, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, errors.New("greylist: nil store")
	}
	g := &Greylister{
		cfg:   cfg,
		store: store,
		now:   time.Now,
		params: Params{
			Delay:             cfg.Delay.D(),
			RetryWindow:       cfg.RetryWindow.D(),
			PassTTL:           cfg.PassTTL.D(),
			AutoAllowAfter:    cfg.AutoAllowAfter,
			AutoAllowInterval: cfg.AutoAllowInterval.D(),
		},
	}
	for _, s := range cfg.AllowCIDRs {
		p, _ := parsePrefix(s) // validated
		g.allowNets = append(g.allowNets, p)
	}
	for _, d := range cfg.AllowDomains {
		g.allowDomains = append(g.allowDomains, strings.TrimPrefix(normDomain(d), "."))
	}
	for _, r := range cfg.AllowRecipients {
		// Whole, as the recipient it is compared with (staticAllow): the
		// cut of a long entry is no longer one of its three forms.
		g.allowRcpts = append(g.allowRcpts, recipientFull(r))
	}
	for _, o := range opts {
		o(g)
	}
	g.params.ServerClock = !g.clockGiven
	if g.metrics == nil {
		g.metrics = NewMetrics()
	}
	if cfg.PassCache > 0 && store.Name() != "memory" {
		g.passes = newPassCache(cfg.PassCache.D(), passCacheMax)
	}
	return g, nil
}

// Open builds the store the configuration names (Redis when
// greylist.redis.addrs is set, else memory) and a Greylister over it.
// Close closes that store.
func Open(cfg Config, opts ...Option) (*Greylister, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	st, err := NewStore(cfg)
	if err != nil {
		return nil, err
	}
	g, err := New(cfg, st, opts...)
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	g.owned = true
	return g, nil
}

// NewStore returns the store the configuration names: a RedisStore when
// greylist.redis.addrs is set, else a MemoryStore of
// greylist.max_memory_entries.
func NewStore(cfg Config) (Store, error) {
	if len(cfg.Redis.Addrs) > 0 {
		return NewRedisStore(cfg.Redis)
	}
	return NewMemoryStore(cfg.MaxMemoryEntries), nil
}

// Close closes the store if Open made it.
func (g *Greylister) Close() error {
	if g.owned {
		return g.store.Close()
	}
	return nil
}

// Config returns the configuration in force.
func (g *Greylister) Config() Config { return g.cfg }

// Store returns the store.
func (g *Greylister) Store() Store { return g.store }

// Metrics returns the metrics the Greylister records into.
func (g *Greylister) Metrics() *Metrics { return g.metrics }

// Normalize groups the client address and normalises sender and recipient
// as a decision does.
func (g *Greylister) Normalize(t Triplet) (Normalized, error) {
	if !t.IP.IsValid() {
		return Normalized{}, errors.New("greylist: invalid client address")
	}
	return Normalized{
		Network:   ClientNetwork(t.IP, g.cfg.IPv4Prefix, g.cfg.IPv6Prefix),
		Sender:    NormalizeSender(t.Sender),
		Recipient: NormalizeRecipient(t.Recipient),
	}, nil
}

// Check decides one recipient. It returns an error only for an invalid
// triplet (no client address); a store failure or a missed deadline gives a
// decision with Reason store_error and Err set: a Pass with FailOpen in
// fail_mode open, a Defer in fail_mode closed. The store call is bounded by
// greylist.deadline (and by ctx).
func (g *Greylister) Check(ctx context.Context, t Triplet) (Decision, error) {
	start := time.Now()
	n, err := g.Normalize(t)
	if err != nil {
		return Decision{}, err
	}
	d := Decision{Network: n.Network.String(), Key: TripletKey(n)}
	if !g.cfg.Enabled {
		d.Action, d.Reason = Pass, ReasonDisabled
		g.metrics.decided(d, g.store.Name(), time.Since(start))
		return d, nil
	}
	if r, ok := g.staticAllow(t, n); ok {
		d.Action, d.Reason = Allowed, r
		g.metrics.decided(d, g.store.Name(), time.Since(start))
		return d, nil
	}

	now := g.now()
	if c, ok := g.passes.get(d.Key, now); ok {
		d.Action, d.Reason, d.FirstSeen, d.Passes, d.Cached = c.Action, c.Reason, c.FirstSeen, c.Passes, true
		g.metrics.decided(d, "cache", time.Since(start))
		return d, nil
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.Deadline.D())
	defer cancel()
	o, err := g.store.Decide(ctx, n, now, g.params)
	if err != nil {
		d.Reason = ReasonStoreError
		d.Err = fmt.Errorf("greylist: %s store: %w", g.store.Name(), err)
		g.metrics.storeError(g.store.Name(), "decide")
		if g.cfg.FailMode == FailClosed {
			d.Action = Defer
			d.RetryAt = now.Add(g.params.Delay)
		} else {
			d.Action = Pass
			d.FailOpen = true
		}
		g.metrics.failed(g.cfg.FailMode)
		g.metrics.decided(d, g.store.Name(), time.Since(start))
		return d, nil
	}
	d.Action, d.Reason = o.Action, o.Reason
	d.FirstSeen, d.RetryAt, d.Passes = o.FirstSeen, o.RetryAt, o.Passes
	if d.Action != Defer {
		g.passes.put(d.Key, now, o)
	}
	g.metrics.decided(d, g.store.Name(), time.Since(start))
	return d, nil
}

// StaticCheck decides t as far as the configuration alone can, without
// the store: a Pass (reason disabled) when greylisting is off, Allowed when
// an allow list (allow_cidrs, allow_domains, allow_recipients) covers t,
// as Check decides them. ok is false when only the store can decide. It
// counts nothing (a dry run, such as gatewayd explain).
func (g *Greylister) StaticCheck(t Triplet) (d Decision, ok bool, err error) {
	n, err := g.Normalize(t)
	if err != nil {
		return Decision{}, false, err
	}
	d = Decision{Network: n.Network.String(), Key: TripletKey(n)}
	if !g.cfg.Enabled {
		d.Action, d.Reason = Pass, ReasonDisabled
		return d, true, nil
	}
	if r, ok := g.staticAllow(t, n); ok {
		d.Action, d.Reason = Allowed, r
		return d, true, nil
	}
	return d, false, nil
}

// passCacheMax bounds the pass cache: at 64Ki triplets (a few MB) it is
// swept of expired entries, and emptied if that is not enough.
const passCacheMax = 1 << 16

// passCache remembers recent passes of the store (greylist.pass_cache).
// It only ever holds passes, each until the sooner of its TTL and the end
// of what the store granted (Outcome.Until): an entry is stale only when
// the store's state changed behind it (an allow removed on another
// gateway, Redis emptied), and for at most its TTL; a pass the store
// grants is the same answer whether it was cached or not.
type passCache struct {
	ttl time.Duration
	max int

	mu sync.Mutex
	m  map[string]cachedPass
}

type cachedPass struct {
	Outcome
	until time.Time
}

func newPassCache(ttl time.Duration, max int) *passCache {
	return &passCache{ttl: ttl, max: max, m: make(map[string]cachedPass)}
}

func (c *passCache) get(key string, now time.Time) (Outcome, bool) {
	if c == nil {
		return Outcome{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok {
		return Outcome{}, false
	}
	if !now.Before(e.until) {
		delete(c.m, key)
		return Outcome{}, false
	}
	return e.Outcome, true
}

func (c *passCache) put(key string, now time.Time, o Outcome) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[key]; !ok && len(c.m) >= c.max {
		for k, e := range c.m {
			if !now.Before(e.until) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= c.max {
			clear(c.m)
		}
	}
	o.NowAutoAllowed = false
	if o.Reason == ReasonRetried {
		o.Reason = ReasonKnown // what the store says after the first pass
	}
	until := now.Add(c.ttl)
	if !o.Until.IsZero() {
		// Never past what the store granted (an operator allow shorter
		// than the cache, a pass_ttl shorter than it): the store would
		// then defer. now.Add keeps now's monotonic reading.
		if end := now.Add(o.Until.Sub(now)); end.Before(until) {
			until = end
		}
	}
	c.m[key] = cachedPass{Outcome: o, until: until}
}

// forgetNetwork drops the cached passes of a network's triplets (an
// operator allow was removed: this gateway must not keep answering with
// it; other gateways on the same Redis stop within their pass_cache).
func (c *passCache) forgetNetwork(n netip.Prefix) {
	if c == nil {
		return
	}
	prefix := netTag(n) + ":"
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.m {
		if strings.HasPrefix(k, prefix) {
			delete(c.m, k)
		}
	}
}

// staticAllow applies greylist.allow_cidrs, allow_domains and
// allow_recipients.
func (g *Greylister) staticAllow(t Triplet, n Normalized) (Reason, bool) {
	ip := t.IP.Unmap().WithZone("")
	for _, p := range g.allowNets {
		if p.Contains(ip) {
			return ReasonAllowCIDR, true
		}
	}
	if len(g.allowDomains) > 0 {
		if name := normDomain(t.ClientName); name != "" && domainListed(name, g.allowDomains) {
			return ReasonAllowClient, true
		}
		// The sender's whole domain, not the tail of n.Sender: that is cut
		// at maxPartLen, and a long local part would leave a prefix of the
		// domain ("x…x@partner.example" of "x…x@partner.example.evil").
		if _, dom, null := senderParts(t.Sender); !null && dom != "" && domainListed(dom, g.allowDomains) {
			return ReasonAllowSender, true
		}
	}
	if len(g.allowRcpts) == 0 {
		return "", false
	}
	// The whole recipient, not n.Recipient: that is cut at maxPartLen,
	// and a long local part would leave "x…x@example.com" of
	// "x…x@example.com.au".
	rcpt := recipientFull(t.Recipient)
	for _, r := range g.allowRcpts {
		switch {
		case strings.HasPrefix(r, "@"):
			if strings.HasSuffix(rcpt, r) {
				return ReasonAllowRcpt, true
			}
		case strings.HasSuffix(r, "@"):
			if strings.HasPrefix(rcpt, r) {
				return ReasonAllowRcpt, true
			}
		case r == rcpt:
			return ReasonAllowRcpt, true
		}
	}
	return "", false
}

// domainListed reports whether d is one of the domains or below one.
func domainListed(d string, list []string) bool {
	for _, l := range list {
		if d == l || strings.HasSuffix(d, "."+l) {
			return true
		}
	}
	return false
}
