package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var binary string

// TestMain builds the daemon once: these tests run it as operators do, as a
// process that gets signals.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gatewayd-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "gatewayd")
	out, err := exec.Command("go", "build", "-race", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type daemon struct {
	cmd    *exec.Cmd
	stderr *safeBuf
	stdout *safeBuf
	done   chan error
}

// safeBuf is a strings.Builder shared between the reader goroutines and the
// test.
type safeBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *safeBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuf) WriteString(p string) { s.Write([]byte(p)) }

func (s *safeBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startDaemon(t *testing.T, args ...string) *daemon {
	d := &daemon{stderr: &safeBuf{}, stdout: &safeBuf{}, done: make(chan error, 1)}
	d.cmd = exec.Command(binary, args...)
	d.cmd.Dir = t.TempDir()
	pr, pw := io.Pipe()
	d.cmd.Stderr = pw
	d.cmd.Stdout = d.stdout
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		once := false
		for sc.Scan() {
			d.stderr.WriteString(sc.Text() + "\n")
			if !once && strings.Contains(sc.Text(), "SMTP listening") {
				once = true
				close(ready)
			}
		}
	}()
	go func() { d.done <- d.cmd.Wait(); pw.Close() }()
	select {
	case <-ready:
	case err := <-d.done:
		t.Fatalf("daemon exited: %v\n%s", err, d.stderr.String())
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		t.Fatalf("daemon did not start:\n%s", d.stderr.String())
	}
	t.Cleanup(func() { d.cmd.Process.Kill() })
	return d
}

func writeConfig(t *testing.T, body string) string {
	p := filepath.Join(t.TempDir(), "gatewayd.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

type smtpConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialSMTP(t *testing.T, addr string) *smtpConn {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := &smtpConn{t: t, c: c, r: bufio.NewReader(c)}
	s.expect("220")
	return s
}

func (s *smtpConn) send(line string) { fmt.Fprintf(s.c, "%s\r\n", line) }

func (s *smtpConn) expect(prefix string) string {
	s.t.Helper()
	s.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			s.t.Fatalf("want %q: %v", prefix, err)
		}
		if len(line) > 3 && line[3] == '-' {
			continue
		}
		if !strings.HasPrefix(line, prefix) {
			s.t.Fatalf("want %q, got %q", prefix, line)
		}
		return line
	}
}

// TestMakeRunDefaults is `make run` in a test: no flags, no config; a message
// to the example domain lands in ./var/maildir/new, and the loopback HTTP
// listener serves metrics and health.
func TestMakeRunDefaults(t *testing.T) {
	// Run with no flags at all, as `make run` does; the default port may be
	// taken on a developer machine, so only run when it is free.
	l, err := net.Listen("tcp", "127.0.0.1:2525")
	if err != nil {
		t.Fatalf("127.0.0.1:2525 is busy; the embedded defaults need it: %v", err)
	}
	l.Close()
	ml, err := net.Listen("tcp", "127.0.0.1:9025")
	if err != nil {
		t.Fatalf("127.0.0.1:9025 is busy; the embedded defaults need it: %v", err)
	}
	ml.Close()
	d := startDaemon(t)
	s := dialSMTP(t, "127.0.0.1:2525")
	s.send("EHLO laptop.test")
	s.expect("250")
	s.send("MAIL FROM:<me@laptop.test>")
	s.expect("250")
	s.send("RCPT TO:<someone@example.com>")
	s.expect("250")
	s.send("DATA")
	s.expect("354")
	s.send("Subject: first try\r\n\r\nHello.\r\n.")
	s.expect("250 2.0.0")
	s.send("QUIT")
	s.expect("221")
	ents, err := os.ReadDir(filepath.Join(d.cmd.Dir, "var", "maildir", "new"))
	if err != nil || len(ents) != 1 {
		t.Fatalf("maildir/new: %v %v", ents, err)
	}
	data, _ := os.ReadFile(filepath.Join(d.cmd.Dir, "var", "maildir", "new", ents[0].Name()))
	if !strings.Contains(string(data), "Subject: first try\r\n\r\nHello.\r\n") || !strings.HasPrefix(string(data), "Received: ") {
		t.Errorf("delivered file:\n%s", data)
	}
	// Metrics and health on the loopback HTTP listener.
	resp, err := http.Get("http://127.0.0.1:9025/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`gatewayd_connections_total{result="accepted"} 1`, `gatewayd_decisions_total{action="relay",stage="data"} 1`, "gatewayd_sessions_in_flight"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://127.0.0.1:9025" + p)
		if err != nil || resp.StatusCode != 200 {
			t.Errorf("%s: %v %v", p, resp, err)
		}
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-d.done; err != nil {
		t.Errorf("exit: %v", err)
	}
	if !strings.Contains(d.stdout.String(), `"action":"relay"`) {
		t.Errorf("decision log on stdout lacks the relay:\n%s", d.stdout.String())
	}
}

