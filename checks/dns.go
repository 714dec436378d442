package checks

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Resolver is the one DNS layer of the gateway: a stub resolver on
// github.com/miekg/dns that asks the configured recursive servers (or those
// of /etc/resolv.conf), with
//
//   - UDP first and a TCP retry when the answer is truncated (RFC 7766
//     section 5);
//   - a deadline on every lookup (the context's, capped by the configured
//     timeout), shared among the servers, tried in order;
//   - an LRU cache, bounded in entries and in bytes, that keeps positive
//     answers for the smallest TTL of the answer and negative answers
//     (NXDOMAIN and NODATA) for the smaller of the SOA TTL and SOA MINIMUM
//     of the authority section (RFC 2308 section 5), at most
//     maxNegativeTTL (positive ones at most maxCacheTTL); a negative answer
//     without SOA is not cached (RFC 2308 section 5), nor are SERVFAIL,
//     timeouts (we choose not to use the optional SERVFAIL caching of RFC
//     2308 section 7) and answers larger than maxCacheEntryBytes;
//   - one query in flight per name and type: concurrent askers wait for the
//     same answer, each within its own context;
//   - only the records that answer the question are kept: the CNAME chain
//     from the name asked and the records of its last name (answerChain);
//   - UDP sockets reused for a bounded number of queries (see udpPool);
//   - counters (Stats, and Prometheus through the Collector methods).
//
// Its Lookup methods have the signatures and the error semantics of
// net.Resolver: every error is an unwrapped *net.DNSError, IsNotFound for
// NXDOMAIN, NODATA and invalid names, IsTimeout for timeouts and
// IsTemporary for SERVFAIL and other server failures. This is what
// blitiri.com.ar/go/spf needs (it type-asserts *net.DNSError and does not
// unwrap), and what go-msgauth needs (a net.Error whose Temporary() is
// true). So a *Resolver is an spf.DNSResolver as it is (SPF wraps it to ask
// the address family each mechanism needs, see spfResolver), and TXTLookup
// adapts it to go-msgauth.
//
// A Resolver is safe for concurrent use.
type Resolver struct {
	servers []string
	timeout time.Duration
	udp     *dns.Client
	tcp     *dns.Client
	pools   map[string]*udpPool // by server
	cache   *dnsCache
	flights flightGroup
	now     func() time.Time
	log     *slog.Logger

	queries, hits, misses, shared, timeouts, errors, tcpRetries atomic.Uint64
}

// ResolverOption changes how NewResolver builds a Resolver.
type ResolverOption func(*Resolver)

// WithClock sets the clock the cache uses to expire entries (tests inject a
// fake one). The default is time.Now.
func WithClock(now func() time.Time) ResolverOption {
	return func(r *Resolver) { r.now = now }
}

// WithLogger sets the logger; the default is slog.Default().
func WithLogger(l *slog.Logger) ResolverOption {
	return func(r *Resolver) { r.log = l }
}

// resolvConfPath is read when DNSConfig.Servers is empty.
var resolvConfPath = "/etc/resolv.conf"

// maxCacheTTL caps how long any answer is kept, whatever its TTL says.
const maxCacheTTL = 24 * time.Hour

// maxNegativeTTL caps how long a negative answer (NXDOMAIN, NODATA) is
// kept: RFC 2308 section 5 finds one to three hours to work well (BIND's
// max-ncache-ttl is 3 h), so that a record added since, such as a new
// DNSBL listing in a zone with a long SOA MINIMUM, is seen within hours.
const maxNegativeTTL = 3 * time.Hour

