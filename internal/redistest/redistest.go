// Package redistest starts real redis-server processes on free 127.0.0.1
// ports for tests and benchmarks: a single node (with Stop/Start on the same
// port and Pause/Resume to simulate a stalled server), a three-node Cluster
// and a Sentinel-watched master.
//
// Servers run without persistence (--save "" --appendonly no) in a temporary
// directory and listen on loopback only. In tests use Start, StartCluster and
// StartSentinel: they fail the test (never skip it) when redis-server is not
// installed, and stop everything at t.Cleanup. Harnesses outside tests use
// New, NewCluster and NewSentinel, which return an error, and call Close.
//
// The binaries are looked up in $PATH (redis-server, redis-cli); the
// environment variables REDIS_SERVER and REDIS_CLI override them.
package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ErrNotInstalled is returned (wrapped) when redis-server or redis-cli cannot
// be found.
var ErrNotInstalled = errors.New("redis-server not found: run `make test`, which installs it")

// startTimeout bounds how long we wait for a server to answer PING.
const startTimeout = 10 * time.Second

// Server is one redis-server process on 127.0.0.1.
type Server struct {
	// Addr is "127.0.0.1:PORT"; it does not change across Stop/Start.
	Addr string
	// Port is the TCP port of Addr.
	Port int

	dir   string
	args  []string
	owned bool // dir is ours to remove

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{} // closed when cmd exits
	paused bool
}

// Binaries returns the paths of redis-server and redis-cli, or an error
// wrapping ErrNotInstalled.
func Binaries() (server, cli string, err error) {
	server, err = lookBin("REDIS_SERVER", "redis-server")
	if err != nil {
		return "", "", err
	}
	cli, err = lookBin("REDIS_CLI", "redis-cli")
	if err != nil {
		return "", "", err
	}
	return server, cli, nil
}

// minMajor is the oldest redis-server we drive: 7.0 brought the
// cluster-port and enable-debug-command options used here.
const minMajor = 7

var (
	versionOnce sync.Once
	versionErr  error
)

// checkVersion fails clearly on a redis-server older than minMajor.
func checkVersion(bin string) error {
	versionOnce.Do(func() {
		out, err := exec.Command(bin, "--version").Output()
		if err != nil {
			versionErr = fmt.Errorf("redistest: %s --version: %w", bin, err)
			return
		}
		// "Redis server v=7.0.15 sha=..."
		_, v, ok := strings.Cut(string(out), "v=")
		major, _, _ := strings.Cut(v, ".")
		n, err := strconv.Atoi(major)
		if !ok || err != nil {
			versionErr = fmt.Errorf("redistest: cannot read the version in %q", strings.TrimSpace(string(out)))
			return
		}
		if n < minMajor {
			versionErr = fmt.Errorf("redistest: redis-server %s is too old, need %d.0 or later: run `make test`", strings.Fields(v)[0], minMajor)
		}
	})
	return versionErr
}

func lookBin(env, name string) (string, error) {
	if p := os.Getenv(env); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("redistest: $%s=%s: %w", env, p, ErrNotInstalled)
		}
		return p, nil
	}
	p, err := exec.LookPath(name)
	if err != nil {
		for _, dir := range []string{"/usr/bin", "/usr/local/bin", "/usr/sbin"} {
			cand := filepath.Join(dir, name)
			if st, e := os.Stat(cand); e == nil && !st.IsDir() {
				return cand, nil
			}
		}
		return "", fmt.Errorf("redistest: %s: %w", name, ErrNotInstalled)
	}
	return p, nil
}

// Start starts a single redis-server for the test and stops it at cleanup.
// It fails the test when redis-server is missing.
func Start(t testing.TB, extraArgs ...string) *Server {
	t.Helper()
	s, err := New(extraArgs...)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// New starts a single redis-server on a free loopback port. extraArgs are
// appended to the command line (e.g. "--maxmemory", "10mb"). The caller must
// Close it.
func New(extraArgs ...string) (*Server, error) {
	dir, err := os.MkdirTemp("", "redistest-*")
	if err != nil {
		return nil, fmt.Errorf("redistest: %w", err)
	}
	var lastErr error
	// A free port can be taken by someone else between our probe and the
	// server's bind: try a few times.
	for attempt := 0; attempt < 5; attempt++ {
		ports, err := freePorts(1)
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		s, err := newServer(dir, ports[0], extraArgs)
		if err == nil {
			s.owned = true
			return s, nil
		}
		lastErr = err
		if errors.Is(err, ErrNotInstalled) {
			break
		}
	}
	_ = os.RemoveAll(dir)
	return nil, lastErr
}

func newServer(dir string, port int, extraArgs []string) (*Server, error) {
	s := &Server{
		Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Port: port,
		dir:  dir,
	}
	s.args = append([]string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--dir", dir,
		"--save", "",
		"--appendonly", "no",
		"--protected-mode", "yes",
		"--daemonize", "no",
		"--enable-debug-command", "yes",
		"--logfile", filepath.Join(dir, fmt.Sprintf("redis-%d.log", port)),
	}, extraArgs...)
	if err := s.Start(); err != nil {
		return nil, err
	}
	return s, nil
}

