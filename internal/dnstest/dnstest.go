// Package dnstest runs an in-process authoritative DNS server on loopback,
// for tests and benchmarks that must exercise real DNS traffic without
// leaving the machine.
//
// The server listens on one free 127.0.0.1 port for both UDP and TCP and
// answers from records loaded from RFC 1035 master files (section 5) or added
// from Go. It behaves like a simple authoritative server:
//
//   - a name with records of the asked type gets them (AA bit set);
//   - a name with a CNAME gets the CNAME, followed inside the served data;
//   - a name that exists without records of the asked type gets NODATA, and
//     a name that does not exist gets NXDOMAIN; both carry the SOA of the
//     closest enclosing zone in the authority section when one was loaded,
//     so resolvers can cache them (RFC 2308 section 3);
//   - "*" owner names are wildcards (RFC 4592, simplified: the closest
//     "*.<ancestor>" of a name that does not exist);
//   - over UDP an answer larger than the client's buffer (512 bytes, or the
//     EDNS0 size it advertised) is truncated with the TC bit set, so clients
//     must retry over TCP (RFC 1035 section 4.2.1, RFC 7766).
//
// Tests can make a name never answer (Timeout, for all or some types),
// answer SERVFAIL (ServFail) or wait until released (Hold), and count the
// queries the server received (Queries, QueryCount).
//
//	srv := dnstest.Start(t, "testdata/example.zone")
//	srv.AddRR(t, `example.com. 300 IN TXT "v=spf1 -all"`)
//	srv.Timeout("slow.example.com")
//	res, _ := checks.NewResolver(checks.DNSConfig{Servers: []string{srv.Addr()}})
//
// Use Start from tests (it stops the server in t.Cleanup), or New and Close
// from a program such as a benchmark harness.
package dnstest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Server is an authoritative DNS server on 127.0.0.1. Its methods are safe
// for concurrent use.
type Server struct {
	addr string
	udp  *dns.Server
	tcp  *dns.Server

	mu       sync.Mutex
	rrs      map[string][]dns.RR // by lower-case FQDN owner
	timeout  map[qkey]bool       // qtype 0: every type
	servfail map[string]bool
	hold     map[string]chan struct{}
	queries  map[qkey]int
	total    int
	sources  []string // distinct client addresses, in order of first query
	seen     map[string]bool
}

type qkey struct {
	name  string
	qtype uint16
}

// New starts a server that serves the records of the given zone files. The
// origin of each file is taken from its $ORIGIN directive; relative names
// without one are relative to the root. Call Close when done.
func New(zoneFiles ...string) (*Server, error) {
	s := &Server{
		rrs:      map[string][]dns.RR{},
		timeout:  map[qkey]bool{},
		servfail: map[string]bool{},
		hold:     map[string]chan struct{}{},
		queries:  map[qkey]int{},
	}
	for _, f := range zoneFiles {
		if err := s.LoadFile(f); err != nil {
			return nil, err
		}
	}
	if err := s.listen(); err != nil {
		return nil, err
	}
	return s, nil
}

// Start is New for tests: it fails the test on error and closes the server
// when the test ends.
func Start(t testing.TB, zoneFiles ...string) *Server {
	t.Helper()
	s, err := New(zoneFiles...)
	if err != nil {
		t.Fatalf("dnstest: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// listen binds UDP and TCP on the same free loopback port and starts serving.
func (s *Server) listen() error {
	var lastErr error
	for range 10 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("dnstest: listen udp: %w", err)
		}
		addr := pc.LocalAddr().String()
		l, err := net.Listen("tcp", addr)
		if err != nil {
			// The port is free for UDP but taken for TCP: try another.
			pc.Close()
			lastErr = err
			continue
		}
		s.addr = addr
		h := dns.HandlerFunc(s.serve)
		s.udp = &dns.Server{PacketConn: pc, Handler: h}
		s.tcp = &dns.Server{Listener: l, Handler: h}
		if err := start(s.udp); err != nil {
			l.Close()
			return err
		}
		if err := start(s.tcp); err != nil {
			s.udp.Shutdown()
			return err
		}
		return nil
	}
	return fmt.Errorf("dnstest: no free port for udp and tcp: %w", lastErr)
}

func start(srv *dns.Server) error {
	started := make(chan struct{})
	errc := make(chan error, 1)
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { errc <- srv.ActivateAndServe() }()
	select {
	case <-started:
		return nil
	case err := <-errc:
		return fmt.Errorf("dnstest: serve: %w", err)
	}
}

// Close stops the server. Held queries are released first.
func (s *Server) Close() error {
	s.mu.Lock()
	for name, ch := range s.hold {
		close(ch)
		delete(s.hold, name)
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return errors.Join(s.udp.ShutdownContext(ctx), s.tcp.ShutdownContext(ctx))
}

// Addr returns the "127.0.0.1:port" address the server answers on, for UDP
// and TCP alike.
func (s *Server) Addr() string { return s.addr }

// LoadFile adds the records of an RFC 1035 master file.
func (s *Server) LoadFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("dnstest: %w", err)
	}
	defer f.Close()
	return s.LoadZone(f, "", path)
}

