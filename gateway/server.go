package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/mxgate/gatewayd/internal/gopool"
	"github.com/mxgate/gatewayd/maildir"
	"github.com/mxgate/gatewayd/policy"
)

// Config is the gateway's runtime configuration. Reload swaps it whole;
// a session keeps the snapshot it started with.
type Config struct {
	Hostname   string // our name in the greeting and the Received field
	AuthservID string // authserv-id of our Authentication-Results field
	Software   string // named in the Received field

	Domains []string // recipient domains we accept mail for (lower case)

	MaxMessageSize      int64
	MaxRecipients       int
	MaxConnections      int
	MaxConnectionsPerIP int
	IdleTimeout         time.Duration // renewed on every read
	DataTimeout         time.Duration // the whole DATA section
	MaxErrors           int           // refused commands before we hang up
	MaxLineLength       int           // command lines, CRLF included
	MemoryThreshold     int           // a message larger than this is held in a temp file
	TempDir             string

	TLS *tls.Config // nil: no STARTTLS

	// ProxyTrusted lists the networks allowed to send a PROXY protocol
	// header (v1 or v2); from them it is required, from others ignored.
	ProxyTrusted       []netip.Prefix
	ProxyHeaderTimeout time.Duration
}

// withDefaults fills zero values with the documented defaults.
func (c Config) withDefaults() Config {
	if c.Hostname == "" {
		c.Hostname, _ = os.Hostname()
		if c.Hostname == "" {
			c.Hostname = "localhost"
		}
	}
	if c.AuthservID == "" {
		c.AuthservID = c.Hostname
	}
	if c.Software == "" {
		c.Software = "gatewayd"
	}
	if c.MaxMessageSize <= 0 {
		c.MaxMessageSize = 25 << 20
	}
	if c.MaxRecipients <= 0 {
		c.MaxRecipients = 100
	}
	if c.MaxConnections <= 0 {
		c.MaxConnections = 10000
	}
	if c.MaxConnectionsPerIP <= 0 {
		c.MaxConnectionsPerIP = 20
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 5 * time.Minute
	}
	if c.DataTimeout <= 0 {
		c.DataTimeout = 10 * time.Minute
	}
	if c.MaxErrors <= 0 {
		c.MaxErrors = 10
	}
	if c.MaxLineLength <= 0 {
		c.MaxLineLength = 2048
	}
	if c.MemoryThreshold <= 0 {
		c.MemoryThreshold = 1 << 20
	}
	if c.ProxyHeaderTimeout <= 0 {
		c.ProxyHeaderTimeout = 5 * time.Second
	}
	for i, d := range c.Domains {
		c.Domains[i] = strings.ToLower(strings.TrimSuffix(d, "."))
	}
	// Peers are matched unmapped (an IPv4 peer of a dual-stack listener
	// is ::ffff:a.b.c.d): an IPv4-mapped prefix such as ::ffff:10.0.0.0/104
	// is matched as the IPv4 prefix it names, not never.
	trusted := make([]netip.Prefix, 0, len(c.ProxyTrusted))
	for _, p := range c.ProxyTrusted {
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96).Masked()
		}
		trusted = append(trusted, p)
	}
	c.ProxyTrusted = trusted
	return c
}

// Options are the parts of a Server that are not configuration values.
type Options struct {
	Upstream  Upstream
	Hook      Hook // nil: no checks
	Decisions *DecisionLog
	Logger    *slog.Logger // service log (errors, start, stop)
	Metrics   *Metrics
	// Quarantine receives the messages a quarantine verdict holds back.
	Quarantine *maildir.Dir
}

// Server is the boundary SMTP server.
type Server struct {
	cfg      atomic.Pointer[Config]
	upstream atomic.Pointer[upstreamBox]
	hook     atomic.Pointer[hookBox]
	domains  atomic.Pointer[map[string]bool]

	decisions  *DecisionLog
	logger     *slog.Logger
	metrics    *Metrics
	quarantine *maildir.Dir

	baseCtx context.Context
	cancel  context.CancelFunc

	mu        sync.Mutex
	listeners []net.Listener
	sessions  map[*session]struct{}
	// opening holds the connections open is reading a PROXY header
	// from, for Close to close: they are in no session yet.
	opening  map[net.Conn]struct{}
	perIP    map[netip.Prefix]int // by limitKey
	total    int
	draining atomic.Bool
	wg       sync.WaitGroup
	ready    atomic.Bool
	// workers run sessions on goroutines kept between connections, whose
	// stacks have grown already (see internal/gopool).
	workers *gopool.Pool[net.Conn]
	// sweeps counts sweep's looks at waiting sessions; handoffs the waits
	// moved onto a new goroutine (see session.park).
	sweeps    atomic.Uint32
	handoffs  atomic.Uint64
	sweepOnce sync.Once
	sweepBuf  []*session // sweep's, reused
}

