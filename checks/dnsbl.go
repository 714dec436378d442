package checks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/miekg/dns"
)

// DNSBL queries DNS block lists and allow lists (RFC 5782): for a client IP
// (zones of kind "ip") or a domain such as the HELO name, the MAIL FROM
// domain or the From header domain (zones of kind "domain").
//
// Lookups start in parallel when the subject is known (StartIP at connect)
// and are awaited only when a decision needs them (Pending.Wait).
//
// A zone's answer is a listing only when it passes the zone's code filter.
// Answers outside 127.0.0.0/8 and the zone's error codes (by default
// Spamhaus's 127.255.255.0/24: query refused, open resolver, over limit) are
// zone errors: never a listing, logged and counted.
//
// A listing's reason (the reply text) is the zone's TXT record for the
// name, or the zone's reason template when the TXT is not known. The TXT
// only words the reply, so a listing never waits for it: a zone's result
// is decided by its A answer and published at once, with the template as
// reason; the TXT replaces it if the DNS cache has it, or if it comes
// before the result is needed (see Pending). A slow or failing TXT lookup
// thus neither turns a listing into a temperror nor holds a session.
//
// Every zone is checked against its RFC 5782 section 5 test entries at
// start and periodically (Run). A zone that answers them wrongly (it does
// not list the test entry, or it lists the entry that must not be listed,
// or it answers with error codes) is "broken": its listings are not
// trusted (they become zone errors) until it passes again, and it is
// reported with slog at Error level, in the counters and by Healthy().
type DNSBL struct {
	res      *Resolver
	zones    []*zone
	log      *slog.Logger
	interval time.Duration
}

type zone struct {
	cfg      ZoneConfig
	name     string // lower case, no trailing dot
	codes    []CodeFilter
	errCodes []CodeFilter
	weight   float64

	mu     sync.Mutex
	health ZoneHealth

	lookups, listed, notListed, tempErrors, zoneErrors, healthFailures atomic.Uint64
}

// NewDNSBL builds the zones of cfg (defaults applied) on res. It does not
// query anything: call CheckHealth, and Run for the periodic checks.
func NewDNSBL(cfg DNSBLConfig, res *Resolver, log *slog.Logger) (*DNSBL, error) {
	cfg.Zones = append([]ZoneConfig(nil), cfg.Zones...)
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	b := &DNSBL{res: res, log: log, interval: cfg.HealthInterval}
	for _, zc := range cfg.Zones {
		z := &zone{
			cfg:    zc,
			name:   lowerDNSName(strings.TrimSuffix(zc.Zone, ".")),
			weight: *zc.Weight,
		}
		for _, c := range zc.Codes {
			f, _ := ParseCodeFilter(c) // checked by Validate
			z.codes = append(z.codes, f)
		}
		for _, c := range zc.ErrorCodes {
			f, _ := ParseCodeFilter(c)
			z.errCodes = append(z.errCodes, f)
		}
		z.health = ZoneHealth{Zone: z.name, State: HealthUnknown}
		b.zones = append(b.zones, z)
	}
	return b, nil
}

// ListStatus is the outcome of one zone lookup.
type ListStatus string

// Outcomes of a zone lookup.
const (
	Listed    ListStatus = "listed"    // the answer passed the code filter
	NotListed ListStatus = "notlisted" // NXDOMAIN, NODATA, or codes the filter does not take
	ListTemp  ListStatus = "temperror" // timeout or server failure: we do not know
	ListError ListStatus = "zoneerror" // the zone answered with an error code, or is broken
)

// ZoneResult is what one zone said about one subject.
type ZoneResult struct {
	Zone    string     `json:"zone,omitempty"`    // the zone, e.g. "zen.spamhaus.org"
	Kind    string     `json:"kind,omitempty"`    // KindIP or KindDomain
	Type    string     `json:"type,omitempty"`    // TypeBlock or TypeAllow
	Subject string     `json:"subject,omitempty"` // the IP or domain checked
	Query   string     `json:"query,omitempty"`   // the name asked, e.g. "2.0.0.127.zen.spamhaus.org"
	Status  ListStatus `json:"status,omitempty"`
	Listed  bool       `json:"listed,omitempty"` // Status == Listed
	Codes   []string   `json:"codes,omitempty"`  // the answer codes that passed the filter (Listed), or all codes (zone error)
	Reason  string     `json:"reason,omitempty"` // TXT record of the listing, or the zone's reason template when the TXT is not known (see Pending)
	Weight  float64    `json:"weight,omitempty"` // the zone's weight
	Error   string     `json:"error,omitempty"`  // why the status is temperror or zoneerror
}

