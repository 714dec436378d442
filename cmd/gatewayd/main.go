// Command gatewayd is the inbound anti-spam SMTP gateway: the public MX that
// judges every connection, recipient and message and relays what passes to
// the internal mail server.
//
//	gatewayd [-config FILE]          run the gateway (embedded defaults without a file)
//	gatewayd -check-config [-config FILE]
//	gatewayd check [-config FILE]    validate the configuration and exit
//	gatewayd rules check [-config FILE] [DIR]   validate rule files
//	gatewayd explain ...             how a message would be judged
//	gatewayd greylist ...            inspect and change greylist state
//
// Signals: SIGTERM or SIGINT stop gracefully (idle sessions get 421,
// transactions in flight finish up to shutdown_timeout); SIGHUP reloads the
// configuration file and the TLS certificate.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mxgate/gatewayd/config"
	"github.com/mxgate/gatewayd/gateway"
	"github.com/mxgate/gatewayd/maildir"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage:
  gatewayd [-config FILE]                        run the gateway (embedded defaults without a file)
  gatewayd check [-config FILE]                  validate the configuration as the daemon would, and exit
  gatewayd -check-config [-config FILE]          the same
  gatewayd rules check [-config FILE] [DIR]      validate rule files
  gatewayd explain [flags] [MESSAGE]             how a message would be judged
  gatewayd greylist show|release|allow|counts    inspect and change greylist state

Every subcommand takes -h. Signals: SIGTERM/SIGINT stop, SIGHUP reloads.
Exit status: 0 success, 1 failure, 2 usage error.