// The cache's bounds in bytes, besides DNSConfig.CacheSize in entries.
// Answers differ a thousandfold in size: one A record keeps about 500
// bytes of heap in the cache, but one TXT answer of 64 KB over TCP (65,000
// empty character-strings) kept 1.1 MB, and a client choosing names under
// a wildcard (MAIL FROM with random subdomains, whose SPF records we look
// up) could fill every entry with one: 11 GB at the default 10,000
// entries. So an answer whose entry is estimated (cacheEntrySize) above
// maxCacheEntryBytes is not cached: it is answered, and asked again when
// needed. No answer we need comes near: 40 TXT records of 60 characters
// are about 9 KB. And the cache evicts past cacheBytesPerEntry per entry
// of DNSConfig.CacheSize (20 MiB at the default size), a bound that only
// answers larger than usual reach.
const (
	maxCacheEntryBytes = 16 << 10
	cacheBytesPerEntry = 2 << 10
)

// ednsSize is the UDP payload size we advertise (the DNS flag day 2020
// value, which avoids IP fragmentation).
const ednsSize = 1232

// NewResolver builds a Resolver from cfg (defaults applied for zero
// values). With no servers configured it reads /etc/resolv.conf.
func NewResolver(cfg DNSConfig, opts ...ResolverOption) (*Resolver, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Resolver{
		timeout: cfg.Timeout,
		now:     time.Now,
		log:     slog.Default(),
	}
	for _, o := range opts {
		o(r)
	}
	if len(cfg.Servers) > 0 {
		for _, s := range cfg.Servers {
			r.servers = append(r.servers, serverAddr(s, "53"))
		}
	} else {
		cc, err := dns.ClientConfigFromFile(resolvConfPath)
		if err != nil {
			return nil, fmt.Errorf("dns: no servers configured and %w", err)
		}
		for _, s := range cc.Servers {
			r.servers = append(r.servers, serverAddr(s, cc.Port))
		}
		if len(r.servers) == 0 {
			return nil, fmt.Errorf("dns: no servers configured nor in %s", resolvConfPath)
		}
	}
	r.udp = &dns.Client{Net: "udp", Timeout: cfg.Timeout, UDPSize: ednsSize}
	r.tcp = &dns.Client{Net: "tcp", Timeout: cfg.Timeout}
	r.pools = make(map[string]*udpPool, len(r.servers))
	for _, s := range r.servers {
		r.pools[s] = newUDPPool(r.udp, s, cfg.UDPSocketQueries, r.now)
	}
	if cfg.CacheSize > 0 {
		r.cache = newDNSCache(cfg.CacheSize)
	}
	return r, nil
}

// serverAddr adds the default port to an address without one.
func serverAddr(s, port string) string {
	if _, _, err := net.SplitHostPort(s); err == nil {
		return s
	}
	return net.JoinHostPort(strings.Trim(s, "[]"), port)
}

// Close closes the UDP sockets kept for reuse. Lookups still running end
// normally and close their sockets; the Resolver stays usable (a socket
// per query) but should be dropped.
func (r *Resolver) Close() {
	for _, p := range r.pools {
		p.close()
	}
}

// Servers returns the addresses the resolver asks, in order.
func (r *Resolver) Servers() []string { return slices.Clone(r.servers) }

// Response is one DNS answer as the Resolver keeps it. Answer is shared
// with the cache and with other callers: do not modify it.
type Response struct {
	// Rcode is dns.RcodeSuccess or dns.RcodeNameError; other rcodes are
	// returned as errors.
	Rcode int
	// Answer is the answer section (it may hold CNAMEs besides the records
	// of the asked type).
	Answer []dns.RR
	// TTL is how long the answer may be cached; 0 means not cacheable.
	TTL time.Duration
	// Cached tells that the answer came from the cache.
	Cached bool
}

type cacheKey struct {
	name  string
	qtype uint16
}

// Cached reports whether an answer for name and qtype is in the cache and
// fresh, so that a caller can ask synchronously instead of in a goroutine.
func (r *Resolver) Cached(name string, qtype uint16) bool {
	if r.cache == nil {
		return false
	}
	_, ok := r.cache.get(cacheKey{lowerDNSName(dns.Fqdn(name)), qtype}, r.now())
	return ok
}

