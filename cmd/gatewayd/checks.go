package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mxgate/gatewayd/checks"
	"github.com/mxgate/gatewayd/config"
	"github.com/mxgate/gatewayd/gateway"
	"github.com/mxgate/gatewayd/greylist"
)

func init() {
	// `gatewayd greylist -config FILE` reads the greylist block through the
	// same strict loader as the daemon.
	greylistConfigLoader = func(path string) (greylist.Config, error) {
		c, err := config.Load(path)
		if err != nil {
			return greylist.Config{}, err
		}
		return c.Greylist, nil
	}
}

// runtimeChecks is what the daemon builds from the checks and greylist
// configuration. SIGHUP builds a new one (rebuild) and swaps the hook;
// sessions already open finish with the one they started with.
type runtimeChecks struct {
	judge    *gateway.Judge
	greylist *greylist.Greylister
	gmetrics *greylist.Metrics
	rmetrics *gateway.RuleMetrics
	// collectors registered on the registry, unregistered when replaced.
	collectors []prometheus.Collector
	cancel     context.CancelFunc // the DNSBL health loop
	// ownStore: stop closes the greylist store; this runtime opened it,
	// or it was carried over from the runtime that did.
	ownStore bool
	cfg      *config.Config
}

// stop ends what this runtime started: the health loop, the resolver's
// pooled sockets and, when it opened it, the greylist store.
func (rc *runtimeChecks) stop() {
	rc.cancel()
	if rc.judge != nil && rc.judge.Checks.Resolver != nil {
		rc.judge.Checks.Resolver.Close()
	}
	// The store itself, not Greylister.Close: a store carried over by a
	// reload is owned here but sits under a Greylister made with
	// greylist.New, whose Close leaves the store open.
	if rc.greylist != nil && rc.ownStore {
		rc.greylist.Store().Close()
	}
}

// buildChecks builds the checks the configuration enables, the greylister,
// and the Judge that runs them. Collectors are registered on reg (when not
// nil). With prev, the greylist store and metrics are carried over when
// greylist.redis did not change, so the in-process store keeps its state
// across a reload (resized when greylist.max_memory_entries changed).
//
// A build that fails leaves prev as it was and nothing of its own: the
// store it opened is closed, the collectors it registered unregistered,
// and a store carried over from prev stays prev's to close, and its size,
// as it moves to the new runtime (resized) only with a build that
// succeeds.
func buildChecks(cfg *config.Config, reg *prometheus.Registry, logger *slog.Logger, policy func() gateway.Evaluator, prev *runtimeChecks) (*runtimeChecks, error) {
	ctx, cancel := context.WithCancel(context.Background())
	rc := &runtimeChecks{cancel: cancel, cfg: cfg}
	var res *checks.Resolver
	var opened greylist.Store // the store this build opened
	carried := false          // the store is prev's, carried over
	// kept: the metrics registered here that later builds carry over
	// rather than replace (greylist, rules), so not in rc.collectors.
	var kept []prometheus.Collector
	fail := func(err error) (*runtimeChecks, error) {
		cancel()
		if res != nil {
			res.Close() // the DNSBL health check may have pooled sockets already
		}
		if opened != nil {
			opened.Close()
		}
		for _, c := range rc.collectors {
			reg.Unregister(c)
		}
		for _, c := range kept {
			reg.Unregister(c)
		}
		if prev != nil && reg != nil {
			for _, c := range prev.collectors {
				reg.Register(c) // the running checks keep their metrics
			}
		}
		return nil, err
	}
	register := func(c prometheus.Collector) error {
		if reg == nil {
			return nil
		}
		if err := reg.Register(c); err != nil {
			return err
		}
		rc.collectors = append(rc.collectors, c)
		return nil
	}
	// registerKept registers cs one by one, noting each registered: only
	// those are unregistered on failure (Unregister removes any collector
	// with the same descriptors, the running one whose name was taken).
	registerKept := func(what string, cs ...prometheus.Collector) error {
		if reg == nil {
			return nil
		}
		for _, c := range cs {
			if err := reg.Register(c); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			kept = append(kept, c)
		}
		return nil
	}
	if prev != nil {
		// The new collectors take the old ones' names.
		for _, c := range prev.collectors {
			reg.Unregister(c)
		}
	}
	c := gateway.Checks{Wait: checksWait(cfg)}
	if len(cfg.Checks) > 0 {
		var err error
		res, err = checks.NewResolver(cfg.DNS, checks.WithLogger(logger))
		if err != nil {
			return fail(fmt.Errorf("dns: %w", err))
		}
		if err := register(res); err != nil {
			return fail(err)
		}
		c.Resolver = res
		c.IPRev = cfg.CheckOn("iprev")
		if cfg.CheckOn("dnsbl") {
			bl, err := checks.NewDNSBL(cfg.DNSBL, res, logger)
			if err != nil {
				return fail(fmt.Errorf("dnsbl: %w", err))
			}
			if err := register(bl); err != nil {
				return fail(err)
			}
			go bl.Run(ctx)
			c.DNSBL = bl
		}
		if cfg.CheckOn("spf") {
			c.SPF = checks.NewSPF(cfg.SPF, res)
		}
		if cfg.CheckOn("dkim") {
			c.DKIM = checks.NewDKIM(cfg.DKIM, res)
		}
		if cfg.CheckOn("dmarc") {
			c.DMARC = checks.NewDMARC(cfg.DMARC, res)
		}
	}
	if cfg.Greylist.Enabled {
		if prev != nil && prev.gmetrics != nil {
			rc.gmetrics = prev.gmetrics
		} else {
			rc.gmetrics = greylist.NewMetrics()
			if err := registerKept("greylist: register metrics", rc.gmetrics.Collectors()...); err != nil {
				return fail(err)
			}
		}
		var g *greylist.Greylister
		var err error
		if prev != nil && prev.greylist != nil && reflect.DeepEqual(prev.cfg.Greylist.Redis, cfg.Greylist.Redis) {
			g, err = greylist.New(cfg.Greylist, prev.greylist.Store(), greylist.WithMetrics(rc.gmetrics))
			if err == nil {
				// The store moves to the new runtime, and is resized,
				// when the build succeeds (below): until then it is
				// prev's, as it was.
				rc.ownStore = prev.ownStore
				carried = true
			}
		} else {
			g, err = greylist.Open(cfg.Greylist, greylist.WithMetrics(rc.gmetrics))
			if err == nil {
				rc.ownStore = true
				opened = g.Store()
			}
		}
		if err != nil {
			return fail(fmt.Errorf("greylist: %w", err))
		}
		c.Greylist = g
		rc.greylist = g
	}
	if prev != nil && prev.rmetrics != nil {
		rc.rmetrics = prev.rmetrics
	} else if reg != nil {
		rc.rmetrics = gateway.NewRuleMetrics()
		if err := registerKept("rule metrics", rc.rmetrics.Matches, rc.rmetrics.Errors); err != nil {
			return fail(err)
		}
	}
	rc.judge = &gateway.Judge{Checks: c, Policy: policy, Logger: logger, Hostname: cfg.Hostname, Rules: rc.rmetrics}
	if carried {
		prev.ownStore = false // the store now belongs to the new runtime
		// A new max_memory_entries resizes the in-process store rather
		// than emptying it.
		if ms, ok := rc.greylist.Store().(*greylist.MemoryStore); ok && prev.cfg.Greylist.MaxMemoryEntries != cfg.Greylist.MaxMemoryEntries {
			ms.SetMax(cfg.Greylist.MaxMemoryEntries, time.Now())
		}
	}
	return rc, nil
}

