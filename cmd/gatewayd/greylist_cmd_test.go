package main

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"

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
