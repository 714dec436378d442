package gateway

// A session waiting for its client is handed off to a goroutine with a
// small stack (session.park, Server.sweep): the session must go on exactly
// as if nothing happened, in clear text and in TLS, and its idle timeout
// and a shutdown must still reach it.

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// handOff sweeps until the server has handed off one more wait than
// before (the session may not have begun its wait yet when asked).
func handOff(t *testing.T, s *Server) {
	t.Helper()
	before := s.handoffs.Load()
	waitFor(t, "a wait to be handed off", func() bool {
		s.sweep()
		return s.handoffs.Load() > before
	})
}

func TestHandoffSessionGoesOn(t *testing.T) {
	g := startGateway(t, testConfig(), nil, nil)
	c := dialEHLO(t, g.addr)
	handOff(t, g.srv) // idle, outside a transaction
	runDialog(t, c, "> MAIL FROM:<a@sender.test>\n< 250\n> RCPT TO:<bob@example.com>\n< 250")
	handOff(t, g.srv) // waiting inside a transaction
	runDialog(t, c, "> DATA\n< 354\n>> \"Subject: hi\\r\\n\\r\\nafter a handoff\\r\\n.\\r\\n\"\n< 250\n> QUIT\n< 221\n<EOF")
	msgs := g.mta.messages()
	if len(msgs) != 1 || !strings.Contains(string(msgs[0].Data), "after a handoff") {
		t.Fatalf("relayed %d messages, want the one sent", len(msgs))
	}
	sessionsEnded(t, g.srv)
}

// TestHandoffTLS: a TLS session waits through tls.Conn; the cut read is a
// timeout the TLS layer recovers from.
func TestHandoffTLS(t *testing.T) {
	g, tc := startTLSSession(t, testConfig())
	handOff(t, g.srv)
	runDialog(t, tc, "> MAIL FROM:<a@sender.test>\n< 250\n> RCPT TO:<bob@example.com>\n< 250")
	handOff(t, g.srv)
	runDialog(t, tc, "> DATA\n< 354\n>> \"Subject: hi\\r\\n\\r\\nin TLS\\r\\n.\\r\\n\"\n< 250\n> QUIT\n< 221")
	if n := len(g.mta.messages()); n != 1 {
		t.Fatalf("relayed %d messages, want 1", n)
	}
}

// TestHandoffIdleTimeout: the idle timeout counts from the client's last
// command, not from the handoff, and still ends the session with 421.
func TestHandoffIdleTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.IdleTimeout = 2 * time.Second
	g := startGateway(t, cfg, nil, nil)
	c := dialEHLO(t, g.addr)
	handOff(t, g.srv)
	runDialog(t, c, "< 421 4.4.2\n<EOF")
	if log := g.log.String(); !strings.Contains(log, `"rule":"idle_timeout"`) {
		t.Errorf("no idle_timeout decision line:\n%s", log)
	}
	sessionsEnded(t, g.srv)
}

// TestHandoffShutdown: Shutdown answers a handed-off idle session 421 as
// any idle one.
func TestHandoffShutdown(t *testing.T) {
	g := startGateway(t, testConfig(), nil, nil)
	c := dialEHLO(t, g.addr)
	handOff(t, g.srv)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- g.srv.Shutdown(ctx)
	}()
	runDialog(t, c, "< 421 4.3.2\n<EOF")
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	sessionsEnded(t, g.srv)
}