// sweepEvery is how often sweep looks at waiting sessions: a session
// waiting for its client for between one and two periods moves its wait
// onto a goroutine with a small stack.
const sweepEvery = 250 * time.Millisecond

type upstreamBox struct{ u Upstream }
type hookBox struct{ h Hook }

// New returns a server; Serve starts it on a listener.
func New(cfg Config, opts Options) *Server {
	s := &Server{
		decisions:  opts.Decisions,
		quarantine: opts.Quarantine,
		logger:     opts.Logger,
		metrics:    opts.Metrics,
		sessions:   make(map[*session]struct{}),
		opening:    make(map[net.Conn]struct{}),
		perIP:      make(map[netip.Prefix]int),
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.metrics == nil {
		s.metrics = NewMetrics(nil)
	}
	s.workers = gopool.New(256, 10*time.Second, s.handle)
	s.baseCtx, s.cancel = context.WithCancel(context.Background())
	s.Reload(cfg, opts.Upstream, opts.Hook)
	return s
}

// Reload swaps the configuration, upstream and hook. Sessions already open
// keep what they started with; the next session sees the new ones. A nil
// upstream or hook keeps the current one.
func (s *Server) Reload(cfg Config, up Upstream, hook Hook) {
	cfg = cfg.withDefaults()
	doms := make(map[string]bool, len(cfg.Domains))
	for _, d := range cfg.Domains {
		doms[d] = true
	}
	s.domains.Store(&doms)
	s.cfg.Store(&cfg)
	if up != nil {
		if old := s.upstream.Swap(&upstreamBox{up}); old != nil && old.u != up {
			old.u.Close()
		}
	}
	if hook != nil {
		s.hook.Store(&hookBox{hook})
	} else if s.hook.Load() == nil {
		s.hook.Store(&hookBox{allowAll})
	}
}

// SetHook replaces the hook for new sessions.
func (s *Server) SetHook(h Hook) { s.hook.Store(&hookBox{h}) }

// Config returns the current configuration.
func (s *Server) Config() Config { return *s.cfg.Load() }

// Ready reports that the server is listening and not draining.
func (s *Server) Ready() bool { return s.ready.Load() && !s.draining.Load() }

// Serve accepts connections on l until Shutdown or Close.
func (s *Server) Serve(l net.Listener) error {
	// The PROXY protocol policy reads the current configuration for each
	// connection, so a reload can change the trusted peers; an untrusted
	// peer gets the raw connection (SKIP), at no cost.
	l = &proxyproto.Listener{
		Listener:          l,
		ReadHeaderTimeout: s.cfg.Load().ProxyHeaderTimeout,
		ConnPolicy: func(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
			trusted := s.cfg.Load().ProxyTrusted
			if len(trusted) == 0 {
				return proxyproto.SKIP, nil
			}
			ap, err := netip.ParseAddrPort(o.Upstream.String())
			if err == nil {
				for _, p := range trusted {
					if p.Contains(ap.Addr().Unmap()) {
						return proxyproto.REQUIRE, nil
					}
				}
			}
			// Untrusted peers: a PROXY header is not read as one; it is
			// an unknown command like any other line.
			return proxyproto.SKIP, nil
		},
	}
	s.mu.Lock()
	if s.draining.Load() {
		s.mu.Unlock()
		l.Close()
		return errors.New("gateway: server is shutting down")
	}
	s.listeners = append(s.listeners, l)
	s.mu.Unlock()
	s.ready.Store(true)
	s.sweepOnce.Do(func() { go s.sweepLoop() })

	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.draining.Load() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscallEMFILE) {
				delay = max(5*time.Millisecond, min(delay*2, time.Second))
				s.logger.Warn("accept failed; retrying", "err", err, "delay", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("gateway: accept: %w", err)
		}
		delay = 0
		s.mu.Lock()
		if s.draining.Load() {
			// Accepted as Shutdown closed the listener, which it may
			// have waited for its sessions already: counting this one
			// now (wg.Add) would race with that Wait (WaitGroup: an Add
			// from zero must happen before Wait). Shutdown sets draining
			// before it takes mu, so a connection counted below is one
			// its Wait sees.
			s.mu.Unlock()
			go s.refuseUncounted(c, "shutdown", "", refusalShutdown)
			continue
		}
		if s.total >= s.cfg.Load().MaxConnections {
			s.mu.Unlock()
			s.metrics.connLimit.Inc()
			go s.refuseUncounted(c, "connection_limit", "limits.max_connections", refusalTooMany)
			continue
		}
		s.total++
		s.wg.Add(1)
		s.mu.Unlock()
		s.workers.Go(c)
	}
}