// TestSIGTERMWithDataInFlight: SIGTERM lets the transaction in flight finish
// (250, message delivered), tells an idle session 421, and exits 0.
func TestSIGTERMWithDataInFlight(t *testing.T) {
	addr := freePort(t)
	cfg := writeConfig(t, fmt.Sprintf("listen: [%q]\nmetrics:\n  listen: \"\"\nshutdown_timeout: 20s\n", addr))
	d := startDaemon(t, "-config", cfg)
	busy := dialSMTP(t, addr)
	idle := dialSMTP(t, addr)
	idle.send("EHLO idle.test")
	idle.expect("250")
	busy.send("EHLO busy.test")
	busy.expect("250")
	busy.send("MAIL FROM:<a@sender.test>")
	busy.expect("250")
	busy.send("RCPT TO:<bob@example.com>")
	busy.expect("250")
	busy.send("DATA")
	busy.expect("354")
	busy.send("Subject: in flight\r\n\r\nfirst half")

	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	idle.expect("421 4.3.2")
	// New connections are refused once the listener is closed.
	waitGone(t, addr)
	busy.send("second half\r\n.")
	busy.expect("250 2.0.0")
	busy.send("QUIT")
	busy.expect("421 4.3.2") // draining: the next command outside a transaction ends the session
	select {
	case err := <-d.done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, d.stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("daemon did not exit")
	}
	ents, _ := os.ReadDir(filepath.Join(d.cmd.Dir, "var", "maildir", "new"))
	if len(ents) != 1 {
		t.Fatalf("the message in flight was not delivered: %d files", len(ents))
	}
}

func waitGone(t *testing.T, addr string) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		c.Close()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("listener still accepting after SIGTERM")
}

// TestBadConfigRefusesToStart: an unknown key stops the daemon with a
// message naming it.
func TestBadConfigRefusesToStart(t *testing.T) {
	cfg := writeConfig(t, "limits:\n  max_mesage_size: 10MiB\n")
	out, err := exec.Command(binary, "-check-config").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "embedded defaults: configuration OK") {
		t.Fatalf("-check-config on the embedded defaults: %v %s", err, out)
	}
	for _, args := range [][]string{{"-config", cfg}, {"check", "-config", cfg}, {"-check-config", "-config", cfg}} {
		out, err := exec.Command(binary, args...).CombinedOutput()
		if err == nil {
			t.Fatalf("%v: started on a bad config", args)
		}
		if !strings.Contains(string(out), `limits.max_mesage_size: unknown key (did you mean "max_message_size"?)`) {
			t.Errorf("%v: message does not name the key:\n%s", args, out)
		}
	}
}

