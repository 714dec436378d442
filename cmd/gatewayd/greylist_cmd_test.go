package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mxgate/gatewayd/internal/redistest"
)

// greylistCmd runs `gatewayd greylist ...` and returns its output.
func greylistCmd(t *testing.T, wantOK bool, args ...string) string {
	t.Helper()
	out, err := exec.Command(binary, append([]string{"greylist"}, args...)...).CombinedOutput()
	if (err == nil) != wantOK {
		t.Fatalf("gatewayd greylist %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func sendOnce(t *testing.T, addr string) string {
	s := dialSMTP(t, addr)
	s.send("EHLO c.test")
	s.expect("250")
	s.send("MAIL FROM:<alice@sender.test>")
	s.expect("250")
	s.send("RCPT TO:<bob@example.com>")
	s.c.SetReadDeadline(deadline())
	line, _ := s.r.ReadString('\n')
	s.send("QUIT")
	return line
}

// TestGreylistOperatorCommands: the operator sees and releases a deferred
// triplet, against a running gateway's in-process store (admin endpoint)
// and against Redis directly.
func TestGreylistOperatorCommands(t *testing.T) {
	rs := redistest.Start(t)
	for _, mode := range []string{"memory", "redis"} {
		t.Run(mode, func(t *testing.T) {
			addr, admin := freePort(t), freePort(t)
			cfg := fmt.Sprintf("listen: [%q]\nmetrics:\n  listen: %q\ngreylist:\n  allow_cidrs: []\n", addr, admin)
			storeFlag := []string{"-admin", "http://" + admin}
			if mode == "redis" {
				cfg += fmt.Sprintf("  redis:\n    addrs: [%q]\n    key_prefix: %q\n", rs.Addr, "t1:")
				storeFlag = []string{"-redis", rs.Addr, "-key-prefix", "t1:"}
			}
			startDaemon(t, "-config", writeConfig(t, cfg))
			if line := sendOnce(t, addr); !strings.HasPrefix(line, "451 4.7.1") {
				t.Fatalf("first try: %q", line)
			}
			out := greylistCmd(t, true, append(append([]string{"show"}, storeFlag...), "127.0.0.1")...)
			if !strings.Contains(out, "alice@sender.test") || !strings.Contains(out, "pending") {
				t.Fatalf("show does not list the pending triplet:\n%s", out)
			}
			out = greylistCmd(t, true, append([]string{"counts"}, storeFlag...)...)
			if !strings.Contains(out, "1") {
				t.Errorf("counts:\n%s", out)
			}
			greylistCmd(t, true, append(append([]string{"release"}, storeFlag...), "127.0.0.1", "alice@sender.test", "bob@example.com")...)
			if line := sendOnce(t, addr); !strings.HasPrefix(line, "250") {
				t.Fatalf("after release: %q", line)
			}
			// A bad network is a usage error.
			greylistCmd(t, false, append(append([]string{"show"}, storeFlag...), "not-an-ip")...)
		})
	}
}

// TestSIGHUPReloadsGreylist: a change of the greylist block (here its allow
// list) applies to new sessions after SIGHUP, the in-process store keeps
// its state across the reload, and the admin endpoint serves the new one.
func TestSIGHUPReloadsGreylist(t *testing.T) {
	addr, admin := freePort(t), freePort(t)
	base := fmt.Sprintf("listen: [%q]\nmetrics:\n  listen: %q\n", addr, admin)
	cfgPath := writeConfig(t, base+"greylist:\n  allow_cidrs: []\n")
	d := startDaemon(t, "-config", cfgPath)
	if line := sendOnce(t, addr); !strings.HasPrefix(line, "451 4.7.1") {
		t.Fatalf("first try: %q", line)
	}
	// Reload with a different delay: the pending triplet is still there.
	os.WriteFile(cfgPath, []byte(base+"greylist:\n  allow_cidrs: []\n  delay: 10m\n"), 0o600)
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, d, "configuration reloaded")
	out := greylistCmd(t, true, "show", "-admin", "http://"+admin, "127.0.0.1")
	if !strings.Contains(out, "alice@sender.test") {
		t.Fatalf("state lost across the reload:\n%s", out)
	}
	// Reload with loopback allowed: no more greylisting.
	os.WriteFile(cfgPath, []byte(base+"greylist:\n  allow_cidrs: [\"127.0.0.0/8\"]\n"), 0o600)
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, func() bool { return strings.HasPrefix(sendOnce(t, addr), "250") })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met after the reload")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestGreylistExitStatus: a configuration file that does not load or a
// store that does not answer is a failure (1), named in the message; flags
// that do not go together are a usage error (2).
func TestGreylistExitStatus(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nonexistent.yaml")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"counts", "-config", missing}, 1, missing},
		{[]string{"counts", "-redis", "127.0.0.1:1", "-timeout", "5s"}, 1, "127.0.0.1:1"},
		{[]string{"counts", "-admin", "http://127.0.0.1:1"}, 1, "127.0.0.1:1"},
		{[]string{"counts", "-admin", "http://127.0.0.1:1", "-redis", "127.0.0.1:1"}, 2, "exclude each other"},
		{[]string{"counts"}, 2, "no store"},
		{[]string{"show", "-redis", "127.0.0.1:1", "not-an-ip"}, 2, "not-an-ip"},
	} {
		out, err := exec.Command(binary, append([]string{"greylist"}, c.args...)...).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if code != c.code || !strings.Contains(string(out), c.want) {
			t.Errorf("greylist %v: exit status %d, want %d; output should name %q:\n%s", c.args, code, c.code, c.want, out)
		}
		if strings.Contains(string(out), "config: config:") {
			t.Errorf("greylist %v: prefix repeated:\n%s", c.args, out)
		}
	}
}

// TestGreylistAllowNegative: allow -for with a negative duration is a usage
// error; it used to remove the network's allow as -for 0 does.
func TestGreylistAllowNegative(t *testing.T) {
	rs := redistest.Start(t)
	base := []string{"allow", "-redis", rs.Addr, "-key-prefix", "neg:"}
	greylistCmd(t, true, append(base, "-for", "1h", "192.0.2.0/24")...)
	out, err := exec.Command(binary, append(append([]string{"greylist"}, base...), "-for", "-1h", "192.0.2.0/24")...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "negative") {
		t.Errorf("allow -for -1h: %v\n%s", err, out)
	}
	out2 := greylistCmd(t, true, "show", "-redis", rs.Addr, "-key-prefix", "neg:", "192.0.2.0/24")
	if !strings.Contains(out2, "operator allow until") {
		t.Errorf("the allow is gone after allow -for -1h:\n%s\n%s", out, out2)
	}
}

// TestGreylistCommandHelp: greylist COMMAND -h tells the arguments, not
// only the flags.
func TestGreylistCommandHelp(t *testing.T) {
	out, err := exec.Command(binary, "greylist", "show", "-h").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "NETWORK is an address") || !strings.Contains(string(out), "-admin") {
		t.Errorf("greylist show -h: %v\n%s", err, out)
	}
}

// TestGreylistRedisDownOneLine: Redis down is said once, by the command,
// not also by go-redis's own log lines.
func TestGreylistRedisDownOneLine(t *testing.T) {
	out, _ := exec.Command(binary, "greylist", "counts", "-redis", "127.0.0.1:1", "-timeout", "5s").CombinedOutput()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "gatewayd greylist counts: ") {
		t.Errorf("Redis down:\n%s", out)
	}
}