// greylistOperator serves the admin endpoints from whichever greylister is
// current, across reloads.
type greylistOperator struct {
	cur atomic.Pointer[greylist.Greylister]
}

func (o *greylistOperator) op() (greylist.Operator, error) {
	if g := o.cur.Load(); g != nil {
		return g, nil
	}
	return nil, errors.New("greylisting is disabled")
}

func (o *greylistOperator) Show(ctx context.Context, q greylist.Query) (greylist.State, error) {
	g, err := o.op()
	if err != nil {
		return greylist.State{}, err
	}
	return g.Show(ctx, q)
}

func (o *greylistOperator) Release(ctx context.Context, q greylist.Query) (greylist.Released, error) {
	g, err := o.op()
	if err != nil {
		return greylist.Released{}, err
	}
	return g.Release(ctx, q)
}

func (o *greylistOperator) Allow(ctx context.Context, q greylist.Query, d time.Duration) (greylist.Allowance, error) {
	g, err := o.op()
	if err != nil {
		return greylist.Allowance{}, err
	}
	return g.Allow(ctx, q, d)
}

func (o *greylistOperator) Counts(ctx context.Context) (greylist.Counts, error) {
	g, err := o.op()
	if err != nil {
		return greylist.Counts{}, err
	}
	return g.Counts(ctx)
}

// mountGreylistAdmin serves the greylist operator endpoints on the loopback
// HTTP listener.
func mountGreylistAdmin(mux *http.ServeMux, op *greylistOperator) {
	mux.Handle("/greylist/", greylist.AdminHandler(op))
}

// checksWait is the backstop for awaiting a check: the longest of the
// checks' own deadlines, plus a second.
func checksWait(cfg *config.Config) time.Duration {
	or := func(d, def time.Duration) time.Duration {
		if d > 0 {
			return d
		}
		return def
	}
	return max(or(cfg.DNS.Timeout, checks.DefaultDNSTimeout), or(cfg.SPF.Timeout, checks.DefaultSPFTimeout),
		or(cfg.DKIM.Timeout, checks.DefaultDKIMTimeout), or(cfg.DMARC.Timeout, checks.DefaultDMARCTimeout)) + time.Second
}