// TestSIGHUPReload: a valid change applies to new sessions; a bad file
// keeps the running configuration.
func TestSIGHUPReload(t *testing.T) {
	addr := freePort(t)
	cfgPath := writeConfig(t, fmt.Sprintf("listen: [%q]\nmetrics:\n  listen: \"\"\ndomains: [example.com]\n", addr))
	d := startDaemon(t, "-config", cfgPath)
	rcpt := func(to, want string) {
		s := dialSMTP(t, addr)
		s.send("EHLO c.test")
		s.expect("250")
		s.send("MAIL FROM:<a@s.test>")
		s.expect("250")
		s.send("RCPT TO:<" + to + ">")
		s.expect(want)
		s.send("QUIT")
	}
	rcpt("x@example.net", "550 5.7.1")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf("listen: [%q]\nmetrics:\n  listen: \"\"\ndomains: [example.com, example.net]\n", addr)), 0o600)
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, d, "configuration reloaded")
	rcpt("x@example.net", "250")
	os.WriteFile(cfgPath, []byte("domains: [\n"), 0o600)
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, d, "reload failed")
	rcpt("x@example.net", "250")
}

func waitLog(t *testing.T, d *daemon, s string) {
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(d.stderr.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("log never said %q:\n%s", s, d.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func deadline() time.Time { return time.Now().Add(20 * time.Second) }

// TestUpstreamHeloDefault: without upstream.helo and hostname, the EHLO
// to the internal MTA names the machine (as the README says), not
// "localhost".
func TestUpstreamHeloDefault(t *testing.T) {
	want, err := os.Hostname()
	if err != nil || want == "" || want == "localhost" {
		t.Skipf("the machine's host name (%q, %v) cannot tell the default from localhost", want, err)
	}
	up, ehlo := ehloCatcher(t)
	addr := freePort(t)
	cfg := writeConfig(t, fmt.Sprintf("listen: [%q]\nmetrics:\n  listen: \"\"\nupstream:\n  addrs: [%q]\n", addr, up.Addr().String()))
	startDaemon(t, "-config", cfg)
	upstreamEHLO(t, dialSMTP(t, addr), ehlo, "EHLO "+want)
}

// upstreamEHLO starts a transaction on s, so that the daemon connects to
// the internal MTA, and checks the EHLO line it sent there.
func upstreamEHLO(t *testing.T, s *smtpConn, ehlo <-chan string, want string) {
	t.Helper()
	s.send("EHLO c.test")
	s.expect("250")
	s.send("MAIL FROM:<a@s.test>")
	s.send("RCPT TO:<bob@example.com>")
	select {
	case got := <-ehlo:
		if got != want {
			t.Errorf("upstream got %q, want %q", got, want)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the internal MTA was never contacted")
	}
}

// TestHostnameTrailingDot: hostname and upstream.helo written with the
// root dot are sent without it, in the greeting and in EHLO upstream.
func TestHostnameTrailingDot(t *testing.T) {
	up, ehlo := ehloCatcher(t)
	addr := freePort(t)
	startDaemon(t, "-config", writeConfig(t, fmt.Sprintf("listen: [%q]\nmetrics:\n  listen: \"\"\nhostname: mx.example.com.\nupstream:\n  addrs: [%q]\n  helo: gw1.example.com.\n",
		addr, up.Addr().String())))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := &smtpConn{t: t, c: c, r: bufio.NewReader(c)}
	if got := s.expect("220"); !strings.HasPrefix(got, "220 mx.example.com ") {
		t.Errorf("greeting %q, want the hostname without its trailing dot", got)
	}
	upstreamEHLO(t, s, ehlo, "EHLO gw1.example.com")
}

// TestCheckAgreesWithDaemon: `gatewayd check` (and -check-config) refuses
// what the daemon refuses at start, with the same message: rule files that
// do not load, rules naming a zone that is not configured, a decision log
// or a quarantine that cannot be opened.
func TestCheckAgreesWithDaemon(t *testing.T) {
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	file := filepath.Join(t.TempDir(), "a-file")
	os.WriteFile(file, nil, 0o600)
	// Dangling symlinks: the daemon follows them (the decision log's open
	// creates the target) or cannot make a directory over them (Maildir).
	links := t.TempDir()
	danglingLog := filepath.Join(links, "decisions.log")
	os.Symlink(filepath.Join(links, "not-mounted", "decisions.log"), danglingLog)
	danglingTmp := filepath.Join(links, "q")
	os.Mkdir(danglingTmp, 0o750)
	os.Symlink(filepath.Join(links, "gone"), filepath.Join(danglingTmp, "tmp"))
	danglingRoot := filepath.Join(links, "q2")
	os.Symlink("gone2", danglingRoot)
	cases := []struct{ name, cfg, want string }{
		{"rules that do not load", fmt.Sprintf("rules:\n  dir: %q\n", abs("../../policy/testdata/errors/many")),
			"9 errors in rules"},
		{"rules naming a zone not configured", fmt.Sprintf("checks: [dnsbl]\ndns:\n  servers: [127.0.0.1]\ndnsbl:\n  zones:\n    - zone: other.example\nrules:\n  dir: %q\n", abs("../../rules")),
			`20-dnsbl.yaml:85:23: rule "dnswl_listed": if: zone "list.dnswl.org" is not configured`},
		{"decision log in a missing directory", "log:\n  decisions: /nonexistent/dir/file.log\n",
			"gatewayd.yaml:5:14: log.decisions: "},
		{"quarantine under a file", fmt.Sprintf("quarantine: %q\n", filepath.Join(file, "q")),
			"gatewayd.yaml:4:13: quarantine: "},
		{"decision log a symlink into a missing directory", fmt.Sprintf("log:\n  decisions: %q\n", danglingLog),
			"gatewayd.yaml:5:14: log.decisions: "},
		{"quarantine whose tmp is a dangling symlink", fmt.Sprintf("quarantine: %q\n", danglingTmp),
			"gatewayd.yaml:4:13: quarantine: "},
		{"quarantine a dangling symlink", fmt.Sprintf("quarantine: %q\n", danglingRoot),
			"gatewayd.yaml:4:13: quarantine: "},
		// A directory, but none a file can be created in (root too):
		// every message over memory_threshold got a 451.
		{"temp_dir where no file can be created", "temp_dir: /proc/self\n",
			"gatewayd.yaml:4:11: temp_dir: cannot create files in /proc/self: "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := writeConfig(t, fmt.Sprintf("listen: [%q]\nmetrics:\n  listen: \"\"\n", freePort(t))+c.cfg)
			for _, args := range [][]string{{"check", "-config", cfg}, {"-check-config", "-config", cfg}, {"-config", cfg}} {
				cmd := exec.Command(binary, args...)
				cmd.Dir = t.TempDir()
				timer := time.AfterFunc(20*time.Second, func() { cmd.Process.Kill() })
				out, err := cmd.CombinedOutput()
				timer.Stop()
				if err == nil || strings.Contains(string(out), "configuration OK") || strings.Contains(string(out), "SMTP listening") {
					t.Errorf("%v: accepted:\n%s", args, out)
					continue
				}
				if !strings.Contains(string(out), c.want) {
					t.Errorf("%v: output lacks %q:\n%s", args, c.want, out)
				}
			}
		})
	}
}

// TestCheckCreatesNothing: check tries the paths the daemon would create
// (decision log, quarantine, maildir) without leaving anything behind.
func TestCheckCreatesNothing(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, fmt.Sprintf("log:\n  decisions: %q\nquarantine: %q\nmaildir: %q\n",
		filepath.Join(dir, "decisions.log"), filepath.Join(dir, "var", "quarantine"), filepath.Join(dir, "var", "maildir")))
	out, err := exec.Command(binary, "check", "-config", cfg).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "configuration OK") {
		t.Fatalf("%v\n%s", err, out)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("check left %v behind", ents)
	}
}

// TestCheckFollowsSymlinks: a decision log that is a symlink to a file not
// yet made, in a directory that exists, is created there by the daemon;
// check accepts it and creates nothing, and the daemon starts.
func TestCheckFollowsSymlinks(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "logs"), 0o750)
	link := filepath.Join(dir, "decisions.log")
	os.Symlink(filepath.Join("logs", "decisions.log"), link)
	cfg := writeConfig(t, fmt.Sprintf("listen: [%q]\nmetrics:\n  listen: \"\"\nlog:\n  decisions: %q\n", freePort(t), link))
	out, err := exec.Command(binary, "check", "-config", cfg).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "configuration OK") {
		t.Fatalf("check refused: %v\n%s", err, out)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "logs")); len(ents) != 0 {
		t.Errorf("check left %v behind", ents)
	}
	startDaemon(t, "-config", cfg)
	if _, err := os.Stat(filepath.Join(dir, "logs", "decisions.log")); err != nil {
		t.Errorf("the daemon did not create the link's target: %v", err)
	}
}