// TestHandoffRaces: sweeps that never stop, against clients whose commands
// come at random moments, so that reads are cut short as octets arrive.
// Every command must get its reply, in order, and nothing may be read
// twice or lost.
func TestHandoffRaces(t *testing.T) {
	g := startGateway(t, testConfig(), nil, nil)
	stop := make(chan struct{})
	var sweeper sync.WaitGroup
	sweeper.Add(1)
	go func() {
		defer sweeper.Done()
		for {
			select {
			case <-stop:
				return
			default:
				g.srv.sweep()
				time.Sleep(50 * time.Microsecond)
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- noopClient(g.addr, i)
		}()
	}
	wg.Wait()
	close(stop)
	sweeper.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if g.srv.handoffs.Load() == 0 {
		t.Error("no wait was handed off: the test did not test handoffs")
	}
	sessionsEnded(t, g.srv)
}

// noopClient sends numbered NOOPs, one at a time or two in one write, with
// random pauses, and checks each reply.
func noopClient(addr string, id int) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	r := bufio.NewReader(c)
	if _, err := readReply(r); err != nil {
		return fmt.Errorf("client %d greeting: %w", id, err)
	}
	rnd := rand.New(rand.NewPCG(uint64(id), 1))
	for n := 0; n < 150; {
		k := 1 + rnd.IntN(2)
		var b strings.Builder
		for j := range k {
			fmt.Fprintf(&b, "NOOP %d-%d\r\n", id, n+j)
		}
		if _, err := c.Write([]byte(b.String())); err != nil {
			return fmt.Errorf("client %d: %w", id, err)
		}
		for j := 0; j < k; j, n = j+1, n+1 {
			line, err := readReply(r)
			if err != nil {
				return fmt.Errorf("client %d, NOOP %d: %w", id, n, err)
			}
			if !strings.HasPrefix(line, "250 ") {
				return fmt.Errorf("client %d, NOOP %d: reply %q", id, n, line)
			}
		}
		time.Sleep(time.Duration(rnd.IntN(1500)) * time.Microsecond)
	}
	if _, err := c.Write([]byte("QUIT\r\n")); err != nil {
		return err
	}
	line, err := readReply(r)
	if err != nil || !strings.HasPrefix(line, "221") {
		return fmt.Errorf("client %d QUIT: %q %v", id, line, err)
	}
	return nil
}

// TestHandoffDataInBetween: the client's next command arrives after the
// cut read returned and before the new goroutine waits. The poller has
// reported it already, so the new wait must look at the socket rather
// than wait for a readiness that was reported before it began.
func TestHandoffDataInBetween(t *testing.T) {
	g := startGateway(t, testConfig(), nil, nil)
	c := dialEHLO(t, g.addr)
	testHandoffHook = func() {
		c.Write([]byte("NOOP\r\n"))
		time.Sleep(100 * time.Millisecond) // for the poller to see it
	}
	defer func() { testHandoffHook = nil }()
	handOff(t, g.srv)
	runDialog(t, c, "< 250 2.0.0\n> QUIT\n< 221")
}

// TestHandoffKeepsIdleDeadlineTLS: a TLS session's wait goes on in a read
// through the TLS layer after a handoff; that read keeps the idle
// deadline the cut wait had (from the client's last command), rather than
// set a new one from the handoff.
func TestHandoffKeepsIdleDeadlineTLS(t *testing.T) {
	cfg := testConfig()
	cfg.IdleTimeout = 2 * time.Second // a 64th (the deadline's slack) is 31 ms
	g, tc := startTLSSession(t, cfg)
	var sess *session
	waitFor(t, "the session", func() bool {
		g.srv.mu.Lock()
		defer g.srv.mu.Unlock()
		for s := range g.srv.sessions {
			sess = s
		}
		return sess != nil
	})
	rd := func() (time.Time, bool) {
		sess.mu.Lock()
		defer sess.mu.Unlock()
		return sess.dc.rd, sess.keepRD
	}
	waitFor(t, "the session to wait", func() bool { sess.mu.Lock(); defer sess.mu.Unlock(); return sess.parked })
	before, _ := rd()
	time.Sleep(100 * time.Millisecond) // more than the 31 ms a new deadline may differ by unseen
	handOff(t, g.srv)
	waitFor(t, "the handed-off wait to read", func() bool { _, keep := rd(); return !keep })
	if after, _ := rd(); !after.Equal(before) {
		t.Errorf("idle deadline moved by %v at the handoff", after.Sub(before))
	}
	runDialog(t, tc, "> NOOP\n< 250\n> QUIT\n< 221")
}

// startTLSSession runs a gateway with cfg and a certificate, and opens a
// session that has said EHLO again inside TLS.
func startTLSSession(t *testing.T, cfg Config) (*testGateway, *tls.Conn) {
	t.Helper()
	cfg.TLS = &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}}
	g := startGateway(t, cfg, nil, nil)
	raw, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	runDialog(t, raw, "< 220\n> EHLO client.test\n< 250\n> STARTTLS\n< 220 2.0.0")
	tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	runDialog(t, tc, "> EHLO client.test\n< 250")
	return g, tc
}

// dialEHLO opens a session to addr that has been greeted and said EHLO;
// the test's end closes it.
func dialEHLO(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	runDialog(t, c, "< 220\n> EHLO client.test\n< 250")
	return c
}