// Pending is a set of zone lookups under way.
//
// A zone's result is done when its A answer is in. A listing whose TXT
// was not in the DNS cache then is published with the zone's reason
// template while the TXT is asked: Done is closed, and Wait returns early,
// only when those TXT lookups are over too, so a caller with time left
// gets the TXT as the reason, and a caller whose wait ends first gets the
// listing with the template (never a temperror). A result whose A answer
// was cached is complete when StartIP or StartDomain returns: its reason
// is the TXT if that is cached too, else the template (the TXT is then
// asked in the background, for the next connection).
type Pending struct {
	mu      sync.Mutex
	results []ZoneResult
	done    []bool
	all     chan struct{}
}

// Done is closed when every lookup has finished, the TXT lookups of
// listings included.
func (p *Pending) Done() <-chan struct{} { return p.all }

// Wait returns the results, one per zone in configuration order, waiting
// for the lookups until ctx ends. A zone that has not answered by then is
// reported as temperror (never as listed); a listing whose TXT has not
// come by then is reported with the zone's reason template.
func (p *Pending) Wait(ctx context.Context) []ZoneResult {
	select {
	case <-p.all:
	case <-ctx.Done():
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]ZoneResult, len(p.results))
	copy(out, p.results)
	for i, ok := range p.done {
		if !ok {
			out[i].Status = ListTemp
			out[i].Error = "no answer before the result was needed: " + ctx.Err().Error()
		}
	}
	return out
}

// StartIP starts the lookups of ip in every zone of kind "ip": reversed
// octets for IPv4 (RFC 5782 section 2.1), reversed nibbles for IPv6
// (section 2.4). An IPv4-mapped IPv6 address is looked up as IPv4.
func (b *DNSBL) StartIP(ctx context.Context, ip netip.Addr) *Pending {
	ip = ip.Unmap()
	rev := reverseIP(ip)
	return b.start(ctx, KindIP, ip.String(), func(z *zone) string {
		if rev == "" {
			return ""
		}
		return rev + "." + z.name
	})
}

// StartDomain starts the lookups of domain in every zone of kind "domain"
// (RFC 5782 section 2.2). An empty or malformed domain, or an IP literal,
// is not looked up and gives no results.
func (b *DNSBL) StartDomain(ctx context.Context, domain string) *Pending {
	d := lowerDNSName(strings.TrimSuffix(strings.TrimSpace(domain), "."))
	if !isASCII(d) {
		// Lists publish the A-label form (bücher.example is listed as
		// xn--bcher-kva.example): an internationalised name is looked up
		// as that, and one that has none is not looked up.
		if a, err := asciiDomain(d); err == nil && utf8.ValidString(d) {
			d = a
		} else {
			d = ""
		}
	}
	if _, err := netip.ParseAddr(strings.Trim(d, "[]")); err == nil {
		d = ""
	} else if _, ok := dns.IsDomainName(d); !ok || strings.Contains(d, "..") || !strings.Contains(d, ".") {
		d = ""
	}
	return b.start(ctx, KindDomain, d, func(z *zone) string {
		if d == "" {
			return ""
		}
		return d + "." + z.name
	})
}

// noLookups is the Pending of a start with nothing to ask: done, no
// results.
var noLookups = func() *Pending {
	p := &Pending{all: make(chan struct{})}
	close(p.all)
	return p
}()