// Query asks for name and qtype (dns.TypeA, ...). NXDOMAIN and NODATA are
// answers, not errors; timeouts and server failures are *net.DNSError.
func (r *Resolver) Query(ctx context.Context, name string, qtype uint16) (*Response, error) {
	name = lowerDNSName(dns.Fqdn(name))
	if _, ok := dns.IsDomainName(name); !ok || strings.Contains(name, "..") || name == "." {
		return nil, notFound(name)
	}
	key := cacheKey{name, qtype}
	if r.cache != nil {
		if resp, ok := r.cache.get(key, r.now()); ok {
			r.hits.Add(1)
			c := *resp
			c.Cached = true
			return &c, nil
		}
	}
	r.misses.Add(1)

	f, leader := r.flights.join(key)
	if leader {
		ask := func() {
			// The query runs on its own deadline (the configured
			// timeout), detached from the first asker's context: others
			// may be waiting for it, and its answer fills the cache.
			qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.timeout)
			defer cancel()
			finished := false
			defer func() {
				if !finished {
					// A panic on the way (recovered up the asker's
					// goroutine, as a session recovers a hook's): the
					// flight must still end, or every later asker of
					// this name would join it and wait forever.
					r.flights.finish(key, f, nil, &net.DNSError{Err: "lookup failed", Name: name, IsTemporary: true})
				}
			}()
			resp, err := r.exchange(qctx, name, qtype)
			if err == nil && r.cache != nil && resp.TTL > 0 {
				r.cache.put(key, resp, r.now().Add(resp.TTL))
			}
			r.flights.finish(key, f, resp, err)
			finished = true
		}
		if ctx.Done() == nil {
			// The asker cannot give up (the DNSBL lookups run on
			// context.WithoutCancel), so it would wait for the whole
			// query anyway: ask in its goroutine. A goroutine per query
			// cost its start, a handoff and, as miekg/dns unpacks deep,
			// a stack growth: about 7% of a refused cold connection.
			ask()
		} else {
			tasks.Go(ask)
		}
	} else {
		r.shared.Add(1)
	}
	select {
	case <-f.done:
		if f.err != nil {
			if de, ok := f.err.(*net.DNSError); ok && de.IsTimeout {
				r.timeouts.Add(1)
			} else {
				r.errors.Add(1)
			}
			return nil, f.err
		}
		return f.resp, nil
	case <-ctx.Done():
		r.timeouts.Add(1)
		return nil, &net.DNSError{Err: "lookup abandoned: " + ctx.Err().Error(),
			Name: name, IsTimeout: errors.Is(ctx.Err(), context.DeadlineExceeded),
			IsTemporary: true, UnwrapErr: ctx.Err()}
	}
}

// exchange asks the servers in turn until one gives a usable answer.
func (r *Resolver) exchange(ctx context.Context, name string, qtype uint16) (*Response, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = true
	m.SetEdns0(ednsSize, false)

	var lastErr *net.DNSError
	for i, server := range r.servers {
		actx := ctx
		if d, ok := ctx.Deadline(); ok {
			// Share what is left among the servers not yet asked.
			left := time.Until(d) / time.Duration(len(r.servers)-i)
			var cancel context.CancelFunc
			actx, cancel = context.WithTimeout(ctx, left)
			defer cancel()
		}
		in, err := r.exchangeOne(actx, m, server)
		if err != nil {
			lastErr = err
			if ctx.Err() != nil {
				break
			}
			continue
		}
		switch in.Rcode {
		case dns.RcodeSuccess, dns.RcodeNameError:
			answer, ok := answerChain(in, name, qtype)
			if !ok {
				lastErr = &net.DNSError{Err: "server misbehaving: CNAME loop or chain too long",
					Name: name, Server: server, IsTemporary: true}
				continue
			}
			return newResponse(in, answer, qtype), nil
		default:
			lastErr = &net.DNSError{Err: "server misbehaving: " + dns.RcodeToString[in.Rcode],
				Name: name, Server: server, IsTemporary: true}
		}
	}
	r.log.Debug("dns lookup failed", "name", name, "type", dns.TypeToString[qtype], "err", lastErr)
	return nil, lastErr
}