// LoadZone adds the records of a master file read from r. origin is the
// initial origin ("" for the root); file names r in error messages.
// $INCLUDE is not allowed.
func (s *Server) LoadZone(r io.Reader, origin, file string) error {
	rrs, err := ParseZone(r, origin, file)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rr := range rrs {
		s.addLocked(rr)
	}
	return nil
}

// ParseZone parses a master file into records. It is the zone loading of
// LoadZone without a server; a record with a relative owner and no origin
// is relative to the root.
func ParseZone(r io.Reader, origin, file string) ([]dns.RR, error) {
	if origin == "" {
		origin = "."
	}
	zp := dns.NewZoneParser(r, origin, file)
	zp.SetDefaultTTL(3600)
	var rrs []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		return nil, fmt.Errorf("dnstest: %w", err)
	}
	return rrs, nil
}

// Add adds one record in master-file syntax, for example
// `example.com. 300 IN TXT "v=spf1 -all"`. Names without a trailing dot are
// relative to the root. A missing TTL means 3600.
func (s *Server) Add(record string) error {
	rrs, err := ParseZone(strings.NewReader(record), "", "record")
	if err != nil {
		return err
	}
	if len(rrs) == 0 {
		return fmt.Errorf("dnstest: no record in %q", record)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rr := range rrs {
		s.addLocked(rr)
	}
	return nil
}

// AddRR is Add that fails the test on error.
func (s *Server) AddRR(t testing.TB, record string) {
	t.Helper()
	if err := s.Add(record); err != nil {
		t.Fatal(err)
	}
}

// AddRecords adds already built records.
func (s *Server) AddRecords(rrs ...dns.RR) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rr := range rrs {
		s.addLocked(dns.Copy(rr))
	}
}

func (s *Server) addLocked(rr dns.RR) {
	name := canon(rr.Header().Name)
	rr.Header().Name = name
	s.rrs[name] = append(s.rrs[name], rr)
}

// Remove deletes every record at name, and its Timeout and ServFail marks.
func (s *Server) Remove(name string) {
	name = canon(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.rrs, name)
	for k := range s.timeout {
		if k.name == name {
			delete(s.timeout, k)
		}
	}
	delete(s.servfail, name)
}

// Clear removes the Timeout and ServFail marks of name, keeping its
// records.
func (s *Server) Clear(name string) {
	name = canon(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.timeout {
		if k.name == name {
			delete(s.timeout, k)
		}
	}
	delete(s.servfail, name)
}

// Timeout makes the server drop queries for name, so the client times
// out: queries of the given types (dns.TypeTXT, ...), or of every type
// when none is given.
func (s *Server) Timeout(name string, qtypes ...uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(qtypes) == 0 {
		s.timeout[qkey{canon(name), 0}] = true
	}
	for _, t := range qtypes {
		s.timeout[qkey{canon(name), t}] = true
	}
}

// ServFail makes the server answer SERVFAIL to every query for name.
func (s *Server) ServFail(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.servfail[canon(name)] = true
}

// Hold makes queries for name wait, unanswered, until release is called;
// then they are answered normally. Tests use it to keep a query in flight
// while other askers join it. Calling release more than once is harmless;
// hold a name once at a time.
func (s *Server) Hold(name string) (release func()) {
	ch := make(chan struct{})
	s.mu.Lock()
	s.hold[canon(name)] = ch
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.hold[canon(name)] == ch {
				delete(s.hold, canon(name))
				close(ch)
			}
		})
	}
}

// Queries returns how many queries the server received, over UDP and TCP,
// including dropped ones.
func (s *Server) Queries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// QueryCount returns how many queries for name and type qtype (for
// example dns.TypeTXT) the server received.
func (s *Server) QueryCount(name string, qtype uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[qkey{canon(name), qtype}]
}

// Sources returns the distinct client addresses (ip:port) that queries
// came from, in the order they were first seen: a client that reuses a
// socket shows one source for its queries.
func (s *Server) Sources() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.sources...)
}

// ResetQueries sets the query counters to zero and forgets the sources.
func (s *Server) ResetQueries() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total = 0
	clear(s.queries)
	s.sources, s.seen = nil, nil
}