// TestCheckResolvesLinksAsTheKernel: a ".." after a symlinked directory,
// in the decision log's path or in the relative target of a dangling
// symlink, goes to the parent of the directory linked to, as the daemon's
// open finds it, not to the parent of the link: check accepts the path
// when the directory the daemon creates the file in exists, and refuses
// it when only the one beside the link does.
func TestCheckResolvesLinksAsTheKernel(t *testing.T) {
	cases := []struct {
		name string
		// log is the decision log's path in dir, where link is a symlink
		// to real/sub; sublink, if not "", is made a symlink in real/sub
		// to it.
		log, sublink string
		mkdir        string // the logs directory made: "real/logs" or "logs"
	}{
		{"path, beside the target", "link/../logs/d.log", "", "real/logs"},
		{"path, beside the link", "link/../logs/d.log", "", "logs"},
		{"dangling relative link, beside the target", "link/d.log", "../logs/d.log", "real/logs"},
		{"dangling relative link, beside the link", "link/d.log", "../logs/d.log", "logs"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			os.MkdirAll(filepath.Join(dir, "real", "sub"), 0o750)
			os.MkdirAll(filepath.Join(dir, c.mkdir), 0o750)
			if err := os.Symlink(filepath.Join("real", "sub"), filepath.Join(dir, "link")); err != nil {
				t.Fatal(err)
			}
			if c.sublink != "" {
				if err := os.Symlink(c.sublink, filepath.Join(dir, "real", "sub", "d.log")); err != nil {
					t.Fatal(err)
				}
			}
			// Not filepath.Join, which would clean the "..".
			log := dir + "/" + c.log
			created := filepath.Join(dir, "real", "logs", "d.log")
			opens := c.mkdir == "real/logs"
			if !opens {
				// What the daemon's open does.
				if f, err := os.OpenFile(log, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640); err == nil {
					f.Close()
					t.Fatalf("the open of %s succeeded", log)
				}
			}
			cfg := writeConfig(t, fmt.Sprintf("listen: [%q]\nmetrics:\n  listen: \"\"\nlog:\n  decisions: %q\n", freePort(t), log))
			out, err := exec.Command(binary, "check", "-config", cfg).CombinedOutput()
			switch {
			case opens && (err != nil || !strings.Contains(string(out), "configuration OK")):
				t.Fatalf("check refused: %v\n%s", err, out)
			case !opens && (err == nil || !strings.Contains(string(out), "log.decisions: ")):
				t.Fatalf("check did not refuse the decision log: %v\n%s", err, out)
			}
			if ents, _ := os.ReadDir(filepath.Join(dir, c.mkdir)); len(ents) != 0 {
				t.Errorf("check left %v behind", ents)
			}
			if opens {
				startDaemon(t, "-config", cfg)
				if _, err := os.Stat(created); err != nil {
					t.Errorf("the daemon did not create %s: %v", created, err)
				}
			}
		})
	}
}