// exchangeOne sends m to one server over UDP, and over TCP when the UDP
// answer is truncated.
func (r *Resolver) exchangeOne(ctx context.Context, m *dns.Msg, server string) (*dns.Msg, *net.DNSError) {
	q := m.Question[0]
	r.queries.Add(1)
	in, err := r.pools[server].exchange(ctx, m)
	if err == nil && in.Truncated {
		r.tcpRetries.Add(1)
		r.queries.Add(1)
		in, _, err = r.tcp.ExchangeContext(ctx, m, server)
	}
	if err != nil {
		var ne net.Error
		timeout := errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded)
		return nil, &net.DNSError{Err: err.Error(), Name: q.Name, Server: server,
			IsTimeout: timeout, IsTemporary: true, UnwrapErr: err}
	}
	if !answers(in, m) {
		return nil, &net.DNSError{Err: "answer does not match the question", Name: q.Name,
			Server: server, IsTemporary: true}
	}
	return in, nil
}

// answers reports whether in answers the question of m: a response (QR
// set; the library checks only the ID, and would take the query echoed
// back for an empty answer), of m's opcode, to the same name and type.
func answers(in, m *dns.Msg) bool {
	q := m.Question[0]
	return in.Response && in.Opcode == m.Opcode && len(in.Question) == 1 && sameName(in.Question[0].Name, q.Name) && in.Question[0].Qtype == q.Qtype
}

// sameName compares two names in wire form, ignoring ASCII case: the name
// of an answer comes back in presentation form, with escapes (\032 for a
// space) where the name we sent has the raw byte. It folds ASCII only, as
// the DNS does (RFC 4343 section 3): strings.EqualFold would take an answer
// for "k.example" as one for "\u212a.example" (KELVIN SIGN), another name.
func sameName(a, b string) bool {
	if equalFoldASCII(a, b) {
		return true
	}
	wa, wb := make([]byte, 256), make([]byte, 256)
	na, errA := dns.PackDomainName(a, wa, 0, nil, false)
	nb, errB := dns.PackDomainName(b, wb, 0, nil, false)
	return errA == nil && errB == nil && equalFoldASCII(wa[:na], wb[:nb])
}

