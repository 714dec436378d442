package main

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mxgate/gatewayd/config"
	"github.com/mxgate/gatewayd/gateway"
	"github.com/mxgate/gatewayd/greylist"
)

// TestReloadKeepsGreylistState: a reload that changes
// greylist.max_memory_entries keeps the in-process store's state (the
// README says the store keeps it across a reload) and applies the new cap.
func TestReloadKeepsGreylistState(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	policy := func() gateway.Evaluator { return gateway.DefaultPolicy }
	reg := prometheus.NewRegistry()
	cfg := config.Default()
	rc, err := buildChecks(cfg, reg, logger, policy, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, n := range []string{"203.0.113.0/24", "198.51.100.0/24", "192.0.2.0/24"} {
		if _, err := rc.greylist.Allow(ctx, greylist.Query{Network: n}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	cfg2 := config.Default()
	cfg2.Greylist.MaxMemoryEntries = 2
	nrc, err := buildChecks(cfg2, reg, logger, policy, rc)
	if err != nil {
		t.Fatal(err)
	}
	defer nrc.stop()
	rc.stop()
	c, err := nrc.greylist.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.OperatorAllowedNetworks == 0 {
		t.Fatalf("the reload emptied the store: %+v", c)
	}
	ms, ok := nrc.greylist.Store().(*greylist.MemoryStore)
	if !ok {
		t.Fatalf("store %T", nrc.greylist.Store())
	}
	if ms.Len() != 2 {
		t.Errorf("%d entries after lowering the cap to 2", ms.Len())
	}
}
