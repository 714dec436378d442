package gateway

// Handoffs against clients of every kind at once: clear text, STARTTLS and
// PROXY protocol, commands one at a time, pipelined or a byte at a time,
// transactions with their data in random pieces, and clients that hang up
// at any point; then a Shutdown that finds sessions idle, handed off inside
// a transaction and in DATA. Sweeps never stop, so that waits are cut
// short at every moment a client can pick.

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// sweepUntil sweeps the servers' sessions every 50 µs until stop closes;
// the returned function waits for the sweeper to end.
func sweepUntil(stop chan struct{}, srvs ...*Server) func() {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				for _, s := range srvs {
					s.sweep()
				}
				time.Sleep(50 * time.Microsecond)
			}
		}
	}()
	return wg.Wait
}

// errHungUp ends a mixed client that hung up on purpose.
var errHungUp = errors.New("hung up")

type mixedClient struct {
	c       net.Conn
	r       *bufio.Reader
	rnd     *rand.Rand
	id      int
	trickle bool // writes a byte at a time
	hangUp  bool // may hang up in the middle of a write
}

func (m *mixedClient) pause() {
	if m.rnd.IntN(3) != 0 {
		time.Sleep(time.Duration(m.rnd.IntN(2000)) * time.Microsecond)
	}
}

func (m *mixedClient) send(s string) error {
	if m.hangUp && m.rnd.IntN(60) == 0 {
		if tc, ok := m.c.(*net.TCPConn); ok && m.rnd.IntN(2) == 0 {
			tc.SetLinger(0) // a reset rather than an end
		}
		m.c.Write([]byte(s[:m.rnd.IntN(len(s)+1)]))
		m.c.Close()
		return errHungUp
	}
	if !m.trickle {
		_, err := m.c.Write([]byte(s))
		return err
	}
	for i := range len(s) {
		if _, err := m.c.Write([]byte{s[i]}); err != nil {
			return err
		}
		if m.rnd.IntN(4) == 0 {
			time.Sleep(time.Duration(m.rnd.IntN(600)) * time.Microsecond)
		}
	}
	return nil
}

// do sends s and expects one reply starting with each of want.
// startTLS sends STARTTLS on c, shakes hands and says EHLO again as helo
// (pausing before the EHLO as the client pauses between commands).
func (m *mixedClient) startTLS(c net.Conn, helo string) error {
	if err := m.do("STARTTLS\r\n", "220"); err != nil {
		return err
	}
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		return err
	}
	m.c, m.r = tc, bufio.NewReader(tc)
	m.pause()
	return m.do("EHLO "+helo+"\r\n", "250")
}

func (m *mixedClient) do(s string, want ...string) error {
	if err := m.send(s); err != nil {
		return err
	}
	for _, w := range want {
		line, err := readReply(m.r)
		if err != nil || !strings.HasPrefix(line, w) {
			return fmt.Errorf("client %d: after %q want %q, got %q (%v)", m.id, s, w, line, err)
		}
	}
	return nil
}

// mixedSession runs one client: mode is "plain", "tls" or "proxy".
func mixedSession(addr string, id int, mode string) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second)) // a hang guard
	m := &mixedClient{c: c, r: bufio.NewReader(c), rnd: rand.New(rand.NewPCG(uint64(id), 7)), id: id,
		trickle: id%5 == 3, hangUp: id%4 == 1}
	if mode == "proxy" {
		fmt.Fprintf(c, "PROXY TCP4 192.0.2.%d 192.0.2.200 %d 25\r\n", 1+id%200, 1000+id)
	}
	err = func() error {
		if line, err := readReply(m.r); err != nil || !strings.HasPrefix(line, "220") {
			return fmt.Errorf("client %d: greeting %q (%v)", id, line, err)
		}
		m.pause()
		if err := m.do("EHLO client.test\r\n", "250"); err != nil {
			return err
		}
		if mode == "tls" {
			m.pause()
			if err := m.startTLS(c, "client.test"); err != nil {
				return err
			}
		}
		for n := range 30 {
			m.pause()
			var err error
			switch m.rnd.IntN(4) {
			case 0:
				err = m.do("NOOP\r\n", "250")
			case 1:
				err = m.do("NOOP\r\nRSET\r\nNOOP\r\n", "250", "250", "250")
			default:
				if m.rnd.IntN(2) == 0 {
					err = m.do("MAIL FROM:<a@sender.test>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n", "250", "250", "354")
				} else if err = m.do("MAIL FROM:<a@sender.test>\r\n", "250"); err == nil {
					m.pause()
					if err = m.do("RCPT TO:<bob@example.com>\r\n", "250"); err == nil {
						m.pause()
						err = m.do("DATA\r\n", "354")
					}
				}
				msg := fmt.Sprintf("Subject: %d-%d\r\n\r\none\r\n..two\r\n.\r\n", id, n)
				for err == nil && len(msg) > 0 {
					k := 1 + m.rnd.IntN(len(msg))
					err = m.send(msg[:k])
					msg = msg[k:]
					m.pause()
				}
				if err == nil {
					line, rerr := readReply(m.r)
					if rerr != nil || !strings.HasPrefix(line, "250") {
						err = fmt.Errorf("client %d: message %d: %q (%v)", id, n, line, rerr)
					}
				}
			}
			if err != nil {
				return err
			}
		}
		if err := m.do("QUIT\r\n", "221"); err != nil {
			return err
		}
		if _, err := m.r.ReadByte(); err != io.EOF {
			return fmt.Errorf("client %d: after QUIT: %v", id, err)
		}
		return nil
	}()
	if errors.Is(err, errHungUp) {
		return nil
	}
	return err
}