// lowerDNSName lower-cases the ASCII letters of a DNS name and leaves every
// other byte as it is. Names compare case-insensitively on ASCII only (RFC
// 4343 section 3) and may hold any octet; strings.ToLower also folds
// non-ASCII letters ("\u00c9" to "\u00e9") and turns bytes that are not
// UTF-8 into U+FFFD, so the name sent would not be the name asked, and two
// names the DNS tells apart would share a cache entry. Folding byte by byte
// cannot break a UTF-8 sequence: none of its bytes is below 0x80. A name
// without upper-case letters, the usual case, is returned without a copy.
func lowerDNSName(s string) string {
	i := 0
	for i < len(s) && !isUpperASCII(s[i]) {
		i++
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	b.WriteString(s[:i])
	for ; i < len(s); i++ {
		c := s[i]
		if isUpperASCII(c) {
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String()
}

// equalFoldASCII reports whether a and b are equal once their ASCII
// letters are lower-cased (see lowerDNSName for why ASCII only).
func equalFoldASCII[T string | []byte](a, b T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		ca, cb := a[i], b[i]
		if isUpperASCII(ca) {
			ca += 'a' - 'A'
		}
		if isUpperASCII(cb) {
			cb += 'a' - 'A'
		}
		if ca != cb {
			return false
		}
	}
	return true
}

func isUpperASCII(c byte) bool { return 'A' <= c && c <= 'Z' }

// maxCNAMEChain bounds the CNAMEs followed in an answer (a loop ends there).
const maxCNAMEChain = 16

// answerChain returns the records of in's answer section that answer name
// and qtype: the CNAME chain from name, and the records of qtype owned by
// its last name. Records of other names are dropped: a DNSBL's A record for
// another address, or a PTR record of another reverse name, answers
// another question and must neither be used nor cached under this one.
// An NXDOMAIN answer keeps only its CNAMEs (RFC 6604: the rcode is that of
// the chain's last name), so no record of qtype. It reports false for a
// CNAME loop or a chain longer than maxCNAMEChain, which a recursive
// server should have answered with SERVFAIL.
func answerChain(in *dns.Msg, name string, qtype uint16) ([]dns.RR, bool) {
	var out []dns.RR
	owner := name
	for hops := 0; ; hops++ {
		next, found := "", false
		for _, rr := range in.Answer {
			h := rr.Header()
			if h.Class != dns.ClassINET || !sameName(h.Name, owner) {
				continue
			}
			switch {
			case h.Rrtype == qtype:
				found = true
				if in.Rcode == dns.RcodeSuccess {
					out = append(out, rr)
				}
			case h.Rrtype == dns.TypeCNAME && next == "":
				next = rr.(*dns.CNAME).Target
				out = append(out, rr)
			}
		}
		if found || next == "" {
			return out, true
		}
		if hops == maxCNAMEChain {
			return nil, false
		}
		owner = next
	}
}

// newResponse builds the Response of in, whose records answering the
// question are answer (see answerChain).
func newResponse(in *dns.Msg, answer []dns.RR, qtype uint16) *Response {
	resp := &Response{Rcode: in.Rcode, Answer: answer}
	var ttl uint32
	found := false
	if in.Rcode == dns.RcodeSuccess {
		for _, rr := range answer {
			if rr.Header().Rrtype == qtype && (!found || rr.Header().Ttl < ttl) {
				ttl, found = rr.Header().Ttl, true
			}
		}
		if found {
			// Positive: the smallest TTL of the chain and the records.
			for _, rr := range answer {
				ttl = min(ttl, rr.Header().Ttl)
			}
		}
	}
	maxTTL := maxCacheTTL
	if !found {
		// Negative (RFC 2308 section 5): min(SOA TTL, SOA MINIMUM).
		for _, rr := range in.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				ttl, found = min(soa.Hdr.Ttl, soa.Minttl), true
				maxTTL = maxNegativeTTL
				break
			}
		}
	}
	if found {
		resp.TTL = min(time.Duration(ttl)*time.Second, maxTTL)
	}
	return resp
}

func notFound(name string) *net.DNSError {
	return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

// records queries name and returns the answer records of type qtype, or
// the not-found error net.Resolver gives for NXDOMAIN and NODATA.
func (r *Resolver) records(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	resp, err := r.Query(ctx, name, qtype)
	if err != nil {
		return nil, err
	}
	var rrs []dns.RR
	for _, rr := range resp.Answer {
		if rr.Header().Rrtype == qtype {
			rrs = append(rrs, rr)
		}
	}
	if len(rrs) == 0 {
		return nil, notFound(name)
	}
	return rrs, nil
}

// LookupTXT returns the TXT records of name, the character-strings of each
// record joined (as net.Resolver does).
func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	rrs, err := r.records(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	txts := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		parts := rr.(*dns.TXT).Txt
		if len(parts) == 1 {
			txts = append(txts, unescapeTXT(parts[0])) // no copy without escapes
			continue
		}
		unescaped := make([]string, len(parts))
		for i, s := range parts {
			unescaped[i] = unescapeTXT(s)
		}
		txts = append(txts, strings.Join(unescaped, ""))
	}
	return txts, nil
}