// Start (re)starts a stopped server on the same port and waits until it
// answers PING. It is a no-op when the server is running.
func (s *Server) Start() error {
	bin, err := lookBin("REDIS_SERVER", "redis-server")
	if err != nil {
		return err
	}
	if err := checkVersion(bin); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	cmd := exec.Command(bin, s.args...)
	cmd.Dir = s.dir
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redistest: start redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.cmd, s.done, s.paused = cmd, done, false

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	for {
		if _, err := s.doLocked(ctx, 500*time.Millisecond, "PING"); err == nil {
			return nil
		}
		select {
		case <-done:
			s.cmd = nil
			return fmt.Errorf("redistest: redis-server on port %d exited at start: %s", s.Port, s.logTail())
		case <-ctx.Done():
			s.killLocked()
			return fmt.Errorf("redistest: redis-server on port %d did not answer PING in %v: %s", s.Port, startTimeout, s.logTail())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Stop stops the server (SIGTERM, then SIGKILL after 5s) and waits for it to
// exit. Its data is gone: there is no persistence. Start brings it back on the
// same port.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killLocked()
	return nil
}

func (s *Server) killLocked() {
	if s.cmd == nil {
		return
	}
	p := s.cmd.Process
	if s.paused {
		_ = p.Signal(syscall.SIGCONT)
	}
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = p.Kill()
		<-s.done
	}
	s.cmd, s.paused = nil, false
}

// Pause freezes the server with SIGSTOP: connections stay open and commands
// hang, as with a server stuck on a slow disk or a long script. Resume thaws
// it. Close and Stop resume a paused server first.
func (s *Server) Pause() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return errors.New("redistest: pause: server not running")
	}
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return fmt.Errorf("redistest: pause: %w", err)
	}
	s.paused = true
	return nil
}

// Resume continues a server frozen by Pause.
func (s *Server) Resume() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || !s.paused {
		return nil
	}
	if err := s.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		return fmt.Errorf("redistest: resume: %w", err)
	}
	s.paused = false
	return nil
}

// DebugSleep makes the server block for d with DEBUG SLEEP. It returns once
// the command is sent; the server is busy for d afterwards.
func (s *Server) DebugSleep(d time.Duration) error {
	c, err := net.DialTimeout("tcp", s.Addr, time.Second)
	if err != nil {
		return fmt.Errorf("redistest: debug sleep: %w", err)
	}
	secs := strconv.FormatFloat(d.Seconds(), 'f', 3, 64)
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	if _, err := c.Write(encodeCommand("DEBUG", "SLEEP", secs)); err != nil {
		_ = c.Close()
		return fmt.Errorf("redistest: debug sleep: %w", err)
	}
	// Keep the connection until the sleep is over so the reply is read.
	go func() {
		_ = c.SetReadDeadline(time.Now().Add(d + 5*time.Second))
		_, _ = bufio.NewReader(c).ReadString('\n')
		_ = c.Close()
	}()
	return nil
}

// Do sends one command with a short deadline and returns the reply in a
// simple text form (see readReply). For test set-up, not for the code under
// test.
func (s *Server) Do(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return do(ctx, s.Addr, 5*time.Second, args...)
}

func (s *Server) doLocked(ctx context.Context, timeout time.Duration, args ...string) (string, error) {
	return do(ctx, s.Addr, timeout, args...)
}

// Close stops the server and removes its directory.
func (s *Server) Close() error {
	s.mu.Lock()
	s.killLocked()
	s.mu.Unlock()
	if s.owned {
		return os.RemoveAll(s.dir)
	}
	return nil
}

// LogTail returns the end of the server log, for failure messages.
func (s *Server) LogTail() string { return s.logTail() }

func (s *Server) logTail() string {
	b, err := os.ReadFile(filepath.Join(s.dir, fmt.Sprintf("redis-%d.log", s.Port)))
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// freePorts returns n distinct ports that were free on 127.0.0.1 a moment
// ago.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("redistest: free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