// noSessionGoroutines waits until no goroutine is in a session's code.
func noSessionGoroutines(t *testing.T) {
	t.Helper()
	waitFor(t, "the session goroutines to end", func() bool {
		buf := make([]byte, 4<<20)
		st := string(buf[:runtime.Stack(buf, true)])
		return !strings.Contains(st, "gateway.(*session)") && !strings.Contains(st, "gateway.waitReadable") &&
			!strings.Contains(st, "gateway.(*Server).serve")
	})
}

// goClients runs client(0) to client(n-1) at once; the function it returns
// waits for them and gives their errors.
func goClients(n int, client func(i int) error) (wait func() []error) {
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- client(i)
		}()
	}
	return func() []error {
		wg.Wait()
		close(errs)
		var out []error
		for err := range errs {
			if err != nil {
				out = append(out, err)
			}
		}
		return out
	}
}

func TestHandoffMixedClients(t *testing.T) {
	cfg := testConfig()
	cfg.TLS = &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}}
	cfg.MaxConnectionsPerIP = 100
	g := startGateway(t, cfg, nil, nil)
	pcfg := testConfig()
	pcfg.ProxyTrusted = mustPrefixes("127.0.0.0/8")
	gp := startGateway(t, pcfg, nil, nil)
	stop := make(chan struct{})
	sweeperDone := sweepUntil(stop, g.srv, gp.srv)
	wait := goClients(48, func(i int) error {
		mode := []string{"plain", "tls", "proxy"}[i%3]
		addr := g.addr
		if mode == "proxy" {
			addr = gp.addr
		}
		return mixedSession(addr, i, mode)
	})
	errs := wait()
	close(stop)
	sweeperDone()
	for _, err := range errs {
		t.Error(err)
	}
	if g.srv.handoffs.Load() == 0 || gp.srv.handoffs.Load() == 0 {
		t.Error("no wait was handed off: the test did not test handoffs")
	}
	sessionsEnded(t, g.srv)
	sessionsEnded(t, gp.srv)
	noSessionGoroutines(t)
}

// TestHandoffShutdownMixed: sessions idle (clear text and TLS) get 421
// 4.3.2; sessions waiting inside a transaction (their waits handed off,
// or being handed off, as Shutdown comes) and sessions in DATA finish the
// message, then get 421 4.3.2; Shutdown returns once they have.
func TestHandoffShutdownMixed(t *testing.T) {
	for round := range 4 {
		cfg := testConfig()
		cfg.TLS = &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}}
		g := startGateway(t, cfg, nil, nil)
		stop := make(chan struct{})
		sweeperDone := sweepUntil(stop, g.srv)
		const clients = 16
		ready := make(chan struct{}, clients)
		shut := make(chan struct{})
		wait := goClients(clients, func(i int) error { return shutdownClient(g.addr, i, ready, shut) })
		for range clients {
			<-ready
		}
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			done <- g.srv.Shutdown(ctx)
		}()
		close(shut)
		errs := wait()
		close(stop)
		sweeperDone()
		for _, err := range errs {
			t.Errorf("round %d: %v", round, err)
		}
		if err := <-done; err != nil {
			t.Fatalf("round %d: Shutdown: %v", round, err)
		}
		sessionsEnded(t, g.srv)
	}
	noSessionGoroutines(t)
}

// shutdownClient opens a session (STARTTLS for one in three), gets it to
// its place (idle, inside a transaction, or in DATA), tells ready, and
// once shut closes checks what Shutdown does to it.
func shutdownClient(addr string, i int, ready, shut chan struct{}) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second)) // a hang guard
	m := &mixedClient{c: c, r: bufio.NewReader(c), rnd: rand.New(rand.NewPCG(uint64(i), 9)), id: i}
	if line, err := readReply(m.r); err != nil || !strings.HasPrefix(line, "220") {
		return fmt.Errorf("client %d: greeting %q (%v)", i, line, err)
	}
	if err := m.do("EHLO c\r\n", "250"); err != nil {
		return err
	}
	if i%3 == 2 {
		if err := m.startTLS(c, "c"); err != nil {
			return err
		}
	}
	switch i % 4 {
	case 0, 2: // idle
		ready <- struct{}{}
		<-shut
		return m.do("", "421 4.3.2")
	case 1: // inside a transaction, between commands
		if err := m.do("MAIL FROM:<a@sender.test>\r\nRCPT TO:<bob@example.com>\r\n", "250", "250"); err != nil {
			return err
		}
		ready <- struct{}{}
		<-shut
		m.pause()
		if err := m.do("DATA\r\n", "354"); err != nil {
			return err
		}
		return m.do("Subject: x\r\n\r\nbody\r\n.\r\n", "250", "421 4.3.2")
	default: // in DATA
		if err := m.do("MAIL FROM:<a@sender.test>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n", "250", "250", "354"); err != nil {
			return err
		}
		m.send("Subject: x\r\n\r\n")
		ready <- struct{}{}
		<-shut
		m.pause()
		return m.do("body\r\n.\r\n", "250", "421 4.3.2")
	}
}