// unescapeTXT undoes the presentation escaping (\" \\ \DDD) that miekg/dns
// applies to TXT character-strings when it unpacks them from the wire.
func unescapeTXT(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b = append(b, c)
			continue
		}
		if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			if n, err := strconv.Atoi(s[i+1 : i+4]); err == nil && n <= 255 {
				b = append(b, byte(n))
				i += 3
				continue
			}
		}
		b = append(b, s[i+1])
		i++
	}
	return string(b)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// LookupA returns the IPv4 addresses of host.
func (r *Resolver) LookupA(ctx context.Context, host string) ([]netip.Addr, error) {
	rrs, err := r.records(ctx, host, dns.TypeA)
	if err != nil {
		return nil, err
	}
	ips := make([]netip.Addr, 0, len(rrs))
	for _, rr := range rrs {
		if a, ok := netip.AddrFromSlice(rr.(*dns.A).A.To4()); ok {
			ips = append(ips, a)
		}
	}
	return ips, nil
}

// LookupAAAA returns the IPv6 addresses of host.
func (r *Resolver) LookupAAAA(ctx context.Context, host string) ([]netip.Addr, error) {
	rrs, err := r.records(ctx, host, dns.TypeAAAA)
	if err != nil {
		return nil, err
	}
	ips := make([]netip.Addr, 0, len(rrs))
	for _, rr := range rrs {
		if a, ok := netip.AddrFromSlice(rr.(*dns.AAAA).AAAA.To16()); ok {
			ips = append(ips, a)
		}
	}
	return ips, nil
}

// LookupIP returns the IPv4 and IPv6 addresses of host, asked in parallel.
// An IP literal is returned as it is.
//
// A temporary failure of either lookup is returned even when the other
// gave addresses: the list would be incomplete, and a caller looking for
// an address in it would take its absence for an answer, a fail where the
// truth is "we do not know" (an IPv6 client whose AAAA lookup timed out
// while the A lookup answered). Checks that match the client's address ask
// its family alone (LookupA, LookupAAAA), as RFC 7208 sections 5.3-5.5 and
// RFC 8601 section 3 say, so that the other family's failures do not
// concern them. LookupIP fails with not-found when neither type has an
// address.
func (r *Resolver) LookupIP(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a}, nil
	}
	var (
		wg         sync.WaitGroup
		v4, v6     []netip.Addr
		err4, err6 error
	)
	// AAAA on a kept goroutine, A in this one (see tasks).
	wg.Add(1)
	tasks.Go(func() {
		defer wg.Done()
		v6, err6 = r.LookupAAAA(ctx, host)
	})
	v4, err4 = r.LookupA(ctx, host)
	wg.Wait()
	for _, err := range []error{err4, err6} {
		if de, ok := err.(*net.DNSError); ok && de.Temporary() {
			return nil, err
		}
	}
	if ips := append(v4, v6...); len(ips) > 0 {
		return ips, nil
	}
	if err4 != nil {
		return nil, err4
	}
	return nil, err6
}

// LookupIPAddr is LookupIP with the types of net.Resolver.LookupIPAddr.
func (r *Resolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	return ipAddrs(r.LookupIP(ctx, host))
}

// ipAddrs converts the result of a lookup to the types of
// net.Resolver.LookupIPAddr, the error as it is.
func ipAddrs(ips []netip.Addr, err error) ([]net.IPAddr, error) {
	if err != nil {
		return nil, err
	}
	out := make([]net.IPAddr, len(ips))
	for i, ip := range ips {
		out[i] = net.IPAddr{IP: net.IP(ip.AsSlice()), Zone: ip.Zone()}
	}
	return out, nil
}