// refuseUncounted logs and refuses a connection the accept loop did not
// count. Not in the accept loop: RemoteAddr reads the PROXY header of a
// trusted peer, which may take its timeout.
func (s *Server) refuseUncounted(c net.Conn, rule, detail string, r policy.Reply) {
	client, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	client = netip.AddrPortFrom(client.Addr().Unmap(), client.Port())
	s.logRefusal(client, rule, detail, r)
	refuse(c, r.String()+"\r\n")
}

// refuse answers a connection we will not serve and closes it.
func refuse(c net.Conn, line string) {
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte(line))
	c.Close()
}

// handle serves one connection. An idle session waits for its next
// command near the top of its goroutine (serve's sess.wait), not deep in
// the session's own frames, so that the wait fits the 2 KiB stack of the
// goroutine serve hands it off to (an idle connection's largest cost; see
// README "Performance").
func (s *Server) handle(c net.Conn) {
	sess := s.open(c)
	if sess == nil {
		return
	}
	s.serve(sess, false)
}

// serve runs sess until it ends, or until a wait for the client is handed
// off (see session.park): then a new goroutine, whose stack is small,
// waits and serves on, and this one goes back to the pool. waitFirst is
// the new goroutine's: it begins with the wait.
func (s *Server) serve(sess *session, waitFirst bool) {
	handedOff := false
	defer func() {
		if !handedOff {
			s.finish(sess) // also when the goroutine ends without returning
		}
	}()
	if waitFirst {
		sess.waitHandedOff()
	}
	for sess.run() {
		if sess.wait(true) {
			s.handoffs.Add(1)
			handedOff = true
			if testHandoffHook != nil {
				testHandoffHook()
			}
			go s.serve(sess, true)
			return
		}
	}
}

// testHandoffHook, when set (by tests, before any session), runs between
// a wait cut short and the new goroutine's wait.
var testHandoffHook func()

// sweepLoop calls sweep every sweepEvery until the server drains.
func (s *Server) sweepLoop() {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for range t.C {
		if s.draining.Load() {
			return
		}
		s.sweep()
	}
}

// sweep cuts short the waits of sessions that have been waiting for their
// client since before the previous sweep (see session.park).
func (s *Server) sweep() {
	n := s.sweeps.Add(1)
	s.mu.Lock()
	buf := s.sweepBuf[:0]
	for sess := range s.sessions {
		buf = append(buf, sess)
	}
	s.sweepBuf = nil // sweeps from a test and the loop do not share it
	s.mu.Unlock()
	for _, sess := range buf {
		sess.cutPark(n)
	}
	clear(buf)
	s.mu.Lock()
	s.sweepBuf = buf
	s.mu.Unlock()
}

