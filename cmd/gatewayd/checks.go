package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
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
// configuration.
type runtimeChecks struct {
	judge    *gateway.Judge
	greylist *greylist.Greylister
	stop     func()
}

// buildChecks builds the checks the configuration enables, the greylister,
// and the Judge that runs them. Collectors are registered on reg.
func buildChecks(cfg *config.Config, reg prometheus.Registerer, logger *slog.Logger, policy func() gateway.Evaluator) (*runtimeChecks, error) {
	ctx, cancel := context.WithCancel(context.Background())
	rc := &runtimeChecks{stop: cancel}
	c := gateway.Checks{Wait: checksWait(cfg)}
	if len(cfg.Checks) > 0 {
		res, err := checks.NewResolver(cfg.DNS, checks.WithLogger(logger))
		if err != nil {
			cancel()
			return nil, fmt.Errorf("dns: %w", err)
		}
		if reg != nil {
			reg.MustRegister(res)
		}
		c.Resolver = res
		c.IPRev = cfg.CheckOn("iprev")
		if cfg.CheckOn("dnsbl") {
			bl, err := checks.NewDNSBL(cfg.DNSBL, res, logger)
			if err != nil {
				cancel()
				return nil, fmt.Errorf("dnsbl: %w", err)
			}
			if reg != nil {
				reg.MustRegister(bl)
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
		m := greylist.NewMetrics()
		if reg != nil {
			if err := m.Register(reg); err != nil {
				cancel()
				return nil, err
			}
		}
		g, err := greylist.Open(cfg.Greylist, greylist.WithMetrics(m))
		if err != nil {
			cancel()
			return nil, fmt.Errorf("greylist: %w", err)
		}
		c.Greylist = g
		rc.greylist = g
		stop := rc.stop
		rc.stop = func() { stop(); g.Close() }
	}
	rc.judge = &gateway.Judge{Checks: c, Policy: policy, Logger: logger, Hostname: cfg.Hostname}
	return rc, nil
}

// mountGreylistAdmin serves the greylist operator endpoints on the loopback
// HTTP listener.
func mountGreylistAdmin(mux *http.ServeMux, g *greylist.Greylister) {
	if g != nil {
		mux.Handle("/greylist/", greylist.AdminHandler(g))
	}
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