// LookupMX returns the MX records of name, sorted by preference. Hosts are
// fully qualified, with the trailing dot.
func (r *Resolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	rrs, err := r.records(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	mxs := make([]*net.MX, 0, len(rrs))
	for _, rr := range rrs {
		mx := rr.(*dns.MX)
		mxs = append(mxs, &net.MX{Host: mx.Mx, Pref: mx.Preference})
	}
	slices.SortStableFunc(mxs, func(a, b *net.MX) int { return int(a.Pref) - int(b.Pref) })
	return mxs, nil
}

// LookupNS returns the name servers of name.
func (r *Resolver) LookupNS(ctx context.Context, name string) ([]string, error) {
	rrs, err := r.records(ctx, name, dns.TypeNS)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, rr.(*dns.NS).Ns)
	}
	return out, nil
}

// LookupAddr returns the PTR names of the address addr (in-addr.arpa or
// ip6.arpa), fully qualified with the trailing dot.
func (r *Resolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	rev, err := dns.ReverseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: "unrecognized address", Name: addr}
	}
	rrs, err := r.records(ctx, rev, dns.TypePTR)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, rr.(*dns.PTR).Ptr)
	}
	return out, nil
}

// TXTLookup adapts the resolver to the context-less lookup function of
// go-msgauth (dkim.VerifyOptions.LookupTXT, dmarc.LookupOptions.LookupTXT):
// lookups run with ctx. Errors keep their *net.DNSError type, so
// go-msgauth sees timeouts and SERVFAIL as temporary.
func (r *Resolver) TXTLookup(ctx context.Context) func(name string) ([]string, error) {
	return func(name string) ([]string, error) {
		txts, err := r.LookupTXT(ctx, name)
		if err != nil {
			// Return the interface holding *net.DNSError, never a nil
			// pointer in a non-nil interface.
			return nil, err
		}
		return txts, nil
	}
}

// DNSStats is a snapshot of the resolver's counters.
type DNSStats struct {
	Queries      uint64 // queries sent to servers (UDP and TCP)
	CacheHits    uint64 // lookups answered from the cache
	CacheMisses  uint64 // lookups not in the cache
	Shared       uint64 // lookups that joined a query already in flight
	Timeouts     uint64 // lookups that ended in a timeout
	Errors       uint64 // lookups that ended in a server failure
	TCPRetries   uint64 // truncated UDP answers asked again over TCP
	CacheEntries int    // entries in the cache now
	CacheBytes   int    // their estimated size in bytes (see cacheEntrySize)
}

// Stats returns the counters.
func (r *Resolver) Stats() DNSStats {
	s := DNSStats{
		Queries:     r.queries.Load(),
		CacheHits:   r.hits.Load(),
		CacheMisses: r.misses.Load(),
		Shared:      r.shared.Load(),
		Timeouts:    r.timeouts.Load(),
		Errors:      r.errors.Load(),
		TCPRetries:  r.tcpRetries.Load(),
	}
	if r.cache != nil {
		s.CacheEntries, s.CacheBytes = r.cache.usage()
	}
	return s
}

// flightGroup keeps one query in flight per name and type. It is our own
// rather than golang.org/x/sync/singleflight because each waiter must be
// able to give up on its own context while the shared query goes on with
// its own deadline, and the module is not otherwise a dependency.
type flightGroup struct {
	mu sync.Mutex
	m  map[cacheKey]*flight
}

type flight struct {
	done chan struct{}
	resp *Response
	err  error
}

// join returns the flight for key, and whether the caller started it (and
// so must run the query and call finish).
func (g *flightGroup) join(key cacheKey) (*flight, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f, ok := g.m[key]; ok {
		return f, false
	}
	if g.m == nil {
		g.m = map[cacheKey]*flight{}
	}
	f := &flight{done: make(chan struct{})}
	g.m[key] = f
	return f, true
}

func (g *flightGroup) finish(key cacheKey, f *flight, resp *Response, err error) {
	g.mu.Lock()
	delete(g.m, key)
	g.mu.Unlock()
	f.resp, f.err = resp, err
	close(f.done)
}