// TestSIGHUPRestartOnlyKeys: a reload that changes keys only a restart
// applies says so, naming them, on every reload until the restart.
func TestSIGHUPRestartOnlyKeys(t *testing.T) {
	addr := freePort(t)
	dir := t.TempDir()
	base := fmt.Sprintf("listen: [%q]\nmetrics:\n  listen: \"\"\n", addr)
	cfgPath := writeConfig(t, base)
	d := startDaemon(t, "-config", cfgPath)
	changed := base + fmt.Sprintf("log:\n  decisions: %q\n  level: debug\n  format: json\nquarantine: %q\ncpus: 1\nrules:\n  watch: false\nproxy_protocol:\n  header_timeout: 7s\n",
		filepath.Join(dir, "d.log"), filepath.Join(dir, "q"))
	os.WriteFile(cfgPath, []byte(changed), 0o600)
	want := `keys="[log.decisions log.level log.format quarantine cpus rules.watch proxy_protocol.header_timeout]"`
	for i := 1; i <= 2; i++ {
		d.cmd.Process.Signal(syscall.SIGHUP)
		deadline := time.Now().Add(10 * time.Second)
		for strings.Count(d.stderr.String(), "configuration reloaded") < i {
			if time.Now().After(deadline) {
				t.Fatalf("reload %d not logged:\n%s", i, d.stderr.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
		if n := strings.Count(d.stderr.String(), want); n != i {
			t.Fatalf("after reload %d: %d warnings naming %s:\n%s", i, n, want, d.stderr.String())
		}
	}
}

// TestCPUsKey: the cpus key sets how many threads run Go code at once
// (GOMAXPROCS), and the start says what runs; without it, Go's default.
// One more than this process runs on (the machine's CPUs, or the
// GOMAXPROCS variable the daemon inherits too) is never the default.
func TestCPUsKey(t *testing.T) {
	n := runtime.GOMAXPROCS(0) + 1
	addr := freePort(t)
	d := startDaemon(t, "-config", writeConfig(t, fmt.Sprintf("listen: [%q]\nmetrics:\n  listen: \"\"\ncpus: %d\n", addr, n)))
	if want := fmt.Sprintf(" cpus=%d\n", n); !strings.Contains(d.stderr.String(), want) {
		t.Fatalf("start did not log%q:\n%s", want, d.stderr.String())
	}
	addr = freePort(t)
	d = startDaemon(t, "-config", writeConfig(t, fmt.Sprintf("listen: [%q]\nmetrics:\n  listen: \"\"\n", addr)))
	if bad := fmt.Sprintf(" cpus=%d\n", n); strings.Contains(d.stderr.String(), bad) || !strings.Contains(d.stderr.String(), " cpus=") {
		t.Fatalf("without the key, the start logged no cpus or %q:\n%s", bad, d.stderr.String())
	}
}

// TestDecisionLogMailRefusals: a MAIL refused for its SIZE writes a
// decision line (as the README says); a command refused for its syntax
// writes none (README: counted towards max_errors only).
func TestDecisionLogMailRefusals(t *testing.T) {
	addr := freePort(t)
	cfg := writeConfig(t, fmt.Sprintf("listen: [%q]\nmetrics:\n  listen: \"\"\nlimits:\n  max_message_size: 1MiB\n", addr))
	d := startDaemon(t, "-config", cfg)
	s := dialSMTP(t, addr)
	s.send("EHLO c.test")
	s.expect("250")
	s.send("MAIL FROM:a@example.org")
	s.expect("501")
	s.send("MAIL FROM:<a@example.org> SIZE=999999999999")
	s.expect("552 5.3.4")
	s.send("QUIT")
	s.expect("221")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(d.stdout.String(), "size_limit") {
		if time.Now().After(deadline) {
			t.Fatalf("no decision line for the SIZE refusal:\n%s", d.stdout.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	lines := strings.Split(strings.TrimSpace(d.stdout.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one decision line, got %d:\n%s", len(lines), d.stdout.String())
	}
	for _, want := range []string{`"mail_from":"a@example.org"`, `"stage":"mail"`, `"action":"reject"`, `"code":552`, `"enhanced":"5.3.4"`, `"rule":"size_limit"`, `"detail":"SIZE=999999999999"`} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("decision line lacks %s:\n%s", want, lines[0])
		}
	}
}

// TestMaxErrorsMeansMoreThan pins what the README says of
// limits.max_errors: a session is cut off once it has more than
// max_errors refused commands (as Postfix's smtpd_hard_error_limit), so
// with 3 the fourth refusal is answered, then 421 and hang-up.
func TestMaxErrorsMeansMoreThan(t *testing.T) {
	addr := freePort(t)
	cfg := writeConfig(t, fmt.Sprintf("listen: [%q]\nmetrics:\n  listen: \"\"\nlimits:\n  max_errors: 3\n", addr))
	startDaemon(t, "-config", cfg)
	s := dialSMTP(t, addr)
	for i := 0; i < 4; i++ {
		s.send("BOGUS")
		s.expect("500")
	}
	s.expect("421 4.7.0")
}

// TestCLIHelp: -h lists every subcommand and exits 0; an unknown argument
// names them all; greylist's -admin example is the default admin port.
func TestCLIHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}} {
		out, err := exec.Command(binary, args...).CombinedOutput()
		if err != nil {
			t.Errorf("%v: %v", args, err)
		}
		for _, want := range []string{"gatewayd check", "-check-config", "gatewayd rules check", "gatewayd explain", "gatewayd greylist", "-config"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("%v: help lacks %q:\n%s", args, want, out)
			}
		}
	}
	out, err := exec.Command(binary, "bogus").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Errorf("unknown argument: %v", err)
	}
	if !strings.Contains(string(out), "subcommands: check, rules, explain, greylist") {
		t.Errorf("unknown argument:\n%s", out)
	}
	// check takes no positional argument: `check FILE` would check the
	// embedded defaults, not FILE.
	out, err = exec.Command(binary, "check", "gatewayd.yaml").CombinedOutput()
	if err == nil || strings.Contains(string(out), "configuration OK") {
		t.Errorf("check with a stray argument: %v\n%s", err, out)
	}
	out, _ = exec.Command(binary, "greylist", "-h").CombinedOutput()
	if !strings.Contains(string(out), "http://127.0.0.1:9025") || strings.Contains(string(out), "8025") {
		t.Errorf("greylist -admin help does not show the default port 9025:\n%s", out)
	}
}