// canon returns the lower-case presentation form of name, with the
// escapes miekg/dns uses when it unpacks a name (\032 for a space), so
// names added from Go and names in queries compare equal.
func canon(name string) string {
	n := dns.Fqdn(name)
	buf := make([]byte, 256)
	if off, err := dns.PackDomainName(n, buf, 0, nil, false); err == nil {
		if u, _, err := dns.UnpackDomainName(buf[:off], 0); err == nil {
			n = u
		}
	}
	return strings.ToLower(n)
}

func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeFormatError)
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := canon(q.Name)

	s.mu.Lock()
	s.total++
	s.queries[qkey{name, q.Qtype}]++
	if a := w.RemoteAddr().String(); !s.seen[a] {
		if s.seen == nil {
			s.seen = map[string]bool{}
		}
		s.seen[a] = true
		s.sources = append(s.sources, a)
	}
	hold := s.hold[name]
	s.mu.Unlock()
	if hold != nil {
		<-hold
	}

	s.mu.Lock()
	drop := s.timeout[qkey{name, 0}] || s.timeout[qkey{name, q.Qtype}]
	fail := s.servfail[name]
	var m *dns.Msg
	if !drop && !fail {
		m = s.answerLocked(req, name, q.Qtype)
	}
	s.mu.Unlock()

	if drop {
		return
	}
	if fail {
		m = new(dns.Msg)
		m.SetRcode(req, dns.RcodeServerFailure)
		w.WriteMsg(m)
		return
	}
	if _, ok := w.RemoteAddr().(*net.UDPAddr); ok {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	w.WriteMsg(m)
}

// answerLocked builds the authoritative answer for name and qtype.
func (s *Server) answerLocked(req *dns.Msg, name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(opt.UDPSize(), false)
	}

	seen := map[string]bool{}
	for {
		if seen[name] {
			// CNAME loop: answer with what we have.
			return m
		}
		seen[name] = true
		rrs, exists := s.lookupLocked(name)
		var match []dns.RR
		var cname *dns.CNAME
		for _, rr := range rrs {
			switch {
			case rr.Header().Rrtype == qtype || qtype == dns.TypeANY:
				match = append(match, rr)
			case rr.Header().Rrtype == dns.TypeCNAME:
				cname = rr.(*dns.CNAME)
			}
		}
		switch {
		case len(match) > 0:
			for _, rr := range match {
				rr = dns.Copy(rr)
				rr.Header().Name = name
				m.Answer = append(m.Answer, rr)
			}
			return m
		case cname != nil:
			rr := dns.Copy(cname)
			rr.Header().Name = name
			m.Answer = append(m.Answer, rr)
			name = canon(cname.Target)
			if _, ok := s.zoneSOALocked(name); !ok && !s.existsLocked(name) {
				// Target outside the served data: the client follows it.
				return m
			}
			continue
		case exists:
			// NODATA.
		default:
			// After a CNAME the rcode is that of the last name of the
			// chain (RFC 6604 section 3).
			m.Rcode = dns.RcodeNameError
		}
		if soa, ok := s.zoneSOALocked(name); ok {
			m.Ns = append(m.Ns, dns.Copy(soa))
		}
		return m
	}
}

// lookupLocked returns the records at name (or at the matching wildcard)
// and whether the name exists at all (it has records, or names below it
// have: an empty non-terminal exists, RFC 8020).
func (s *Server) lookupLocked(name string) ([]dns.RR, bool) {
	if rrs, ok := s.rrs[name]; ok {
		return rrs, true
	}
	if s.existsLocked(name) {
		return nil, true
	}
	// Wildcard: "*." + the closest ancestor that exists.
	labels := dns.SplitDomainName(name)
	for i := 1; i < len(labels); i++ {
		parent := dns.Fqdn(strings.Join(labels[i:], "."))
		if rrs, ok := s.rrs["*."+parent]; ok {
			return rrs, true
		}
		if s.existsLocked(parent) {
			break
		}
	}
	return nil, false
}

func (s *Server) existsLocked(name string) bool {
	if _, ok := s.rrs[name]; ok {
		return true
	}
	suffix := "." + name
	if name == "." {
		suffix = "."
	}
	for owner := range s.rrs {
		if strings.HasSuffix(owner, suffix) {
			return true
		}
	}
	return false
}

// zoneSOALocked finds the SOA of the closest enclosing zone of name.
func (s *Server) zoneSOALocked(name string) (dns.RR, bool) {
	for n := name; ; {
		for _, rr := range s.rrs[n] {
			if rr.Header().Rrtype == dns.TypeSOA {
				return rr, true
			}
		}
		if n == "." {
			return nil, false
		}
		i := strings.IndexByte(n, '.')
		n = n[i+1:]
		if n == "" {
			n = "."
		}
	}
}