// dnsCache is an LRU map of answers with expiry times, bounded in entries
// and in estimated bytes (see maxCacheEntryBytes).
type dnsCache struct {
	mu       sync.Mutex
	max      int        // entries
	maxBytes int        // estimated bytes of all entries
	maxEntry int        // bytes of one entry
	bytes    int        // estimated bytes of the entries
	ll       *list.List // front = most recently used
	items    map[cacheKey]*list.Element
}

type cacheEntry struct {
	key     cacheKey
	resp    *Response
	expires time.Time
	size    int // cacheEntrySize
}

func newDNSCache(max int) *dnsCache {
	maxBytes := math.MaxInt
	if max < math.MaxInt/cacheBytesPerEntry {
		maxBytes = max * cacheBytesPerEntry
	}
	return &dnsCache{max: max, maxBytes: maxBytes, maxEntry: min(maxCacheEntryBytes, maxBytes),
		ll: list.New(), items: map[cacheKey]*list.Element{}}
}

// The parts of cacheEntrySize's estimate, measured with runtime.MemStats
// on caches full of one kind of answer: one A record, one TXT record,
// thirty TXT records, a TXT record of 3,000 empty strings, 200 A records of
// a 184-character name, and a TXT record of 65,000 empty strings (heap per
// entry 501, 570, 7,040, 57,878, 61,639 and 1,196,581 bytes; estimates
// 537, 613, 7,437, 63,538, 63,889 and 1,365,533).
const (
	cacheEntryOverhead  = 384 // the map slot, list element, cacheEntry and Response
	cacheRROverhead     = 96  // an RR's struct, interface value and allocation slack
	cacheStringOverhead = 20  // a TXT character-string's header and slice growth
)

// cacheEntrySize estimates the heap an entry for key and resp keeps, in
// bytes, from the records' uncompressed wire length (dns.Len, which counts
// TXT strings as they are kept) and fixed overheads. It stops counting
// past limit. It is computed once, when the answer is cached: an answer
// was just unpacked, which costs far more. Names in RDATA (MX, CNAME) are
// counted at their wire length, up to four times less than an escaped
// name keeps (\DDD); the bound on an entry keeps that small.
func cacheEntrySize(key cacheKey, resp *Response, limit int) int {
	n := cacheEntryOverhead + len(key.name)
	for _, rr := range resp.Answer {
		n += cacheRROverhead + dns.Len(rr)
		if t, ok := rr.(*dns.TXT); ok {
			n += cacheStringOverhead * len(t.Txt)
		}
		if n > limit {
			break
		}
	}
	return n
}

func (c *dnsCache) get(key cacheKey, now time.Time) (*Response, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return nil, false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.remove(el)
		return nil, false
	}
	c.ll.MoveToFront(el)
	return e.resp, true
}

// put caches resp until expires, unless its entry would be larger than
// maxEntry, and evicts the least recently used entries past the bounds.
func (c *dnsCache) put(key cacheKey, resp *Response, expires time.Time) {
	size := cacheEntrySize(key, resp, c.maxEntry)
	if size > c.maxEntry {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := &cacheEntry{key, resp, expires, size}
	if el, ok := c.items[key]; ok {
		c.bytes -= el.Value.(*cacheEntry).size
		el.Value = e
		c.ll.MoveToFront(el)
	} else {
		c.items[key] = c.ll.PushFront(e)
	}
	c.bytes += size
	for c.ll.Len() > c.max || c.bytes > c.maxBytes {
		c.remove(c.ll.Back())
	}
}

// remove deletes the entry of el; c.mu is held.
func (c *dnsCache) remove(el *list.Element) {
	e := el.Value.(*cacheEntry)
	c.ll.Remove(el)
	delete(c.items, e.key)
	c.bytes -= e.size
}

// usage returns the number of entries and their estimated bytes.
func (c *dnsCache) usage() (entries, bytes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len(), c.bytes
}
