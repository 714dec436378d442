package checks

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxgate/gatewayd/internal/dnstest"
)

// poolResolver is a resolver without a cache, so that every lookup is a
// query, whose sockets answer at most perSocket queries.
func poolResolver(t *testing.T, srv *dnstest.Server, timeout time.Duration, perSocket int, opts ...ResolverOption) *Resolver {
	t.Helper()
	r, err := NewResolver(DNSConfig{Servers: []string{srv.Addr()}, Timeout: timeout, CacheSize: -1,
		UDPSocketQueries: perSocket}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

func wildcardServer(t *testing.T) *dnstest.Server {
	srv := dnstest.Start(t)
	srv.AddRR(t, "pool.test. 300 IN SOA ns.pool.test. h.pool.test. 1 3600 600 86400 300")
	srv.AddRR(t, "*.pool.test. 300 IN A 192.0.2.7")
	return srv
}

func lookupA(t *testing.T, r *Resolver, name string) {
	t.Helper()
	addrs, err := r.LookupA(context.Background(), name)
	if err != nil || len(addrs) != 1 || addrs[0] != netip.MustParseAddr("192.0.2.7") {
		t.Fatalf("LookupA(%s) = %v, %v", name, addrs, err)
	}
}

// TestUDPSocketReuse: sequential queries share a socket (one source port
// at the server) until it has asked its quota, then a new socket opens.
func TestUDPSocketReuse(t *testing.T) {
	for _, c := range []struct{ perSocket, queries, sources int }{
		{5, 12, 3},
		{1, 6, 6}, // a socket per query, as miekg/dns does alone
		{64, 20, 1},
		{0, 20, 1}, // the default, 64
	} {
		t.Run(fmt.Sprint(c.perSocket), func(t *testing.T) {
			srv := wildcardServer(t)
			r := poolResolver(t, srv, testTimeout, c.perSocket)
			for i := range c.queries {
				lookupA(t, r, fmt.Sprintf("h%d.pool.test", i))
			}
			if got := srv.Sources(); len(got) != c.sources {
				t.Errorf("%d queries came from %d sources %v, want %d", c.queries, len(got), got, c.sources)
			}
		})
	}
}

// TestUDPSocketAge: a socket older than its maximum age is not reused.
func TestUDPSocketAge(t *testing.T) {
	srv := wildcardServer(t)
	clk := newFakeClock()
	r := poolResolver(t, srv, testTimeout, 64, WithClock(clk.Now))
	lookupA(t, r, "a.pool.test")
	clk.Advance(udpSocketMaxAge - time.Second)
	lookupA(t, r, "b.pool.test")
	if n := len(srv.Sources()); n != 1 {
		t.Fatalf("young socket not reused: %d sources", n)
	}
	clk.Advance(2 * time.Second)
	lookupA(t, r, "c.pool.test")
	if n := len(srv.Sources()); n != 2 {
		t.Errorf("old socket reused: %d sources, want 2", n)
	}
}

// TestUDPSocketNotReusedAfterTimeout: a query that timed out closes its
// socket, so its late answer cannot meet the next query; the next query
// comes from a new port and gets its own answer.
func TestUDPSocketNotReusedAfterTimeout(t *testing.T) {
	srv := wildcardServer(t)
	r := poolResolver(t, srv, 300*time.Millisecond, 64)
	lookupA(t, r, "first.pool.test")
	release := srv.Hold("slow.pool.test.")
	if _, err := r.LookupA(context.Background(), "slow.pool.test"); err == nil {
		t.Fatal("held query answered")
	}
	release() // the late answer goes to the closed socket
	time.Sleep(50 * time.Millisecond)
	lookupA(t, r, "next.pool.test")
	src := srv.Sources()
	if len(src) != 2 {
		t.Fatalf("sources %v: want the pooled socket for first and slow, a new one after the timeout", src)
	}
	if idle := r.pools[srv.Addr()].idleCount(); idle != 1 {
		t.Errorf("%d idle sockets, want 1", idle)
	}
}

// scriptedDNS runs a DNS server on loopback whose handler is answer, and
// a cache-less resolver asking it; sources returns the client addresses
// of the queries, in order.
func scriptedDNS(t *testing.T, answer func(w dns.ResponseWriter, req *dns.Msg)) (r *Resolver, sources func() []string) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		mu.Lock()
		seen = append(seen, w.RemoteAddr().String())
		mu.Unlock()
		answer(w, req)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	r, err = NewResolver(DNSConfig{Servers: []string{pc.LocalAddr().String()}, Timeout: testTimeout, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}
}

// TestUDPSocketSkipsStaleAnswer: a server that answers twice leaves a
// stale datagram in the reused socket; the next query skips it (its ID is
// not the query's) and gets its own answer.
func TestUDPSocketSkipsStaleAnswer(t *testing.T) {
	r, sources := scriptedDNS(t, func(w dns.ResponseWriter, req *dns.Msg) {
		q := req.Question[0]
		m := new(dns.Msg)
		m.SetReply(req)
		ip := "192.0.2.1"
		if q.Name == "second.test." {
			ip = "192.0.2.2"
		}
		rr, _ := dns.NewRR(q.Name + " 60 IN A " + ip)
		m.Answer = append(m.Answer, rr)
		w.WriteMsg(m)
		if q.Name == "dup.test." {
			w.WriteMsg(m) // the duplicate, left unread in the client's socket
		}
	})
	if a, err := r.LookupA(context.Background(), "dup.test"); err != nil || a[0] != netip.MustParseAddr("192.0.2.1") {
		t.Fatalf("dup.test: %v %v", a, err)
	}
	time.Sleep(50 * time.Millisecond) // the duplicate has arrived
	a, err := r.LookupA(context.Background(), "second.test")
	if err != nil || len(a) != 1 || a[0] != netip.MustParseAddr("192.0.2.2") {
		t.Fatalf("second.test = %v, %v; want its own answer, 192.0.2.2", a, err)
	}
	if src := sources(); len(src) != 2 || src[0] != src[1] {
		t.Errorf("sources %v: want both queries over the reused socket", src)
	}
}

// TestUDPSocketRetiredAfterMismatchedAnswer: an answer with our ID but
// another question is refused, and its socket is not used again.
func TestUDPSocketRetiredAfterMismatchedAnswer(t *testing.T) {
	r, sources := scriptedDNS(t, func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		if req.Question[0].Name == "bad.test." {
			m.Question[0].Name = "other.test."
		}
		rr, _ := dns.NewRR(m.Question[0].Name + " 60 IN A 192.0.2.1")
		m.Answer = append(m.Answer, rr)
		w.WriteMsg(m)
	})
	if a, err := r.LookupA(context.Background(), "bad.test"); err == nil {
		t.Fatalf("answer to another question accepted: %v", a)
	}
	if _, err := r.LookupA(context.Background(), "good.test"); err != nil {
		t.Fatal(err)
	}
	if src := sources(); len(src) != 2 || src[0] == src[1] {
		t.Errorf("sources %v: the socket that got an answer to another question was reused", src)
	}
}

// TestUDPPoolConcurrent: concurrent lookups each get their own answer
// (run with -race), and the pool keeps at most its bound of idle sockets.
func TestUDPPoolConcurrent(t *testing.T) {
	srv := wildcardServer(t)
	r := poolResolver(t, srv, testTimeout, 8)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for g := range 100 {
		wg.Go(func() {
			for i := range 10 {
				name := fmt.Sprintf("g%d-%d.pool.test", g, i)
				addrs, err := r.LookupA(context.Background(), name)
				if err != nil || len(addrs) != 1 {
					errs <- fmt.Errorf("%s: %v %v", name, addrs, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	p := r.pools[srv.Addr()]
	if n := p.idleCount(); n > udpPoolMaxIdle || n == 0 {
		t.Errorf("%d idle sockets, want 1 to %d", n, udpPoolMaxIdle)
	}
	// 1000 queries at 8 a socket: at least 125 sockets were opened.
	if n := len(srv.Sources()); n < 125 {
		t.Errorf("%d sources for 1000 queries at 8 a socket", n)
	}
	r.Close()
	if n := p.idleCount(); n != 0 {
		t.Errorf("%d idle sockets after Close", n)
	}
	lookupA(t, r, "after-close.pool.test") // still answers, a socket per query
	if n := p.idleCount(); n != 0 {
		t.Errorf("a closed pool kept a socket")
	}
}

func TestDNSConfigUDPSocketQueries(t *testing.T) {
	c := DNSConfig{UDPSocketQueries: -1}
	if err := c.Validate(); err == nil {
		t.Error("negative udp_socket_queries accepted")
	}
}
