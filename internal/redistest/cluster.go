package redistest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Cluster is a Redis Cluster of master nodes without replicas, all on
// 127.0.0.1, with every hash slot assigned.
type Cluster struct {
	// Addrs are the nodes' "127.0.0.1:PORT" addresses, a seed list for a
	// cluster client.
	Addrs []string
	// Nodes are the node processes, in the order of Addrs.
	Nodes []*Server

	dir string
}

// StartCluster starts a three-master cluster for the test and stops it at
// cleanup. It fails the test when redis-server or redis-cli is missing.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	c, err := NewCluster(3)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// NewCluster starts n (at least 3) redis-server nodes with cluster mode on,
// joins them with `redis-cli --cluster create` and waits until every node
// reports cluster_state:ok. The caller must Close it.
func NewCluster(n int) (*Cluster, error) {
	if n < 3 {
		return nil, errors.New("redistest: a cluster needs at least 3 masters")
	}
	_, cli, err := Binaries()
	if err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		c, err := newCluster(cli, n)
		if err == nil {
			return c, nil
		}
		lastErr = err
		if errors.Is(err, ErrNotInstalled) {
			break
		}
	}
	return nil, lastErr
}

func newCluster(cli string, n int) (*Cluster, error) {
	dir, err := os.MkdirTemp("", "redistest-cluster-*")
	if err != nil {
		return nil, fmt.Errorf("redistest: %w", err)
	}
	c := &Cluster{dir: dir}
	// Each node needs a client port and a cluster bus port; we pick both
	// (cluster-port) instead of relying on port+10000 being free.
	ports, err := freePorts(2 * n)
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	for i := 0; i < n; i++ {
		port, bus := ports[2*i], ports[2*i+1]
		s, err := newServer(dir, port, []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, fmt.Sprintf("nodes-%d.conf", port)),
			"--cluster-node-timeout", "5000",
			"--cluster-port", strconv.Itoa(bus),
		})
		if err != nil {
			_ = c.Close()
			return nil, err
		}
		c.Nodes = append(c.Nodes, s)
		c.Addrs = append(c.Addrs, s.Addr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("redistest: redis-cli --cluster create: %v: %s", err, out)
	}
	if err := c.waitOK(ctx); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// waitOK polls CLUSTER INFO on every node until each reports
// cluster_state:ok with all slots assigned and every node known.
func (c *Cluster) waitOK(ctx context.Context) error {
	want := fmt.Sprintf("cluster_known_nodes:%d", len(c.Nodes))
	for {
		ready := true
		var last string
		for _, s := range c.Nodes {
			info, err := do(ctx, s.Addr, time.Second, "CLUSTER", "INFO")
			last = info
			if err != nil || !strings.Contains(info, "cluster_state:ok") ||
				!strings.Contains(info, "cluster_slots_assigned:16384") ||
				!strings.Contains(info, want) {
				ready = false
				break
			}
		}
		if ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redistest: cluster not ok: %s", last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Close stops every node and removes the cluster's directory.
func (c *Cluster) Close() error {
	for _, s := range c.Nodes {
		_ = s.Close()
	}
	return os.RemoveAll(c.dir)
}
