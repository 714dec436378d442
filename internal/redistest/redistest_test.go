package redistest

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestServerLifecycle(t *testing.T) {
	s := Start(t)
	if got, err := s.Do("SET", "k", "v"); err != nil || got != "OK" {
		t.Fatalf("SET: %q %v", got, err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Do("PING"); err == nil {
		t.Fatal("PING answered after Stop")
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Do("GET", "k"); err != nil || got != "" {
		t.Fatalf("after restart GET k = %q, %v; want empty (no persistence)", got, err)
	}
	if err := s.Pause(); err != nil {
		t.Fatal(err)
	}
	if _, err := doTimeout(s.Addr, 100*time.Millisecond, "PING"); err == nil {
		t.Fatal("paused server answered PING")
	}
	if err := s.Resume(); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Do("PING"); err != nil || got != "PONG" {
		t.Fatalf("PING after resume: %q %v", got, err)
	}
	if err := s.DebugSleep(200 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
}

func TestCluster(t *testing.T) {
	c := StartCluster(t)
	if len(c.Addrs) != 3 {
		t.Fatalf("addrs = %v", c.Addrs)
	}
	info, err := c.Nodes[0].Do("CLUSTER", "INFO")
	if err != nil || !strings.Contains(info, "cluster_state:ok") {
		t.Fatalf("CLUSTER INFO: %v %s", err, info)
	}
}

func TestSentinel(t *testing.T) {
	s := StartSentinel(t)
	got, err := s.Process.Do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", s.MasterName)
	if err != nil || !strings.Contains(got, "127.0.0.1") {
		t.Fatalf("sentinel: %q %v", got, err)
	}
}

func TestNotInstalled(t *testing.T) {
	t.Setenv("REDIS_SERVER", "/nonexistent/redis-server")
	_, err := New()
	if !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "make test") {
		t.Fatalf("err %v, want ErrNotInstalled telling to run make test", err)
	}
}