Flags:
`

// subcommands is named in the message for an unknown argument.
const subcommands = "check, rules, explain, greylist"

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "help":
			fmt.Fprint(stderr, usage)
			mainFlags(stderr)
			return 0
		case "check":
			return runCheck(args[1:], stdout, stderr)
		case "greylist":
			return runGreylist(args[1:], stdout, stderr)
		case "rules":
			return runRules(args[1:], stdout, stderr)
		case "explain":
			return runExplain(args[1:], stdout, stderr)
		}
	}
	fs, cfgPath, checkOnly := mainFlags(nil)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "gatewayd: unknown argument %q (subcommands: %s; gatewayd -h tells more)\n", fs.Arg(0), subcommands)
		return 2
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "gatewayd: %v\n", err)
		return 1
	}
	if *checkOnly {
		return reportCheck(cfg, stdout, stderr)
	}
	if err := serve(cfg, *cfgPath, stderr); err != nil {
		fmt.Fprintf(stderr, "gatewayd: %v\n", err)
		return 1
	}
	return 0
}

// mainFlags defines the daemon's flags; with w, it prints their help there.
func mainFlags(w io.Writer) (fs *flag.FlagSet, cfgPath *string, checkOnly *bool) {
	fs = flag.NewFlagSet("gatewayd", flag.ContinueOnError)
	cfgPath = fs.String("config", "", "configuration file (YAML); embedded defaults when empty")
	checkOnly = fs.Bool("check-config", false, "validate the configuration and exit")
	if w != nil {
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
	return fs, cfgPath, checkOnly
}

func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gatewayd check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (YAML); embedded defaults when empty")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: gatewayd check [-config FILE]\n\nValidates the file, loads its rules and tries its paths as the daemon's start\nwould. Exit status: 0 OK, 1 the daemon would refuse it, 2 usage error.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "gatewayd check: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "gatewayd: %v\n", err)
		return 1
	}
	return reportCheck(cfg, stdout, stderr)
}

// reportCheck tells whether the daemon would start on cfg (see
// checkStart) and prints every reason it would not.
func reportCheck(cfg *config.Config, stdout, stderr io.Writer) int {
	if errs := checkStart(cfg); len(errs) > 0 {
		for _, err := range errs {
			fmt.Fprintf(stderr, "gatewayd: %v\n", err)
		}
		return 1
	}
	name := cfg.File
	if name == "" {
		name = "embedded defaults"
	}
	fmt.Fprintf(stdout, "%s: configuration OK\n", name)
	return 0
}

func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		c := config.Default()
		return c, c.Validate()
	}
	return config.Load(path)
}

// certHolder serves the current certificate; SIGHUP swaps it.
type certHolder struct {
	cert atomic.Pointer[tls.Certificate]
}

func buildTLS(cfg *config.Config) (*tls.Certificate, error) {
	if cfg.TLS.Cert == "" {
		return nil, nil
	}
	// tls.LoadX509KeyPair's errors named neither key nor place ("tls:
	// read /etc/x: is a directory"): each file is read here, and an error
	// is the key's, at its place in the file.
	certPEM, err := os.ReadFile(cfg.TLS.Cert)
	if err != nil {
		return nil, cfg.KeyError("tls.cert", err)
	}
	keyPEM, err := os.ReadFile(cfg.TLS.Key)
	if err != nil {
		return nil, cfg.KeyError("tls.key", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		key := "tls.cert"
		if msg := err.Error(); strings.Contains(msg, "key input") || strings.Contains(msg, "private key") {
			key = "tls.key"
		}
		return nil, cfg.KeyError(key, err)
	}
	return &cert, nil
}

// runtime builds the gateway's runtime configuration and upstream from the
// file's values.
func gatewayConfig(cfg *config.Config, certs *certHolder) gateway.Config {
	gc := gateway.Config{
		Hostname:            cfg.Hostname,
		AuthservID:          cfg.AuthservID,
		Domains:             append([]string(nil), cfg.Domains...),
		MaxMessageSize:      int64(cfg.Limits.MaxMessageSize),
		MaxRecipients:       cfg.Limits.MaxRecipients,
		MaxConnections:      cfg.Limits.MaxConnections,
		MaxConnectionsPerIP: cfg.Limits.MaxConnectionsPerIP,
		IdleTimeout:         cfg.Limits.IdleTimeout.D(),
		DataTimeout:         cfg.Limits.DataTimeout.D(),
		MaxErrors:           cfg.Limits.MaxErrors,
		MaxLineLength:       cfg.Limits.MaxLineLength,
		MemoryThreshold:     int(cfg.Limits.MemoryThreshold),
		TempDir:             cfg.TempDir,
		ProxyTrusted:        cfg.ProxyTrusted(),
		ProxyHeaderTimeout:  cfg.ProxyProtocol.HeaderTimeout.D(),
	}
	// STARTTLS is offered while the holder has a certificate; a reload
	// that removes tls.cert and tls.key empties it, and the configuration
	// built then offers none.
	if offered := certs.cert.Load(); offered != nil {
		gc.TLS = &tls.Config{
			MinVersion: tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				// The current certificate (SIGHUP renews it); a session
				// offered STARTTLS before a reload removed TLS finishes
				// with the certificate it was offered.
				if c := certs.cert.Load(); c != nil {
					return c, nil
				}
				return offered, nil
			},
		}
	}
	return gc
}

func buildUpstream(cfg *config.Config) (gateway.Upstream, error) {
	if len(cfg.Upstream.Addrs) == 0 {
		d, err := maildir.Open(cfg.Maildir)
		if err != nil {
			return nil, cfg.KeyError("maildir", err)
		}
		return gateway.MaildirUpstream{Dir: d}, nil
	}
	u := cfg.Upstream
	helo := u.Helo
	if helo == "" {
		helo = effectiveHostname(cfg)
	}
	return gateway.NewSMTPUpstream(gateway.SMTPUpstreamConfig{
		Addrs:          u.Addrs,
		Helo:           helo,
		ConnectTimeout: u.ConnectTimeout.D(),
		CommandTimeout: u.CommandTimeout.D(),
		DataTimeout:    u.DataTimeout.D(),
		MaxIdle:        u.MaxIdle,
		IdleTimeout:    u.IdleTimeout.D(),
		StartTLS:       u.StartTLS,
		TLSConfig:      &tls.Config{InsecureSkipVerify: u.TLSSkipVerify, MinVersion: tls.VersionTLS12},
		NoPipelining:   !u.Pipelining,
		NoChunking:     !u.Chunking,
	}), nil
}

// effectiveHostname is the name we go by when hostname is not set: the
// machine's host name, else localhost, as gateway.New fills it in. The
// upstream's EHLO name defaults to it (not to the gateway package's own
// fallback, localhost).
func effectiveHostname(cfg *config.Config) string {
	if cfg.Hostname != "" {
		return cfg.Hostname
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "localhost"
}

func openDecisionLog(path string, logger *slog.Logger) (io.Writer, func(), error) {
	var w io.Writer
	var closeFile func() error
	switch path {
	case "stdout":
		w = os.Stdout
	case "stderr":
		w = os.Stderr
	default:
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return nil, nil, err
		}
		w, closeFile = f, f.Close
	}
	var mu sync.Mutex
	var last time.Time
	var dropped int
	bw := newBufferedLog(w, 100*time.Millisecond, func(err error, n int) {
		// At most one report a minute: a full disk fails every flush.
		mu.Lock()
		defer mu.Unlock()
		dropped += n
		if time.Since(last) < time.Minute {
			return
		}
		last = time.Now()
		logger.Error("decision log: lines not written", "file", path, "err", err, "dropped_lines", dropped)
		dropped = 0
	})
	return bw, func() {
		bw.Close()
		if closeFile != nil {
			closeFile()
		}
	}, nil
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func serve(cfg *config.Config, cfgPath string, stderr io.Writer) error {
	// Signals are caught before anything listens, so that a SIGHUP that
	// arrives early reloads rather than kills.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	logger := newLogger(cfg, stderr)
	if cfg.CPUs > 0 {
		// Before anything runs: see the cpus key in the README.
		runtime.GOMAXPROCS(cfg.CPUs)
	}
	certs := &certHolder{}
	cert, err := buildTLS(cfg)
	if err != nil {
		return err
	}
	certs.cert.Store(cert)
	if err := checkTempDir(cfg); err != nil {
		return err
	}
	dw, closeLog, err := openDecisionLog(cfg.Log.Decisions, logger)
	if err != nil {
		return cfg.KeyError("log.decisions", err)
	}
	defer closeLog()
	up, err := buildUpstream(cfg)
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := gateway.NewMetrics(reg)

	rules, err := openRules(cfg, logger)
	if err != nil {
		return err
	}
	rc, err := buildChecks(cfg, reg, logger, rules.evaluator, nil)
	if err != nil {
		return err
	}
	defer func() { rc.stop() }()
	gop := &greylistOperator{}
	gop.cur.Store(rc.greylist)
	if rules.store != nil && cfg.Rules.Watch {
		wctx, stopWatch := context.WithCancel(context.Background())
		defer stopWatch()
		go func() {
			if err := rules.store.Watch(wctx, logger); err != nil && wctx.Err() == nil {
				logger.Error("watching rule files failed; SIGHUP still reloads", "err", err)
			}
		}()
	}

	quarantine, err := maildir.Open(cfg.Quarantine)
	if err != nil {
		return cfg.KeyError("quarantine", err)
	}
	srv := gateway.New(gatewayConfig(cfg, certs), gateway.Options{
		Quarantine: quarantine,
		Upstream:   up,
		Hook:       rc.judge,
		Decisions:  gateway.NewDecisionLogJSON(dw),
		Logger:     logger,
		Metrics:    metrics,
	})
	rc.judge.Hostname = srv.Config().Hostname

	var listeners []net.Listener
	// No TCP keepalive on SMTP connections: every session is bounded by
	// limits.idle_timeout and the DATA timeout, which find a dead peer
	// anyway, and Go's default keepalive costs four setsockopt calls per
	// accepted connection, refused ones included.
	lc := net.ListenConfig{KeepAlive: -1}
	for _, a := range cfg.Listen {
		l, err := lc.Listen(context.Background(), "tcp", a)
		if err != nil {
			for _, l := range listeners {
				l.Close()
			}
			return fmt.Errorf("listen %s: %w", a, err)
		}
		listeners = append(listeners, l)
	}

	var httpSrv *http.Server
	if cfg.Metrics.Listen != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
		mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
			if !srv.Ready() {
				http.Error(w, "not ready\n", http.StatusServiceUnavailable)
				return
			}
			io.WriteString(w, "ready\n")
		})
		mountGreylistAdmin(mux, gop)
		ml, err := net.Listen("tcp", cfg.Metrics.Listen)
		if err != nil {
			return fmt.Errorf("metrics.listen %s: %w", cfg.Metrics.Listen, err)
		}
		httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go httpSrv.Serve(ml)
		logger.Info("metrics listening", "addr", ml.Addr().String())
	}

	started := cfg // what restart-only keys keep until a restart
	errc := make(chan error, len(listeners))
	for _, l := range listeners {
		logger.Info("SMTP listening", "addr", l.Addr().String(), "domains", cfg.Domains, "upstream", describeUpstream(cfg), "cpus", runtime.GOMAXPROCS(0))
		go func(l net.Listener) { errc <- srv.Serve(l) }(l)
	}

	for {
		select {
		case err := <-errc:
			if err != nil {
				srv.Close()
				return err
			}
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				newCfg := reload(srv, started, cfgPath, certs, logger)
				if newCfg != nil {
					if nrc := reloadChecks(srv, rc, newCfg, reg, logger, rules.evaluator); nrc != nil {
						rc = nrc
						gop.cur.Store(rc.greylist)
					}
					cfg = newCfg
				}
				// The rules are checked against the zones of the checks
				// now running (the old ones when their rebuild failed).
				rules.reload(rc.cfg, newCfg, logger)
				continue
			}
			logger.Info("shutting down", "signal", sig.String(), "timeout", cfg.ShutdownTimeout.D().String())
			ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout.D())
			err := srv.Shutdown(ctx)
			cancel()
			if httpSrv != nil {
				httpSrv.Close()
			}
			if err != nil && !errors.Is(err, context.DeadlineExceeded) {
				return err
			}
			if err != nil {
				logger.Warn("shutdown deadline passed; remaining sessions were closed")
			}
			logger.Info("stopped")
			return nil
		}
	}
}

func describeUpstream(cfg *config.Config) any {
	if len(cfg.Upstream.Addrs) == 0 {
		return "maildir:" + cfg.Maildir
	}
	return cfg.Upstream.Addrs
}

// reloadChecks swaps in checks and greylisting built from the new
// configuration; on failure the running ones stay. Sessions already open
// finish with the hook they started with; the old runtime is stopped once
// they have had time to (the shutdown timeout).
func reloadChecks(srv *gateway.Server, old *runtimeChecks, cfg *config.Config, reg *prometheus.Registry, logger *slog.Logger, policy func() gateway.Evaluator) *runtimeChecks {
	if checksUnchanged(old.cfg, cfg) {
		return nil // unchanged: keep the running checks and their caches
	}
	nrc, err := buildChecks(cfg, reg, logger, policy, old)
	if err != nil {
		logger.Error("reload of the checks failed; keeping the running ones", "err", err)
		return nil
	}
	nrc.judge.Hostname = srv.Config().Hostname
	srv.SetHook(nrc.judge)
	time.AfterFunc(cfg.ShutdownTimeout.D(), old.stop)
	return nrc
}

// checksUnchanged tells whether a reload left the blocks the checks are
// built from as they were.
func checksUnchanged(a, b *config.Config) bool {
	type blocks struct {
		checks   []string
		dns      any
		dnsbl    any
		spf      any
		dkim     any
		dmarc    any
		greylist any
		host     string
	}
	of := func(c *config.Config) blocks {
		return blocks{c.Checks, c.DNS, c.DNSBL, c.SPF, c.DKIM, c.DMARC, c.Greylist, c.Hostname}
	}
	return reflect.DeepEqual(of(a), of(b))
}

// restartOnly names the keys whose change loaded makes but a reload does
// not apply, against started, the configuration the daemon started with:
// what it opened or started once (listeners, decision log, service
// logger, quarantine Maildir, rule watcher, the PROXY header timeout of
// the listeners). rules.dir is reported by the rules' reload.
func restartOnly(started, loaded *config.Config) []string {
	var keys []string
	diff := func(key string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			keys = append(keys, key)
		}
	}
	diff("listen", started.Listen, loaded.Listen)
	diff("metrics.listen", started.Metrics.Listen, loaded.Metrics.Listen)
	diff("log.decisions", started.Log.Decisions, loaded.Log.Decisions)
	diff("log.level", started.Log.Level, loaded.Log.Level)
	diff("log.format", started.Log.Format, loaded.Log.Format)
	diff("quarantine", started.Quarantine, loaded.Quarantine)
	diff("cpus", started.CPUs, loaded.CPUs)
	diff("rules.watch", started.Rules.Watch, loaded.Rules.Watch)
	diff("proxy_protocol.header_timeout", started.ProxyProtocol.HeaderTimeout, loaded.ProxyProtocol.HeaderTimeout)
	return keys
}

// reload re-reads the configuration file; a bad file keeps what runs. It
// returns the new configuration, nil when nothing was reloaded. started
// is the configuration the daemon started with, for the keys only a
// restart changes.
func reload(srv *gateway.Server, started *config.Config, path string, certs *certHolder, logger *slog.Logger) *config.Config {
	if path == "" {
		logger.Info("SIGHUP: running on embedded defaults, nothing to reload")
		return nil
	}
	cfg, err := config.Load(path)
	var cert *tls.Certificate // nil: the file has no tls block
	if err == nil {
		cert, err = buildTLS(cfg)
	}
	if err == nil {
		err = checkTempDir(cfg)
	}
	if err != nil {
		logger.Error("reload failed; keeping the running configuration", "err", err)
		return nil
	}
	if keys := restartOnly(started, cfg); len(keys) > 0 {
		logger.Warn("these keys change only on restart; running with their values at start", "keys", keys)
	}
	up, err := buildUpstream(cfg)
	if err != nil {
		logger.Error("reload failed; keeping the running configuration", "err", err)
		return nil
	}
	// The certificate, or none when tls was removed, goes in with the rest
	// of the file: a reload that fails keeps the running one.
	certs.cert.Store(cert)
	srv.Reload(gatewayConfig(cfg, certs), up, nil)
	logger.Info("configuration reloaded", "file", path)
	return cfg
}
