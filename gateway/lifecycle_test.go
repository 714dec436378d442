package gateway

// How a session ends: the counts the server keeps are given back on every
// path, and a panic anywhere is answered.

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxgate/gatewayd/policy"
	dto "github.com/prometheus/client_model/go"
)

// panicConn panics on its Nth Read (1-based).
type panicConn struct {
	net.Conn
	n, at int32
}

func (c *panicConn) Read(p []byte) (int, error) {
	if atomic.AddInt32(&c.n, 1) == c.at {
		panic("boom in read")
	}
	return c.Conn.Read(p)
}

func runHandle(s *Server, c net.Conn) chan struct{} {
	s.mu.Lock()
	s.total++
	s.wg.Add(1)
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { defer close(done); s.handle(c) }()
	return done
}

// sessionsEnded waits for every session of s to end, then checks that
// they gave back all they counted.
func sessionsEnded(t *testing.T, s *Server) {
	t.Helper()
	waitFor(t, "the sessions to end", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.total == 0
	})
	checkAccounting(t, s)
}

func checkAccounting(t *testing.T, s *Server) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.total != 0 || len(s.perIP) != 0 || len(s.sessions) != 0 {
		t.Errorf("accounting: total=%d perIP=%v sessions=%d", s.total, s.perIP, len(s.sessions))
	}
	var m dto.Metric
	s.metrics.SessionsActive.Write(&m)
	if g := m.GetGauge().GetValue(); g != 0 {
		t.Errorf("SessionsActive=%v", g)
	}
}

// TestSessionPanicWhileWaiting: a panic in the read a parked session
// waits in (the first after the greeting) ends the session with 421 4.3.0,
// as a panic anywhere else in it does, and everything is given back.
func TestSessionPanicWhileWaiting(t *testing.T) {
	cfg := testConfig()
	cfg.TempDir = t.TempDir()
	m := startMTA(t)
	up := NewSMTPUpstream(SMTPUpstreamConfig{Addrs: []string{m.addr}, Helo: "mx.test"})
	s := New(cfg, Options{Upstream: up})
	a, b := net.Pipe()
	done := runHandle(s, &panicConn{Conn: a, at: 1})
	r := bufio.NewReader(b)
	b.SetDeadline(time.Now().Add(3 * time.Second))
	var got []string
	for {
		line, err := r.ReadString('\n')
		if line != "" {
			got = append(got, strings.TrimSpace(line))
		}
		if err != nil {
			break
		}
	}
	<-done
	if len(got) < 2 || !strings.HasPrefix(got[1], "421 4.3.0") {
		t.Errorf("want 220 then 421 4.3.0 Local error, got %q", got)
	}
	checkAccounting(t, s)
}