func (b *DNSBL) start(ctx context.Context, kind, subject string, qname func(*zone) string) *Pending {
	var zs []*zone
	var qnames []string
	for _, z := range b.zones {
		if z.cfg.Kind != kind {
			continue
		}
		if q := qname(z); q != "" {
			zs, qnames = append(zs, z), append(qnames, q)
		}
	}
	if len(zs) == 0 {
		// Nothing to ask (no zone of this kind, or no subject): the
		// session keeps this until the next stage, so share one.
		return noLookups
	}
	p := &Pending{all: make(chan struct{})}
	p.results = make([]ZoneResult, len(zs))
	p.done = make([]bool, len(zs))
	var pending []int
	for i, z := range zs {
		p.results[i] = ZoneResult{Zone: z.name, Kind: z.cfg.Kind, Type: z.cfg.Type,
			Subject: subject, Query: qnames[i], Weight: z.weight}
		if !b.res.Cached(p.results[i].Query, dns.TypeA) {
			pending = append(pending, i)
			continue
		}
		// A cached answer costs no wait: no goroutine for it (most
		// clients of a busy MX are repeat visitors). Nor does the reason
		// of a listing: the TXT is taken only from the cache. When it
		// is not there (it expired before the A record, or its lookup
		// failed or gave nothing cacheable), asking it here would hold
		// this session up to the DNS timeout per zone, one zone after
		// another, on every connection of a listed client.
		r := b.lookup(ctx, z, p.results[i])
		if r.Listed && !b.cachedReason(&r) {
			q := r.Query
			tasks.Go(func() { b.res.LookupTXT(context.WithoutCancel(ctx), q) }) // for the next connection
		}
		p.results[i], p.done[i] = r, true
	}
	if len(pending) == 0 {
		close(p.all)
		return p
	}
	// The last lookup to finish closes all: no goroutine waits for them.
	left := new(atomic.Int32)
	left.Store(int32(len(pending)))
	for _, i := range pending {
		z := zs[i]
		tasks.Go(func() {
			r := b.lookup(ctx, z, p.results[i])
			known := !r.Listed || b.cachedReason(&r)
			// Published before the TXT is asked: the listing is decided,
			// and a Wait that ends now must report it.
			p.mu.Lock()
			p.results[i] = r
			p.done[i] = true
			p.mu.Unlock()
			if !known {
				if reason, ok := txtReason(b.res.LookupTXT(ctx, r.Query)); ok {
					p.mu.Lock()
					p.results[i].Reason = reason
					p.mu.Unlock()
				}
			}
			if left.Add(-1) == 0 {
				close(p.all)
			}
		})
	}
	return p
}

