package checks

import (
	"context"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// udpPool keeps connected UDP sockets to one DNS server for reuse.
//
// Why our own: miekg/dns's Client.ExchangeContext dials a new socket for
// every query (socket, connect, getsockname, registering with the poller,
// close), and that was about 60% of the client's CPU for an uncached
// query: a gateway asks three or more of them (DNSBL zones, PTR, A) for
// every new client address, which is most connections of a public MX. The
// library leaves pooling to the caller (ExchangeWithConnContext on a
// *dns.Conn); this is that pool.
//
// What keeps reuse safe:
//   - a socket carries one query at a time (it is taken out of the pool for
//     the exchange), and every query has a new random ID;
//   - the socket is connected, so the kernel drops datagrams from any
//     address but the server's; answers whose ID is not the query's (a late
//     or duplicated answer to an earlier query) are skipped by the library,
//     and the Resolver still checks that the answer's question is ours;
//   - a socket that saw any error or timeout, or an answer to another
//     question, is closed, never reused, so a late answer cannot meet a
//     later query;
//   - source port randomisation, the defence against off-path spoofing, is
//     kept within bounds: a socket asks at most maxUses queries and lives
//     at most maxAge, then a new socket (a new random port) replaces it.
//     maxUses 1 gives a socket per query, as the library does.
type udpPool struct {
	client  *dns.Client
	server  string
	maxUses int
	maxAge  time.Duration
	maxIdle int
	now     func() time.Time

	mu     sync.Mutex
	idle   []*pooledUDP // most recently used last
	closed bool
}

type pooledUDP struct {
	conn *dns.Conn
	uses int
	born time.Time
}

// Defaults of the pool (DNSConfig.UDPSocketQueries sets maxUses).
const (
	DefaultUDPSocketQueries = 64
	udpSocketMaxAge         = 10 * time.Second
	udpPoolMaxIdle          = 64
)

func newUDPPool(c *dns.Client, server string, maxUses int, now func() time.Time) *udpPool {
	return &udpPool{client: c, server: server, maxUses: maxUses, maxAge: udpSocketMaxAge,
		maxIdle: udpPoolMaxIdle, now: now}
}

// exchange sends m over a pooled socket (a new one when none is idle) and
// returns the answer.
func (p *udpPool) exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	pc := p.get()
	if pc == nil {
		conn, err := p.client.DialContext(ctx, p.server)
		if err != nil {
			return nil, err
		}
		pc = &pooledUDP{conn: conn, born: p.now()}
	}
	in, _, err := p.client.ExchangeWithConnContext(ctx, m, pc.conn)
	pc.uses++
	if err != nil {
		pc.conn.Close()
		return nil, err
	}
	if !answers(in, m) {
		// Our ID but another question: a stale answer whose ID matched
		// by chance, a spoof or a broken server. The caller rejects the
		// answer; the port is retired.
		pc.conn.Close()
		return in, nil
	}
	p.put(pc)
	return in, nil
}

// get takes the most recently used idle socket that may still be used,
// closing the expired ones it meets.
func (p *udpPool) get() *pooledUDP {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.idle) > 0 {
		pc := p.idle[len(p.idle)-1]
		p.idle[len(p.idle)-1] = nil
		p.idle = p.idle[:len(p.idle)-1]
		if p.now().Sub(pc.born) < p.maxAge {
			return pc
		}
		pc.conn.Close()
	}
	return nil
}

// put gives a socket back, or closes it when it is used up, too old, or
// the pool is full or closed.
func (p *udpPool) put(pc *pooledUDP) {
	if pc.uses >= p.maxUses || p.now().Sub(pc.born) >= p.maxAge {
		pc.conn.Close()
		return
	}
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.maxIdle {
		p.mu.Unlock()
		pc.conn.Close()
		return
	}
	p.idle = append(p.idle, pc)
	p.mu.Unlock()
}

// idleCount is the number of sockets waiting in the pool.
func (p *udpPool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// close closes the idle sockets; sockets in use are closed when given back.
func (p *udpPool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, pc := range idle {
		pc.conn.Close()
	}
}