// open applies the connection limits and registers a session for c; nil
// when c was refused (and closed).
func (s *Server) open(c net.Conn) *session {
	done := func() {
		s.mu.Lock()
		s.total--
		s.mu.Unlock()
		s.wg.Done()
	}
	cfg := s.cfg.Load()
	// With PROXY protocol, RemoteAddr reads the header (bounded by its
	// timeout): the address limits apply to the real client. Close
	// closes the connection meanwhile, or Shutdown's deadline would wait
	// for the header timeout of a peer that sends nothing.
	pc, proxied := c.(*proxyproto.Conn)
	if proxied {
		s.mu.Lock()
		if s.baseCtx.Err() != nil { // Close came first
			s.mu.Unlock()
			c.Close()
			done()
			return nil
		}
		s.opening[c] = struct{}{}
		s.mu.Unlock()
	}
	client, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	if proxied {
		s.mu.Lock()
		delete(s.opening, c)
		s.mu.Unlock()
	}
	client = netip.AddrPortFrom(client.Addr().Unmap(), client.Port())
	if proxied && pc.ProxyHeader() == nil {
		// Trusted peer that did not send a valid header.
		s.logger.Warn("PROXY header missing or invalid from trusted peer", "peer", c.RemoteAddr().String())
		c.Close()
		done()
		return nil
	}
	ip := limitKey(client.Addr())
	s.mu.Lock()
	if s.perIP[ip] >= cfg.MaxConnectionsPerIP {
		s.mu.Unlock()
		s.metrics.connLimit.Inc()
		s.logRefusal(client, "connection_limit", "limits.max_connections_per_ip", refusalTooManyIP)
		refuse(c, refusalTooManyIP.String()+"\r\n")
		done()
		return nil
	}
	s.perIP[ip]++
	s.mu.Unlock()

	sess := newSession(s, cfg, c, client)
	s.mu.Lock()
	if s.draining.Load() {
		s.mu.Unlock()
		s.logRefusal(client, "shutdown", "", refusalShutdown)
		refuse(c, refusalShutdown.String()+"\r\n")
		s.release(ip)
		done()
		return nil
	}
	s.sessions[sess] = struct{}{}
	s.mu.Unlock()
	sess.countedIP = ip
	s.metrics.SessionsActive.Inc()
	return sess
}

// finish closes a session open registered and undoes what open counted.
func (s *Server) finish(sess *session) {
	sess.close()
	s.metrics.SessionsActive.Dec()
	s.mu.Lock()
	delete(s.sessions, sess)
	s.mu.Unlock()
	s.release(sess.countedIP)
	s.mu.Lock()
	s.total--
	s.mu.Unlock()
	s.wg.Done()
}

// limitKey is what max_connections_per_ip counts a client under: its
// IPv4 address, or the /64 of its IPv6 address. A /64 is one subnet, the
// least a provider assigns to one customer (RFC 6177), who may use any of
// its 2^64 addresses: counted per address, one host could open as many
// connections as it likes.
func limitKey(a netip.Addr) netip.Prefix {
	a = a.WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p
	}
	return netip.PrefixFrom(a, a.BitLen())
}

// release gives back a connection counted for ip.
func (s *Server) release(ip netip.Prefix) {
	s.mu.Lock()
	if s.perIP[ip]--; s.perIP[ip] <= 0 {
		delete(s.perIP, ip)
	}
	s.mu.Unlock()
}

// Refusals before a session, each with its decision line.
var (
	refusalTooMany   = policy.Reply{Code: 421, Enhanced: "4.7.0", Text: "Too many connections, try again later"}
	refusalTooManyIP = policy.Reply{Code: 421, Enhanced: "4.7.0", Text: "Too many connections from your address, try again later"}
	refusalShutdown  = policy.Reply{Code: 421, Enhanced: "4.3.2", Text: "Service shutting down"}
)

// logRefusal writes the decision line of a connection refused before its
// session began (a limit, a shutdown).
func (s *Server) logRefusal(client netip.AddrPort, rule, detail string, r policy.Reply) {
	s.metrics.decision(policy.StageConnect, policy.ActionDefer)
	s.decisions.log(&State{SessionID: newID(), Client: client}, &Decision{Stage: policy.StageConnect,
		Action: policy.ActionDefer, Reply: r, Reasons: []policy.Reason{{Rule: rule, Detail: detail}}})
}

// Shutdown stops accepting, answers 421 to idle sessions, and waits for
// transactions in flight to finish until ctx ends; then it closes what is
// left. It returns ctx's error if it had to cut sessions short.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	s.workers.Close()
	s.mu.Lock()
	for _, l := range s.listeners {
		l.Close()
	}
	s.listeners = nil
	for sess := range s.sessions {
		sess.interruptIfIdle()
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		s.Close()
		<-done
	}
	if b := s.upstream.Load(); b != nil {
		b.u.Close()
	}
	return err
}

// Close stops at once: listeners and every connection are closed.
func (s *Server) Close() error {
	s.draining.Store(true)
	s.workers.Close()
	s.cancel()
	s.mu.Lock()
	for _, l := range s.listeners {
		l.Close()
	}
	s.listeners = nil
	for c := range s.opening {
		c.Close()
	}
	for sess := range s.sessions {
		// The connection under any TLS: a tls.Conn's Close first writes
		// close_notify, which may wait up to 5 s for a client that reads
		// nothing, and this loop holds s.mu.
		sess.raw.Close()
	}
	s.mu.Unlock()
	return nil
}
