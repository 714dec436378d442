package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSendToSink runs the tool as make bench does: a sink, and the sender
// with a new connection per message and with connections kept open; every
// message is counted on both sides. It keeps the benchmark tooling working.
func TestSendToSink(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "smtpload")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	sink := exec.Command(bin, "sink", "-addr", "127.0.0.1:0")
	stdout, _ := sink.StdoutPipe()
	if err := sink.Start(); err != nil {
		t.Fatal(err)
	}
	defer sink.Process.Kill()
	r := bufio.NewReader(stdout)
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "LISTEN ") {
		t.Fatalf("sink: %q %v", line, err)
	}
	addr := strings.TrimSpace(strings.TrimPrefix(line, "LISTEN "))
	for _, perConn := range []string{"1", "10"} {
		out, err := exec.Command(bin, "send", "-addr", addr, "-c", "3", "-n", "30", "-per-conn", perConn).Output()
		if err != nil {
			t.Fatalf("send -per-conn %s: %v", perConn, err)
		}
		var res map[string]any
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("send output %q: %v", out, err)
		}
		if res["messages"] != float64(30) || res["failed"] != float64(0) {
			t.Errorf("-per-conn %s: %s", perConn, out)
		}
	}
	// Sending anywhere but loopback is refused.
	if err := exec.Command(bin, "send", "-addr", "192.0.2.1:25", "-n", "1").Run(); err == nil {
		t.Error("a non-loopback address was accepted")
	}
	sink.Process.Signal(os.Interrupt)
	done := make(chan string, 1)
	go func() { s, _ := r.ReadString('\n'); done <- s }()
	select {
	case s := <-done:
		if !strings.Contains(s, "60") {
			t.Errorf("sink counters %q, want 60 messages", s)
		}
	case <-time.After(10 * time.Second):
		t.Error("sink did not report")
	}
}