// ehloCatcher listens as an internal MTA that greets its first client and
// hands over the first line it says (the EHLO), then hangs up.
func ehloCatcher(t *testing.T) (net.Listener, <-chan string) {
	t.Helper()
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	ehlo := make(chan string, 1)
	go func() {
		c, err := up.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprintf(c, "220 upstream.test ESMTP\r\n")
		line, _ := bufio.NewReader(c).ReadString('\n')
		ehlo <- strings.TrimSpace(line)
	}()
	return up, ehlo
}

// TestREADMERestartOnlyKeys: every key restartOnly warns of is in the
// README's list of the keys that change only on restart (the SIGHUP row),
// and the list names no other (but rules.dir, which the rules' reload
// reports).
func TestREADMERestartOnlyKeys(t *testing.T) {
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	var code []string
	for _, m := range regexp.MustCompile(`diff\("([a-z_.]+)"`).FindAllStringSubmatch(string(src), -1) {
		code = append(code, m[1])
	}
	if len(code) == 0 {
		t.Fatal("found no diff(...) in main.go")
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "These keys change only on restart")
	if !ok {
		t.Fatal("README.md has no list of the keys that change only on restart")
	}
	line, _, _ := strings.Cut(rest, "\n")
	_, list, _ := strings.Cut(line, ":")
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("`([a-z_.]+)`").FindAllStringSubmatch(list, -1) {
		documented[m[1]] = true
	}
	for _, k := range code {
		if !documented[k] {
			t.Errorf("restartOnly reports %s; the README's list of keys that change only on restart lacks it", k)
		}
		delete(documented, k)
	}
	delete(documented, "rules.dir")
	for k := range documented {
		t.Errorf("README lists %s as changing only on restart; restartOnly does not report it", k)
	}
}

// TestExitStatusDocumented: scripts need the exit statuses; the help and
// the README state them.
func TestExitStatusDocumented(t *testing.T) {
	out, _ := exec.Command(binary, "-h").CombinedOutput()
	if !strings.Contains(string(out), "Exit status: 0 success, 1 failure, 2 usage error") {
		t.Errorf("gatewayd -h does not state the exit statuses:\n%s", out)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "Exit status, for the daemon and every subcommand") {
		t.Error("README does not state the exit statuses")
	}
}