// ended is a context that has ended: a lookup on it is answered from the
// cache or not at all, never waited for.
var ended = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// cachedReason sets r.Reason to the TXT record of the listing r if the DNS
// cache has it, and reports whether the cache answered (a cached NXDOMAIN
// or NODATA leaves the template). It never waits for a server: should the
// entry expire between Cached and LookupTXT, the lookup on an ended
// context gives up at once.
func (b *DNSBL) cachedReason(r *ZoneResult) bool {
	if !b.res.Cached(r.Query, dns.TypeTXT) {
		return false
	}
	txts, err := b.res.LookupTXT(ended, r.Query)
	if reason, ok := txtReason(txts, err); ok {
		r.Reason = reason
		return true
	}
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// txtReason is the reason a listing's TXT records give, if any.
func txtReason(txts []string, err error) (string, bool) {
	if err != nil || len(txts) == 0 {
		return "", false
	}
	return strings.Join(txts, " "), true
}

// lookup asks one zone about one subject: its A record. A listing gets the
// zone's reason template; the callers put the TXT in its place when they
// have it.
func (b *DNSBL) lookup(ctx context.Context, z *zone, r ZoneResult) ZoneResult {
	z.lookups.Add(1)
	codes, err := b.codes(ctx, r.Query)
	if err != nil {
		z.tempErrors.Add(1)
		r.Status, r.Error = ListTemp, err.Error()
		b.log.Warn("dnsbl lookup failed", "zone", z.name, "query", r.Query, "err", err)
		return r
	}
	status, matched, why := z.classify(codes)
	if status == Listed {
		if h := z.getHealth(); h.State == HealthBroken {
			status = ListError
			why = "zone failed its health check (" + h.Detail + "); listing not trusted"
		}
	}
	switch status {
	case NotListed:
		z.notListed.Add(1)
		r.Status = NotListed
		return r
	case ListError:
		z.zoneErrors.Add(1)
		r.Status, r.Error = ListError, why
		r.Codes = addrStrings(codes)
		b.log.Warn("dnsbl zone error", "zone", z.name, "query", r.Query, "codes", r.Codes, "err", why)
		return r
	}
	z.listed.Add(1)
	r.Status, r.Listed = Listed, true
	r.Codes = addrStrings(matched)
	r.Reason = expandReason(z.cfg.Reason, r.Subject, z.name, r.Codes[0])
	return r
}

// expandReason fills {subject}, {zone} and {code} into a zone's reason
// (used when the TXT record of a listing is not known), in one pass: this
// runs for every listing, so no strings.Replacer is built for it.
func expandReason(tmpl, subject, zone, code string) string {
	if strings.IndexByte(tmpl, '{') < 0 {
		return tmpl
	}
	var b strings.Builder
	b.Grow(len(tmpl) + len(subject) + len(zone) + len(code))
	for i := 0; i < len(tmpl); i++ {
		if tmpl[i] == '{' {
			rest := tmpl[i:]
			switch {
			case strings.HasPrefix(rest, "{subject}"):
				b.WriteString(subject)
				i += len("{subject}") - 1
				continue
			case strings.HasPrefix(rest, "{zone}"):
				b.WriteString(zone)
				i += len("{zone}") - 1
				continue
			case strings.HasPrefix(rest, "{code}"):
				b.WriteString(code)
				i += len("{code}") - 1
				continue
			}
		}
		b.WriteByte(tmpl[i])
	}
	return b.String()
}

// codes returns the A records of qname; none for NXDOMAIN and NODATA.
func (b *DNSBL) codes(ctx context.Context, qname string) ([]netip.Addr, error) {
	resp, err := b.res.Query(ctx, qname, dns.TypeA)
	if err != nil {
		return nil, fmt.Errorf("dnsbl: %w", err)
	}
	return answerCodes(resp), nil
}

// freshCodes is codes asked of the servers themselves: neither read from
// the cache nor put into it. The health check uses it: through the cache,
// the NXDOMAIN of 1.0.0.127.<zone> was kept for as long as the zone's SOA
// allowed (up to 24 hours), so a zone that began listing everything
// passed every check meanwhile while every new client was refused; and
// the test entries had no business in the cache either. It bypasses
// Query's sharing of queries in flight too, which a check every few
// minutes per zone does not need.
func (b *DNSBL) freshCodes(ctx context.Context, qname string) ([]netip.Addr, error) {
	// Query bounds a lookup by the configured timeout; exchange does not.
	ctx, cancel := context.WithTimeout(ctx, b.res.timeout)
	defer cancel()
	resp, err := b.res.exchange(ctx, lowerDNSName(dns.Fqdn(qname)), dns.TypeA)
	if err != nil {
		return nil, fmt.Errorf("dnsbl: %w", err)
	}
	return answerCodes(resp), nil
}

// answerCodes returns the IPv4 addresses of the A records of resp.
func answerCodes(resp *Response) []netip.Addr {
	var out []netip.Addr
	for _, rr := range resp.Answer {
		if a, ok := rr.(*dns.A); ok {
			if ip, ok := netip.AddrFromSlice(a.A.To4()); ok {
				out = append(out, ip)
			}
		}
	}
	return out
}

// classify applies the zone's error codes and code filter to an answer.
func (z *zone) classify(codes []netip.Addr) (ListStatus, []netip.Addr, string) {
	if len(codes) == 0 {
		return NotListed, nil, ""
	}
	for _, c := range codes {
		if !loopback8.Contains(c) {
			return ListError, nil, "answer " + c.String() + " is outside 127.0.0.0/8"
		}
		for _, f := range z.errCodes {
			if f.Match(c) {
				return ListError, nil, "answer " + c.String() + " is an error code of the zone"
			}
		}
	}
	var matched []netip.Addr
	for _, c := range codes {
		if len(z.codes) == 0 {
			matched = append(matched, c)
			continue
		}
		for _, f := range z.codes {
			if f.Match(c) {
				matched = append(matched, c)
				break
			}
		}
	}
	if len(matched) == 0 {
		return NotListed, nil, ""
	}
	return Listed, matched, ""
}

var loopback8 = netip.MustParsePrefix("127.0.0.0/8")

func addrStrings(as []netip.Addr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

// reverseIP returns the DNSBL query labels of ip: "4.3.2.1" for 1.2.3.4,
// 32 nibbles for IPv6; "" for an invalid address.
func reverseIP(ip netip.Addr) string {
	switch {
	case ip.Is4():
		a := ip.As4()
		b := make([]byte, 0, 16)
		for i := 3; i >= 0; i-- {
			b = strconv.AppendUint(b, uint64(a[i]), 10)
			if i > 0 {
				b = append(b, '.')
			}
		}
		return string(b)
	case ip.Is6():
		a := ip.As16()
		var b strings.Builder
		const hex = "0123456789abcdef"
		for i := 15; i >= 0; i-- {
			b.WriteByte(hex[a[i]&0xf])
			b.WriteByte('.')
			b.WriteByte(hex[a[i]>>4])
			if i > 0 {
				b.WriteByte('.')
			}
		}
		return b.String()
	}
	return ""
}

// HealthState is the state of a zone's test-entry check.
type HealthState string

// Health states of a zone.
const (
	HealthUnknown     HealthState = "unknown"     // not checked yet
	HealthOK          HealthState = "ok"          // test entries answered as RFC 5782 says
	HealthUnreachable HealthState = "unreachable" // the check's lookups failed (timeout, SERVFAIL)
	HealthBroken      HealthState = "broken"      // wrong answers: listings are not trusted
)

// ZoneHealth is the last health check of a zone.
type ZoneHealth struct {
	Zone    string      `json:"zone,omitempty"`
	State   HealthState `json:"state,omitempty"`
	Detail  string      `json:"detail,omitempty"`  // what was wrong
	Checked time.Time   `json:"checked,omitempty"` // when (zero if never)
}

func (z *zone) getHealth() ZoneHealth {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.health
}

// Healthy reports whether no zone failed its last health check (zones not
// checked yet, or with the check turned off, count as healthy).
func (b *DNSBL) Healthy() bool {
	for _, z := range b.zones {
		switch z.getHealth().State {
		case HealthUnreachable, HealthBroken:
			return false
		}
	}
	return true
}

// Health returns the health of every zone, in configuration order.
func (b *DNSBL) Health() []ZoneHealth {
	out := make([]ZoneHealth, len(b.zones))
	for i, z := range b.zones {
		out[i] = z.getHealth()
	}
	return out
}

// CheckHealth checks every zone's test entries now (in parallel) and
// returns the new health of each zone. RFC 5782 section 5: an IP zone must
// list 127.0.0.2 and must not list 127.0.0.1; a domain zone must list
// "test" and must not list "invalid". The test entries are asked of the
// servers each time, never answered from the DNS cache (see freshCodes).
func (b *DNSBL) CheckHealth(ctx context.Context) []ZoneHealth {
	var wg sync.WaitGroup
	for _, z := range b.zones {
		if z.cfg.NoHealthCheck {
			continue
		}
		wg.Go(func() { b.checkZone(ctx, z) })
	}
	wg.Wait()
	return b.Health()
}

func (b *DNSBL) checkZone(ctx context.Context, z *zone) {
	listedName, cleanName := "2.0.0.127."+z.name, "1.0.0.127."+z.name
	if z.cfg.Kind == KindDomain {
		listedName, cleanName = "test."+z.name, "invalid."+z.name
	}
	state, detail := HealthOK, ""
	codes, err := b.freshCodes(ctx, listedName)
	if err == nil {
		if st, _, why := z.classify(codes); st == ListError {
			state, detail = HealthBroken, listedName+": "+why
		} else if len(codes) == 0 {
			state, detail = HealthBroken, listedName+" is not listed"
		}
	}
	if err == nil && state == HealthOK {
		var clean []netip.Addr
		clean, err = b.freshCodes(ctx, cleanName)
		if err == nil && len(clean) > 0 {
			state, detail = HealthBroken, cleanName+" is listed ("+strings.Join(addrStrings(clean), ",")+"): the zone may list everything"
		}
	}
	if err != nil {
		state, detail = HealthUnreachable, err.Error()
	}

	z.mu.Lock()
	prev := z.health.State
	z.health = ZoneHealth{Zone: z.name, State: state, Detail: detail, Checked: time.Now()}
	z.mu.Unlock()

	switch {
	case state != HealthOK:
		z.healthFailures.Add(1)
		level := slog.LevelWarn
		if prev != state {
			level = slog.LevelError
		}
		b.log.Log(ctx, level, "dnsbl zone failed its health check",
			"zone", z.name, "state", string(state), "detail", detail)
	case prev != HealthOK && prev != HealthUnknown:
		b.log.Info("dnsbl zone passes its health check again", "zone", z.name)
	}
}

// Run checks the zones' health now and then every configured interval,
// until ctx ends.
func (b *DNSBL) Run(ctx context.Context) {
	t := time.NewTicker(b.interval)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, b.res.timeout*2)
		b.CheckHealth(cctx)
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ZoneStats are the counters of one zone.
type ZoneStats struct {
	Lookups, Listed, NotListed, TempErrors, ZoneErrors, HealthFailures uint64
}

// Stats returns the counters of every zone, by zone name.
func (b *DNSBL) Stats() map[string]ZoneStats {
	out := map[string]ZoneStats{}
	for _, z := range b.zones {
		out[z.name] = ZoneStats{
			Lookups:        z.lookups.Load(),
			Listed:         z.listed.Load(),
			NotListed:      z.notListed.Load(),
			TempErrors:     z.tempErrors.Load(),
			ZoneErrors:     z.zoneErrors.Load(),
			HealthFailures: z.healthFailures.Load(),
		}
	}
	return out
}

// CodeFilter selects DNSBL answer codes: an exact IPv4 address, an
// inclusive range of addresses, or a bitmask on the last octet of an
// answer in 127.0.0.0/8.
type CodeFilter struct {
	lo, hi netip.Addr
	mask   uint8
	text   string
}

// ParseCodeFilter parses "127.0.0.2", "127.0.0.2-127.0.0.11" or
// "mask:0x04" (also "mask 0x04"; decimal, 0x hex or 0o octal).
func ParseCodeFilter(s string) (CodeFilter, error) {
	t := strings.TrimSpace(s)
	f := CodeFilter{text: t}
	if rest, ok := strings.CutPrefix(strings.ToLower(t), "mask"); ok {
		rest = strings.TrimSpace(strings.TrimPrefix(rest, ":"))
		n, err := strconv.ParseUint(rest, 0, 8)
		if err != nil || n == 0 {
			return f, fmt.Errorf("%q is not a bitmask from 1 to 255 (like mask:0x04)", s)
		}
		f.mask = uint8(n)
		return f, nil
	}
	lo, hi, isRange := strings.Cut(t, "-")
	a, err := parseIPv4(lo)
	if err != nil {
		return f, fmt.Errorf("%q is not an IPv4 address", strings.TrimSpace(lo))
	}
	f.lo, f.hi = a, a
	if isRange {
		b, err := parseIPv4(hi)
		if err != nil {
			return f, fmt.Errorf("%q is not an IPv4 address", strings.TrimSpace(hi))
		}
		if b.Less(a) {
			return f, fmt.Errorf("%q: the range ends before it starts", s)
		}
		f.hi = b
	}
	return f, nil
}

func parseIPv4(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil || !a.Is4() {
		return netip.Addr{}, fmt.Errorf("not an IPv4 address")
	}
	return a, nil
}

// Match reports whether the answer code a passes the filter.
func (f CodeFilter) Match(a netip.Addr) bool {
	a = a.Unmap()
	if !a.Is4() {
		return false
	}
	if f.mask != 0 {
		return loopback8.Contains(a) && a.As4()[3]&f.mask != 0
	}
	return f.lo.IsValid() && !a.Less(f.lo) && !f.hi.Less(a)
}

// String returns the filter as it was written.
func (f CodeFilter) String() string { return f.text }