// TestSessionAccounting: every way a session ends (QUIT, idle timeout,
// pipelined commands, too many errors, a relayed message, EOF while
// parked, shutdown of an idle session) gives back what the server counted.
func TestSessionAccounting(t *testing.T) {
	cfg := testConfig()
	cfg.IdleTimeout = time.Second // long enough for a loaded CI machine between scripted commands
	cfg.MaxErrors = 2
	g := startGateway(t, cfg, nil, nil)
	scripts := []string{
		"< 220\n> QUIT\n< 221\n<EOF",
		"< 220\n> EHLO c\n< 250\n< 421 4.4.2\n<EOF",
		"< 220\n>> \"EHLO c\\r\\nNOOP\\r\\nNOOP\\r\\nQUIT\\r\\n\"\n< 250\n< 250\n< 250\n< 221\n<EOF",
		"< 220\n> X\n< 500\n> X\n< 500\n> X\n< 500\n< 421 4.7.0\n<EOF",
		untilData + "> Subject: x\n>\n> hi\n> .\n< 250\n> QUIT\n< 221\n<EOF",
	}
	for _, sc := range scripts {
		dialog(t, g.addr, sc)
	}
	c, _ := net.Dial("tcp", g.addr)
	runDialog(t, c, "< 220\n> EHLO c\n< 250")
	c.Close() // EOF in park
	sessionsEnded(t, g.srv)

	// Shutdown interrupts an idle session with 421 4.3.2.
	c, _ = net.Dial("tcp", g.addr)
	defer c.Close()
	runDialog(t, c, "< 220\n> EHLO c\n< 250")
	waitFor(t, "idle", func() bool {
		g.srv.mu.Lock()
		defer g.srv.mu.Unlock()
		for s := range g.srv.sessions {
			s.mu.Lock()
			idle := s.idle
			s.mu.Unlock()
			return idle
		}
		return false
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	go func() { g.srv.Shutdown(ctx) }()
	runDialog(t, c, "< 421 4.3.2\n<EOF")
	sessionsEnded(t, g.srv)
}

// TestSessionGoexit: a hook that ends its goroutine (runtime.Goexit, as
// t.FailNow does) still gets the connection closed and the counts given
// back.
func TestSessionGoexit(t *testing.T) {
	hook := HookFunc(func(_ context.Context, stage policy.Stage, st *State) policy.Verdict {
		if stage == policy.StageHelo {
			runtime.Goexit()
		}
		return policy.Continue
	})
	g := startGateway(t, testConfig(), nil, hook)
	c, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	runDialog(t, c, "< 220\n> EHLO c\n<EOF")
	sessionsEnded(t, g.srv)
}

// TestSessionClientRewritten: the connection is given back under the
// address it was counted under, whatever a hook writes into State.
func TestSessionClientRewritten(t *testing.T) {
	hook := HookFunc(func(_ context.Context, stage policy.Stage, st *State) policy.Verdict {
		if stage == policy.StageConnect {
			st.Client = netip.MustParseAddrPort("192.0.2.9:25")
		}
		return policy.Continue
	})
	g := startGateway(t, testConfig(), nil, hook)
	dialog(t, g.addr, "< 220\n> QUIT\n< 221\n<EOF")
	sessionsEnded(t, g.srv)
}

// heldListener holds each accepted connection until the test lets Serve
// have it: a connection accepted just as Shutdown closes the listener.
type heldListener struct {
	net.Listener
	accepted chan struct{}
	release  chan struct{}
}

func (l *heldListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.accepted <- struct{}{}
	<-l.release
	return c, nil
}

// TestShutdownLateAccept: a connection the accept loop gets after Shutdown
// began waiting for its sessions (the last of which then ended) is
// refused with 421 4.3.2 without being counted: counting it was an Add on
// the WaitGroup Shutdown waits on, racing with that Wait (the race
// detector's report; without it, Shutdown could return with the
// connection still being served, or the Wait panic as "reused").
func TestShutdownLateAccept(t *testing.T) {
	cfg := testConfig()
	cfg.TempDir = t.TempDir()
	m := startMTA(t)
	log := &syncBuffer{}
	s := New(cfg, Options{Upstream: NewSMTPUpstream(SMTPUpstreamConfig{Addrs: []string{m.addr}}),
		Decisions: NewDecisionLogJSON(log)})
	defer s.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hl := &heldListener{Listener: ln, accepted: make(chan struct{}, 2), release: make(chan struct{}, 2)}
	go s.Serve(hl)
	inTx, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer inTx.Close()
	<-hl.accepted
	hl.release <- struct{}{}
	// A transaction in flight keeps Shutdown waiting.
	runDialog(t, inTx, "< 220\n> EHLO c\n< 250\n> MAIL FROM:<a@sender.test>\n< 250")
	late, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	<-hl.accepted // accepted; Serve does not have it yet
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	waitFor(t, "Shutdown to wait for the session", func() bool {
		buf := make([]byte, 1<<20)
		st := string(buf[:runtime.Stack(buf, true)])
		return strings.Contains(st, "(*Server).Shutdown.func1") && strings.Contains(st, "WaitGroup).Wait")
	})
	runDialog(t, inTx, "> QUIT\n< 221\n<EOF")
	hl.release <- struct{}{} // Serve gets the late connection now
	runDialog(t, late, "< 421 4.3.2\n<EOF")
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	sessionsEnded(t, s)
	waitFor(t, "the refusal's decision line", func() bool { return strings.Contains(log.String(), `"rule":"shutdown"`) })
}

// TestShutdownDeadlineProxyHeader: a trusted PROXY peer that connects and
// sends nothing holds no session yet, only its header read; when
// Shutdown's deadline passes, Close must end that read too, not leave
// Shutdown waiting for the header timeout (a minute here).
func TestShutdownDeadlineProxyHeader(t *testing.T) {
	cfg := testConfig()
	cfg.ProxyTrusted = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	cfg.ProxyHeaderTimeout = time.Minute
	g := startGateway(t, cfg, nil, nil)
	c, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, "the connection to be counted", func() bool {
		g.srv.mu.Lock()
		defer g.srv.mu.Unlock()
		return g.srv.total == 1
	})
	time.Sleep(50 * time.Millisecond) // into the header read
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- g.srv.Shutdown(ctx) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown: %v, want the deadline's error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown still waiting 10 s after its deadline: it waits for the PROXY header timeout")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	checkAccounting(t, g.srv)
}
