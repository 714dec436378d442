package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Sentinel is a master redis-server watched by one Sentinel process, enough
// for a failover client to find the master by name.
type Sentinel struct {
	// Addr is the Sentinel's "127.0.0.1:PORT".
	Addr string
	// MasterName is the name the master is monitored under.
	MasterName string
	// Master is the data node.
	Master *Server
	// Process is the sentinel process itself.
	Process *Server

	dir string
}

// StartSentinel starts a master and a Sentinel monitoring it as "mymaster"
// for the test and stops them at cleanup.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	s, err := NewSentinel("mymaster")
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// NewSentinel starts a master and a Sentinel monitoring it under
// masterName, and waits until the Sentinel reports the master's address.
// The caller must Close it.
func NewSentinel(masterName string) (*Sentinel, error) {
	master, err := New()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "redistest-sentinel-*")
	if err != nil {
		_ = master.Close()
		return nil, fmt.Errorf("redistest: %w", err)
	}
	st := &Sentinel{MasterName: masterName, Master: master, dir: dir}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		ports, err := freePorts(1)
		if err != nil {
			_ = st.Close()
			return nil, err
		}
		port := ports[0]
		conf := filepath.Join(dir, fmt.Sprintf("sentinel-%d.conf", port))
		body := fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 1\n"+
			"sentinel down-after-milliseconds %s 5000\n", masterName, master.Port, masterName)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			_ = st.Close()
			return nil, fmt.Errorf("redistest: %w", err)
		}
		p := &Server{
			Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
			Port: port,
			dir:  dir,
			args: []string{conf, "--sentinel",
				"--port", strconv.Itoa(port),
				"--bind", "127.0.0.1",
				"--dir", dir,
				"--daemonize", "no",
				"--logfile", filepath.Join(dir, fmt.Sprintf("redis-%d.log", port)),
			},
		}
		if err := p.Start(); err != nil {
			lastErr = err
			if errors.Is(err, ErrNotInstalled) {
				break
			}
			continue
		}
		st.Process, st.Addr = p, p.Addr
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for {
			got, err := do(ctx, st.Addr, time.Second, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", masterName)
			if err == nil && strings.Contains(got, strconv.Itoa(master.Port)) {
				return st, nil
			}
			select {
			case <-ctx.Done():
				_ = st.Close()
				return nil, fmt.Errorf("redistest: sentinel does not know %s: %v %q", masterName, err, got)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	_ = st.Close()
	return nil, lastErr
}

// Close stops the Sentinel and the master and removes their directories.
func (s *Sentinel) Close() error {
	if s.Process != nil {
		_ = s.Process.Close()
	}
	_ = s.Master.Close()
	return os.RemoveAll(s.dir)
}
