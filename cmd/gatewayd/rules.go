package main

import (
	"fmt"
	"log/slog"

	"github.com/mxgate/gatewayd/config"
	"github.com/mxgate/gatewayd/gateway"
	"github.com/mxgate/gatewayd/policy"
)

// rulesRuntime is the rule engine of the daemon: the loaded rule files, or
// the built-in default policy when no rules directory is configured.
type rulesRuntime struct {
	store *policy.Store
}

// openRules loads the configured rule files; a daemon does not start on
// rules that do not load.
func openRules(cfg *config.Config, logger *slog.Logger) (*rulesRuntime, error) {
	if cfg.Rules.Dir == "" {
		return &rulesRuntime{}, nil
	}
	st, err := policy.NewStore(cfg.Rules.Dir, rulesOptions(cfg))
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	logger.Info("rules loaded", "dir", cfg.Rules.Dir, "summary", st.Current().Summary())
	return &rulesRuntime{store: st}, nil
}

// rulesOptions checks the zones the rules name against the configured
// ones, when the DNSBL check is on.
func rulesOptions(cfg *config.Config) policy.Options {
	var o policy.Options
	if cfg.CheckOn("dnsbl") {
		o.Zones = cfg.ZoneNames()
	}
	return o
}

// evaluator is what the Judge asks, once per transaction.
func (r *rulesRuntime) evaluator() gateway.Evaluator {
	if r.store == nil {
		return gateway.DefaultPolicy
	}
	return r.store.Current()
}

// reload re-reads the rule files (SIGHUP), checked against the zones of
// running, the configuration the running checks were built from; loaded
// is the configuration just read (nil when it did not load), for what
// only a restart changes. A bad file keeps the running rules.
func (r *rulesRuntime) reload(running, loaded *config.Config, logger *slog.Logger) {
	if r.store == nil {
		if loaded != nil && loaded.Rules.Dir != "" {
			logger.Warn("rules.dir is read only at start; restart to use rule files")
		}
		return
	}
	if loaded != nil && loaded.Rules.Dir != r.store.Dir() {
		logger.Warn("rules.dir changes only on restart; reloading the rules of the running directory",
			"dir", r.store.Dir(), "configured", loaded.Rules.Dir)
	}
	r.store.SetOptions(rulesOptions(running))
	if err := r.store.Reload(); err != nil {
		logger.Error("rules reload failed; keeping the running rules", "err", err)
		return
	}
	logger.Info("rules reloaded", "summary", r.store.Current().Summary())
}
