// Command benchrun is the gateway's end-to-end benchmark; `make bench` runs
// it after the Go benchmarks (go run ./cmd/benchrun).
//
// Everything runs on loopback and is stopped at the end: a sink standing in
// for the internal MTA (Postfix's smtp-sink when installed, else smtpload
// sink), the in-process test DNS server with the zones of a DNSBL and of the
// load's sender domain (SPF, DKIM key, DMARC), a redis-server for the
// greylist, and the gatewayd daemon built from this tree, run as a process
// with a generated configuration that turns every check on. The load's
// clients have no reverse DNS (unless -rdns), so the shipped rules greylist
// them and every recipient is decided by the greylist store in Redis; the
// load's client network is allowed there before the run (`gatewayd
// greylist allow`), so messages flow.
//
// It measures, each figure the median of -runs runs of -messages messages:
// the relay rate through the gateway and straight to the sink (a new
// connection per message, and -per-conn messages per connection), the
// latency the gateway adds (p50, p99), the rate at which the gateway refuses
// a DNSBL-listed client at connect against the rate at which the sink
// accepts bare connections, the resident memory of -idle idle connections
// (greeted, EHLO sent), and the gateway's CPU time per relayed message.
// Two cold loads follow in each run: messages, and listed clients' refused
// connections, each connection from a loopback address no earlier load used
// (smtpload, which alone can bind them), so that the DNSBL and PTR answers
// are not cached, as for most connections to a public MX. It
// prints a table and writes the figures as JSON (-out) so that runs can be
// compared. Nothing asserts on time: the targets are reported, met or not.
//
//	go run ./cmd/benchrun                          # full run
//	go run ./cmd/benchrun -messages 500 -runs 1 -idle 1000   # quick look
//	go run ./cmd/benchrun -profile-dir prof        # keep gateway CPU and heap profiles
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/mxgate/gatewayd/config"
	"github.com/mxgate/gatewayd/internal/redistest"
)

type options struct {
	messages, runs, conc, perConn, size, idle, warmup int
	udpSocketQueries, cpus                            int
	out, profileDir, dkim, tools, passCache           string
	keep, verbose, pprof, noRules, rdns               bool
}

// gatewayCPUs is the gateway's cpus key: 0 leaves it out (Go's default).
func (o options) gatewayCPUs() int {
	if o.cpus >= 0 {
		return o.cpus
	}
	return max(1, runtime.NumCPU()-1)
}

// cpusText says what the gateway ran on, for the table and the JSON file.
func (o options) cpusText() string {
	if n := o.gatewayCPUs(); n > 0 {
		return fmt.Sprintf("%d of %d (cpus key)", n, runtime.NumCPU())
	}
	return fmt.Sprintf("Go's default (%d)", runtime.NumCPU())
}

func main() {
	var o options
	flag.IntVar(&o.messages, "messages", 5000, "messages per load (and connections per connection-rate load)")
	flag.IntVar(&o.runs, "runs", 3, "runs; every figure is the median over the runs")
	flag.IntVar(&o.conc, "concurrency", 10, "concurrent sending sessions")
	flag.IntVar(&o.perConn, "per-conn", 100, "messages per connection in the kept-open loads")
	flag.IntVar(&o.size, "size", 4096, "message size in octets (DKIM-signed)")
	flag.IntVar(&o.idle, "idle", 10000, "idle connections for the memory figure (0 skips it)")
	flag.IntVar(&o.warmup, "warmup", 500, "messages sent before measuring (DNS cache, upstream pool, Redis connections)")
	flag.StringVar(&o.out, "out", "bench-results.json", "JSON results file (empty: none)")
	flag.StringVar(&o.profileDir, "profile-dir", "", "directory for the gateway's CPU profiles (per run and load) and heap profile (idle connections)")
	flag.StringVar(&o.dkim, "dkim", "rsa", "DKIM algorithm of the test message: rsa (2048 bits) or ed25519")
	flag.StringVar(&o.tools, "tools", "auto", "auto: Postfix smtp-sink/smtp-source when installed, else smtpload; smtpload: always ours")
	flag.BoolVar(&o.pprof, "pprof", true, "build the gateway with a loopback pprof endpoint (a build overlay; the daemon's source is untouched)")
	flag.StringVar(&o.passCache, "pass-cache", "1m", "the gateway's greylist.pass_cache (0: every recipient is a Redis round trip; the load is one triplet, so 1m answers nearly all from the cache)")
	flag.IntVar(&o.udpSocketQueries, "udp-socket-queries", 0, "the gateway's dns.udp_socket_queries (0: its default; 1: a new socket per DNS query, as before the pool)")
	flag.IntVar(&o.cpus, "cpus", 0, "the gateway's cpus key (GOMAXPROCS): 0 is Go's default (every CPU); -1 leaves one CPU to the load and the sink (the machine's CPUs less one, at least 1)")
	flag.BoolVar(&o.rdns, "rdns", false, "give the load's clients verified reverse DNS (the shipped rules then do not consult the greylist)")
	flag.BoolVar(&o.noRules, "no-rules", false, "do not configure the shipped rules even when the config has a rules key")
	flag.BoolVar(&o.keep, "keep", false, "keep the working directory (config, logs, binaries)")
	flag.BoolVar(&o.verbose, "v", false, "say what is being done")
	flag.Parse()
	if o.messages < 1 || o.runs < 1 || o.conc < 1 || o.perConn < 1 {
		fmt.Fprintln(os.Stderr, "benchrun: -messages, -runs, -concurrency and -per-conn must be at least 1")
		os.Exit(2)
	}
	if o.cpus < -1 || o.cpus > config.MaxCPUs {
		fmt.Fprintf(os.Stderr, "benchrun: -cpus must be -1, 0 or up to %d\n", config.MaxCPUs)
		os.Exit(2)
	}
	e := &env{keep: o.keep, verbose: o.verbose, memProfile: o.profileDir != ""}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sigs
		fmt.Fprintln(os.Stderr, "benchrun: interrupted; stopping everything")
		e.close()
		os.Exit(130)
	}()
	err := run(e, o)
	e.close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchrun: %v\n", err)
		os.Exit(1)
	}
}

// raiseNoFile raises RLIMIT_NOFILE for us and (inherited) for the children:
// the gateway and the idle-connection client each hold -idle sockets.
func raiseNoFile(want uint64) (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	if rl.Max < want {
		// Raising the hard limit needs privilege; try, else use the hard limit.
		try := syscall.Rlimit{Cur: want, Max: want}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &try) == nil {
			return want, nil
		}
	}
	rl.Cur = min(max(rl.Cur, want), rl.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	return rl.Cur, nil
}

// Run is one run's raw figures.
type Run struct {
	DirectNew   sendResult    `json:"direct_new_conn"`
	GatewayNew  sendResult    `json:"gateway_new_conn"`
	DirectKeep  sendResult    `json:"direct_kept_open"`
	GatewayKeep sendResult    `json:"gateway_kept_open"`
	Listed      connectResult `json:"gateway_listed_connect"`
	Bare        connectResult `json:"sink_bare_connect"`
	// Gateway CPU seconds (utime+stime) over each gateway load.
	GatewayCPUNewS    float64 `json:"gateway_cpu_new_conn_s"`
	GatewayCPUKeepS   float64 `json:"gateway_cpu_kept_open_s"`
	GatewayCPUListedS float64 `json:"gateway_cpu_listed_s"`
	// The cold loads: a new client address per connection (smtpload, which
	// alone can bind them), so DNSBL and PTR answers are not cached.
	GatewayCold           sendResult    `json:"gateway_cold_new_conn"`
	ListedCold            connectResult `json:"gateway_cold_listed_connect"`
	ListedColdDNSQueries  int           `json:"cold_listed_dns_queries"`
	GatewayCPUColdS       float64       `json:"gateway_cpu_cold_new_conn_s"`
	GatewayCPUListedColdS float64       `json:"gateway_cpu_cold_listed_s"`
}

// foreignShare is the CPU other processes took over the send loads, as a
// share of all the machine's CPU time over them.
func (r Run) foreignShare() float64 {
	var f, t float64
	for _, s := range []sendResult{r.DirectNew, r.GatewayNew, r.DirectKeep, r.GatewayKeep} {
		f += s.ForeignCPUS
		t += s.ElapsedS
	}
	if t == 0 {
		return 0
	}
	return f / (t * float64(runtime.NumCPU()))
}

// Idle is the memory figure.
type Idle struct {
	Target         string  `json:"target"`
	Conns          int     `json:"conns"`
	Failed         int     `json:"failed"`
	OpenS          float64 `json:"open_s"`
	RSSBeforeKiB   int64   `json:"rss_before_kib"`
	RSSAfterKiB    int64   `json:"rss_after_kib"`
	PerConnKiB     float64 `json:"per_conn_kib"`
	ThreadsAfter   int64   `json:"threads_after"`
	GoroutinesOpen int     `json:"goroutines_open,omitempty"`
	// From runtime.MemStats with the connections open (pprof endpoint).
	HeapInuseKiB  int64  `json:"heap_inuse_kib,omitempty"`
	HeapLiveKiB   int64  `json:"heap_live_kib,omitempty"` // HeapAlloc right after a forced GC
	StackInuseKiB int64  `json:"stack_inuse_kib,omitempty"`
	GoSysKiB      int64  `json:"go_sys_kib,omitempty"`
	FirstError    string `json:"first_error,omitempty"`
}

// Summary holds the medians.
type Summary struct {
	GatewayNewRate     float64 `json:"gateway_new_conn_msgs_per_s"`
	DirectNewRate      float64 `json:"direct_new_conn_msgs_per_s"`
	NewRatio           float64 `json:"new_conn_ratio"`
	GatewayKeepRate    float64 `json:"gateway_kept_open_msgs_per_s"`
	DirectKeepRate     float64 `json:"direct_kept_open_msgs_per_s"`
	KeepRatio          float64 `json:"kept_open_ratio"`
	AddedP50NewUS      float64 `json:"added_latency_p50_new_conn_us"`
	AddedP99NewUS      float64 `json:"added_latency_p99_new_conn_us"`
	AddedP50KeepUS     float64 `json:"added_latency_p50_kept_open_us"`
	AddedP99KeepUS     float64 `json:"added_latency_p99_kept_open_us"`
	GatewayP50NewUS    float64 `json:"gateway_latency_p50_new_conn_us"`
	GatewayP99NewUS    float64 `json:"gateway_latency_p99_new_conn_us"`
	GatewayP50KeepUS   float64 `json:"gateway_latency_p50_kept_open_us"`
	GatewayP99KeepUS   float64 `json:"gateway_latency_p99_kept_open_us"`
	ListedRefusedRate  float64 `json:"listed_refused_per_s"`
	SinkAcceptRate     float64 `json:"sink_bare_accepts_per_s"`
	ListedRatio        float64 `json:"listed_ratio"`
	CPUPerMsgNewUS     float64 `json:"gateway_cpu_per_msg_new_conn_us"`
	CPUPerMsgKeepUS    float64 `json:"gateway_cpu_per_msg_kept_open_us"`
	CPUPerRefusalUS    float64 `json:"gateway_cpu_per_refusal_us"`
	IdlePerConnKiB     float64 `json:"idle_rss_per_conn_kib"`
	SinkIdlePerConnKiB float64 `json:"sink_idle_rss_per_conn_kib"`
	// Cold: a new client address per connection.
	ColdRate            float64 `json:"gateway_cold_new_conn_msgs_per_s"`
	ColdRatio           float64 `json:"cold_new_conn_ratio"` // over the direct new-connection rate
	ColdDNSPerMsg       float64 `json:"cold_dns_queries_per_msg"`
	CPUPerMsgColdUS     float64 `json:"gateway_cpu_per_msg_cold_us"`
	ColdListedRate      float64 `json:"cold_listed_refused_per_s"`
	ColdListedRatio     float64 `json:"cold_listed_ratio"` // over the sink's bare accepts
	ColdDNSPerRefusal   float64 `json:"cold_dns_queries_per_refusal"`
	CPUPerRefusalColdUS float64 `json:"gateway_cpu_per_refusal_cold_us"`
	// Each run's ratio, in run order: how far the medians above can be
	// trusted on a shared machine.
	NewRatioRuns    []float64 `json:"new_conn_ratio_runs"`
	KeepRatioRuns   []float64 `json:"kept_open_ratio_runs"`
	ListedRatioRuns []float64 `json:"listed_ratio_runs"`
}

// Target is one goal of issue 6.
type Target struct {
	Name string  `json:"name"`
	Want string  `json:"want"`
	Got  float64 `json:"got"`
	Met  bool    `json:"met"`
}

// Results is the JSON file.
type Results struct {
	Time       time.Time         `json:"time"`
	Commit     string            `json:"commit,omitempty"`
	GoVersion  string            `json:"go_version"`
	CPUs       int               `json:"cpus"`
	Kernel     string            `json:"kernel,omitempty"`
	Tools      map[string]string `json:"tools"`
	Setup      map[string]any    `json:"setup"`
	Runs       []Run             `json:"runs"`
	Idle       []Idle            `json:"idle,omitempty"`
	Summary    Summary           `json:"summary"`
	Targets    []Target          `json:"targets"`
	SampleData map[string]any    `json:"sample_checks,omitempty"`
	Notes      []string          `json:"notes,omitempty"`
	Profiles   []string          `json:"profiles,omitempty"`
}

func run(e *env, o options) error {
	var err error
	if e.root, err = moduleRoot(); err != nil {
		return err
	}
	nofile, err := raiseNoFile(uint64(max(65536, 2*o.idle+4096)))
	if err != nil {
		return fmt.Errorf("RLIMIT_NOFILE: %w", err)
	}
	if int(nofile) < o.idle+1024 {
		e.note("RLIMIT_NOFILE is %d: fewer than -idle %d connections may open", nofile, o.idle)
	}
	if e.work, err = os.MkdirTemp("", "benchrun-*"); err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintf(os.Stderr, "benchrun: working directory %s (kept)\n", e.work)
	}
	if o.profileDir != "" {
		if o.profileDir, err = filepath.Abs(o.profileDir); err != nil {
			return err
		}
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return err
		}
	}
	step := func(what string) { fmt.Fprintf(os.Stderr, "benchrun: %s\n", what) }

	step("building gatewayd and smtpload")
	if err := e.build(o.pprof); err != nil {
		return err
	}
	e.tools(o.tools)
	step(fmt.Sprintf("tools: sink %s, source %s", e.sinkKind, e.sourceKind))
	signer, err := e.startDNS(o.dkim, o.rdns)
	if err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	if err := e.writeMessage(signer, o.size); err != nil {
		return fmt.Errorf("message: %w", err)
	}
	if e.redis, err = redisNew(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	if err := e.startSink(); err != nil {
		return fmt.Errorf("sink: %w", err)
	}
	maxConns := max(20000, 2*o.idle)
	withRules := hasRulesKey() && !o.noRules
	if err := e.writeConfig(withRules, maxConns, o); err != nil {
		if !withRules {
			return err
		}
		e.note("the shipped rules could not be configured (%v); ran on the default policy", err)
		e.rulesDir = ""
		if err := e.writeConfig(false, maxConns, o); err != nil {
			return err
		}
	}
	if !hasRulesKey() {
		e.note("config has no rules key yet: the gateway ran on its default policy (DNSBL at connect, greylist at RCPT, DMARC at DATA)")
	}
	if err := e.greylistAllow(); err != nil {
		return err
	}
	step("starting gatewayd on " + e.gatewayAddr)
	if err := e.startGateway(); err != nil {
		return err
	}
	gwPID := e.gateway.cmd.Process.Pid

	res := Results{
		Time: time.Now().UTC(), GoVersion: runtime.Version(), CPUs: runtime.NumCPU(),
		Tools: map[string]string{"sink": e.sinkKind, "source": e.sourceKind},
		Setup: map[string]any{
			"messages": o.messages, "runs": o.runs, "concurrency": o.conc, "per_conn": o.perConn,
			"message_size": e.msgSize, "dkim": e.dkimAlg, "idle_conns": o.idle, "warmup": o.warmup,
			"checks": []string{"iprev", "dnsbl", "spf", "dkim", "dmarc"}, "greylist": "redis " + e.redis.Addr, "greylist_pass_cache": o.passCache, "load_rdns": o.rdns,
			"rules": e.rulesDir, "pprof_overlay": e.pprofBuilt, "gateway_cpus": o.cpusText(),
		},
	}
	if out, err := exec.Command("git", "-C", e.root, "rev-parse", "--short", "HEAD").Output(); err == nil {
		res.Commit = strings.TrimSpace(string(out))
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		res.Kernel = strings.TrimSpace(string(b))
	}

	// Warm up, and check that the load really passes every check.
	if o.warmup > 0 {
		step(fmt.Sprintf("warm-up: %d messages through the gateway, %d direct", o.warmup, o.warmup))
		for _, pc := range []int{1, o.perConn} {
			r, err := e.send(e.gatewayAddr, o.warmup, o.conc, pc, loadSources)
			if err != nil {
				return err
			}
			if r.Failed > 0 || r.Messages == 0 {
				return fmt.Errorf("warm-up through the gateway failed: %d failed (%v, %s); decision log:\n%s\ngateway stderr:\n%s",
					r.Failed, r.Failures, r.FirstError, tail(e.decisionsLog, 5), tail(filepath.Join(e.work, "gatewayd.stderr"), 10))
			}
		}
		// A few cold messages (block 0 of the cold network; the runs take
		// blocks 1, 2, ...), to check that they pass every check too.
		if r, err := e.send(e.gatewayAddr, min(o.warmup, 50), o.conc, 1, coldRange(coldNetwork, 0, o.messages)); err != nil || r.Failed > 0 || r.Messages == 0 {
			return fmt.Errorf("cold warm-up through the gateway failed: %v %d failed (%v, %s); decision log:\n%s",
				err, r.Failed, r.Failures, r.FirstError, tail(e.decisionsLog, 5))
		}
		if r, err := e.send(e.sinkAddr, o.warmup, o.conc, 1, loadSources); err != nil || r.Failed > 0 {
			return fmt.Errorf("warm-up to the sink failed: %v %+v", err, r)
		}
		res.SampleData = sampleChecks(e.decisionsLog)
	}

	// Memory of idle connections, on the gateway and on the sink.
	if o.idle > 0 {
		step(fmt.Sprintf("idle connections: %d to the gateway", o.idle))
		gi, err := e.idleTest("gateway", gwPID, e.gatewayAddr, o.idle, o.profileDir)
		if err != nil {
			return err
		}
		res.Idle = append(res.Idle, gi)
		if e.sinkKind == "postfix" {
			// Postfix 3.7's smtp-sink here stopped greeting new connections
			// in time beyond a few hundred, its RSS growing far faster than
			// per connection: no figure rather than a wrong one.
			e.note("idle test on the sink skipped: smtp-sink does not hold thousands of idle connections here")
		} else {
			n := o.idle
			step(fmt.Sprintf("idle connections: %d to the sink", n))
			si, err := e.idleTest("sink", e.sink.cmd.Process.Pid, e.sinkAddr, n, "")
			if err != nil {
				e.note("idle test on the sink: %v", err)
			} else {
				res.Idle = append(res.Idle, si)
			}
		}
		time.Sleep(2 * time.Second) // let the sessions end
	}

	cpu := func() int64 { t, _ := cpuTicks(gwPID); return t }

	for i := 1; i <= o.runs; i++ {
		var r Run
		step(fmt.Sprintf("run %d/%d", i, o.runs))
		prof := func(name string) func() {
			if o.profileDir == "" || e.pprofAddr == "" {
				return func() {}
			}
			f := filepath.Join(o.profileDir, fmt.Sprintf("cpu-%s-run%d.pprof", name, i))
			if _, err := e.pprofGet("/bench/cpu/start?file=" + f); err != nil {
				e.note("cpu profile %s: %v", name, err)
				return func() {}
			}
			res.Profiles = append(res.Profiles, f)
			return func() { e.pprofGet("/bench/cpu/stop") }
		}
		gw := func(pc int, name string, cpuS *float64) (sendResult, error) {
			stop := prof(name)
			t0 := cpu()
			r, err := e.send(e.gatewayAddr, o.messages, o.conc, pc, loadSources)
			*cpuS = float64(cpu()-t0) / clockTicks
			stop()
			if err == nil {
				err = e.addLatency(&r, e.gatewayAddr, o.messages, o.conc, pc)
			}
			return r, err
		}
		direct := func(pc int) (sendResult, error) {
			r, err := e.send(e.sinkAddr, o.messages, o.conc, pc, loadSources)
			if err == nil {
				err = e.addLatency(&r, e.sinkAddr, o.messages, o.conc, pc)
			}
			return r, err
		}
		if r.DirectNew, err = direct(1); err != nil {
			return err
		}
		if r.GatewayNew, err = gw(1, "new-conn", &r.GatewayCPUNewS); err != nil {
			return err
		}
		if r.DirectKeep, err = direct(o.perConn); err != nil {
			return err
		}
		if r.GatewayKeep, err = gw(o.perConn, "kept-open", &r.GatewayCPUKeepS); err != nil {
			return err
		}
		stop := prof("listed")
		t0 := cpu()
		if r.Listed, err = e.connect(e.gatewayAddr, o.messages, o.conc, listedClient, 554); err != nil {
			return err
		}
		r.GatewayCPUListedS = float64(cpu()-t0) / clockTicks
		stop()
		if r.Bare, err = e.connect(e.sinkAddr, o.messages, o.conc, loadSources, 220); err != nil {
			return err
		}
		// The cold loads: a new client address per connection.
		stop = prof("cold-new-conn")
		t0 = cpu()
		r.GatewayCold, err = e.send(e.gatewayAddr, o.messages, o.conc, 1, coldRange(coldNetwork, i, o.messages))
		r.GatewayCPUColdS = float64(cpu()-t0) / clockTicks
		stop()
		if err != nil {
			return err
		}
		stop = prof("cold-listed")
		t0 = cpu()
		q0 := e.dns.Queries()
		r.ListedCold, err = e.connect(e.gatewayAddr, o.messages, o.conc, coldRange(coldListedNetwork, i, o.messages), 554)
		r.GatewayCPUListedColdS = float64(cpu()-t0) / clockTicks
		r.ListedColdDNSQueries = e.dns.Queries() - q0
		stop()
		if err != nil {
			return err
		}
		for _, s := range []struct {
			name string
			r    sendResult
		}{{"direct new-conn", r.DirectNew}, {"gateway new-conn", r.GatewayNew}, {"direct kept-open", r.DirectKeep}, {"gateway kept-open", r.GatewayKeep}, {"gateway cold new-conn", r.GatewayCold}} {
			if s.r.Failed > 0 {
				e.note("run %d %s: %d messages failed (%v) %s", i, s.name, s.r.Failed, s.r.Failures, s.r.FirstError)
			}
		}
		for _, l := range []struct {
			name string
			r    connectResult
		}{{"listed", r.Listed}, {"cold listed", r.ListedCold}} {
			if l.r.Expected != l.r.Connections || l.r.Failed > 0 {
				e.note("run %d %s connects: codes %v, %d failed %s", i, l.name, l.r.Codes, l.r.Failed, l.r.FirstError)
			}
		}
		fmt.Fprintf(os.Stderr, "  new-conn %.0f/%.0f msg/s, kept-open %.0f/%.0f msg/s (gateway/direct), listed refusals %.0f/s, sink accepts %.0f/s\n",
			r.GatewayNew.Rate, r.DirectNew.Rate, r.GatewayKeep.Rate, r.DirectKeep.Rate, r.Listed.ExpectRate, r.Bare.ExpectRate)
		fmt.Fprintf(os.Stderr, "  cold (a new client address each): new-conn %.0f msg/s, listed refusals %.0f/s\n", r.GatewayCold.Rate, r.ListedCold.ExpectRate)
		fmt.Fprintf(os.Stderr, "  DNS queries reaching the server: new-conn %d, kept-open %d, cold new-conn %d, cold listed %d\n",
			r.GatewayNew.DNSQueries, r.GatewayKeep.DNSQueries, r.GatewayCold.DNSQueries, r.ListedColdDNSQueries)
		fmt.Fprintf(os.Stderr, "  machine CPU busy: new-conn %.0f%%/%.0f%%, kept-open %.0f%%/%.0f%% (gateway/direct); CPU taken by other processes: %.0f%% of the loads' time\n",
			100*r.GatewayNew.MachineBusy, 100*r.DirectNew.MachineBusy, 100*r.GatewayKeep.MachineBusy, 100*r.DirectKeep.MachineBusy, 100*r.foreignShare())
		res.Runs = append(res.Runs, r)
	}
	if o.profileDir != "" && e.pprofAddr != "" {
		f := filepath.Join(o.profileDir, "allocs-end.pprof")
		if b, err := e.pprofGet("/debug/pprof/allocs"); err == nil && os.WriteFile(f, b, 0o644) == nil {
			res.Profiles = append(res.Profiles, f)
		}
	}
	var fs []float64
	for _, r := range res.Runs {
		fs = append(fs, r.foreignShare())
	}
	if f := median(fs); f > 0.05 {
		e.note("other processes took %.0f%% of the machine's CPU during the loads (median over runs): every figure is skewed by them", 100*f)
	}
	res.Notes = e.notes
	summarizeRuns(&res)
	printTable(os.Stdout, &res, o)
	if o.out != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(o.out, append(b, '\n'), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "benchrun: results written to %s\n", o.out)
	}
	return nil
}

// idleTest opens n idle connections (greeted, EHLO answered) to addr and
// reads the resident memory of pid before and after.
func (e *env) idleTest(target string, pid int, addr string, n int, profileDir string) (Idle, error) {
	out := Idle{Target: target}
	runtime.GC()
	time.Sleep(time.Second)
	before, err := procStatus(pid, "VmRSS")
	if err != nil {
		return out, err
	}
	cmd := exec.Command(e.smtploadBin, "idle", "-addr", addr, "-n", strconv.Itoa(n), "-c", "100", "-src", loadSources, "-helo", loadHelo)
	p, err := e.start("smtpload idle", cmd, true, true)
	if err != nil {
		return out, err
	}
	defer func() {
		p.in.Close()
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			p.cmd.Process.Kill()
		}
	}()
	line, err := bufio.NewReader(p.out).ReadString('\n')
	if err != nil {
		return out, fmt.Errorf("smtpload idle: %v (%q)", err, line)
	}
	var ir idleResult
	if err := json.Unmarshal([]byte(line), &ir); err != nil {
		return out, fmt.Errorf("smtpload idle: %v (%q)", err, line)
	}
	time.Sleep(time.Second)
	after, err := procStatus(pid, "VmRSS")
	if err != nil {
		return out, err
	}
	threads, _ := procStatus(pid, "Threads")
	out.Conns, out.Failed, out.OpenS, out.FirstError = ir.Open, ir.Failed, ir.ElapsedS, ir.FirstError
	out.RSSBeforeKiB, out.RSSAfterKiB, out.ThreadsAfter = before, after, threads
	if ir.Open > 0 {
		out.PerConnKiB = float64(after-before) / float64(ir.Open)
	}
	if target == "gateway" && e.pprofAddr != "" {
		if b, err := e.pprofGet("/debug/pprof/goroutine?debug=1"); err == nil {
			first, _, _ := strings.Cut(string(b), "\n")
			if _, v, ok := strings.Cut(first, "total "); ok {
				out.GoroutinesOpen, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		if b, err := e.pprofGet("/debug/pprof/heap?debug=1"); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				for _, f := range []struct {
					key string
					dst *int64
				}{{"# HeapInuse = ", &out.HeapInuseKiB}, {"# Stack = ", &out.StackInuseKiB}, {"# Sys = ", &out.GoSysKiB}} {
					if v, ok := strings.CutPrefix(line, f.key); ok {
						v, _, _ = strings.Cut(v, " ")
						n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
						*f.dst = n >> 10
					}
				}
			}
		}
		// The same after a GC (the heap profile's gc=1 forces one): live
		// heap per connection, without the garbage the RSS figure holds.
		if b, err := e.pprofGet("/debug/pprof/heap?debug=1&gc=1"); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "# HeapAlloc = "); ok {
					n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
					out.HeapLiveKiB = n >> 10
				}
			}
		}
		if profileDir != "" {
			if b, err := e.pprofGet("/debug/pprof/heap?gc=1"); err == nil {
				os.WriteFile(filepath.Join(profileDir, "heap-idle.pprof"), b, 0o644)
			}
			if b, err := e.pprofGet("/debug/pprof/goroutine?debug=1"); err == nil {
				os.WriteFile(filepath.Join(profileDir, "goroutines-idle.txt"), b, 0o644)
			}
		}
	}
	if ir.Failed > 0 {
		e.note("idle %s: %d of %d connections failed: %s", target, ir.Failed, n, ir.FirstError)
	}
	return out, nil
}

// sampleChecks returns the check results of the last relayed message in
// the decision log, to show that the load passes every check.
func sampleChecks(path string) map[string]any {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		var d map[string]any
		if json.Unmarshal([]byte(lines[i]), &d) != nil || d["stage"] != "data" {
			continue
		}
		out := map[string]any{"action": d["action"], "checks": d["checks"]}
		return out
	}
	return nil
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func summarizeRuns(res *Results) {
	col := func(f func(r Run) float64) float64 {
		var xs []float64
		for _, r := range res.Runs {
			xs = append(xs, f(r))
		}
		return median(xs)
	}
	ratio := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	s := &res.Summary
	s.GatewayNewRate = col(func(r Run) float64 { return r.GatewayNew.Rate })
	s.DirectNewRate = col(func(r Run) float64 { return r.DirectNew.Rate })
	s.NewRatio = col(func(r Run) float64 { return ratio(r.GatewayNew.Rate, r.DirectNew.Rate) })
	s.GatewayKeepRate = col(func(r Run) float64 { return r.GatewayKeep.Rate })
	s.DirectKeepRate = col(func(r Run) float64 { return r.DirectKeep.Rate })
	s.KeepRatio = col(func(r Run) float64 { return ratio(r.GatewayKeep.Rate, r.DirectKeep.Rate) })
	s.AddedP50NewUS = col(func(r Run) float64 { return r.GatewayNew.Latency.P50 - r.DirectNew.Latency.P50 })
	s.AddedP99NewUS = col(func(r Run) float64 { return r.GatewayNew.Latency.P99 - r.DirectNew.Latency.P99 })
	s.AddedP50KeepUS = col(func(r Run) float64 { return r.GatewayKeep.Latency.P50 - r.DirectKeep.Latency.P50 })
	s.AddedP99KeepUS = col(func(r Run) float64 { return r.GatewayKeep.Latency.P99 - r.DirectKeep.Latency.P99 })
	s.GatewayP50NewUS = col(func(r Run) float64 { return r.GatewayNew.Latency.P50 })
	s.GatewayP99NewUS = col(func(r Run) float64 { return r.GatewayNew.Latency.P99 })
	s.GatewayP50KeepUS = col(func(r Run) float64 { return r.GatewayKeep.Latency.P50 })
	s.GatewayP99KeepUS = col(func(r Run) float64 { return r.GatewayKeep.Latency.P99 })
	s.ListedRefusedRate = col(func(r Run) float64 { return r.Listed.ExpectRate })
	s.SinkAcceptRate = col(func(r Run) float64 { return r.Bare.ExpectRate })
	s.ListedRatio = col(func(r Run) float64 { return ratio(r.Listed.ExpectRate, r.Bare.ExpectRate) })
	s.CPUPerMsgNewUS = col(func(r Run) float64 { return 1e6 * ratio(r.GatewayCPUNewS, float64(r.GatewayNew.Messages)) })
	s.CPUPerMsgKeepUS = col(func(r Run) float64 { return 1e6 * ratio(r.GatewayCPUKeepS, float64(r.GatewayKeep.Messages)) })
	s.CPUPerRefusalUS = col(func(r Run) float64 { return 1e6 * ratio(r.GatewayCPUListedS, float64(r.Listed.Expected)) })
	runs := func(f func(r Run) float64) []float64 {
		var xs []float64
		for _, r := range res.Runs {
			xs = append(xs, math.Round(100*f(r))/100)
		}
		return xs
	}
	s.NewRatioRuns = runs(func(r Run) float64 { return ratio(r.GatewayNew.Rate, r.DirectNew.Rate) })
	s.KeepRatioRuns = runs(func(r Run) float64 { return ratio(r.GatewayKeep.Rate, r.DirectKeep.Rate) })
	s.ListedRatioRuns = runs(func(r Run) float64 { return ratio(r.Listed.ExpectRate, r.Bare.ExpectRate) })
	s.ColdRate = col(func(r Run) float64 { return r.GatewayCold.Rate })
	s.ColdRatio = col(func(r Run) float64 { return ratio(r.GatewayCold.Rate, r.DirectNew.Rate) })
	s.ColdDNSPerMsg = col(func(r Run) float64 { return ratio(float64(r.GatewayCold.DNSQueries), float64(r.GatewayCold.Messages)) })
	s.CPUPerMsgColdUS = col(func(r Run) float64 { return 1e6 * ratio(r.GatewayCPUColdS, float64(r.GatewayCold.Messages)) })
	s.ColdListedRate = col(func(r Run) float64 { return r.ListedCold.ExpectRate })
	s.ColdListedRatio = col(func(r Run) float64 { return ratio(r.ListedCold.ExpectRate, r.Bare.ExpectRate) })
	s.ColdDNSPerRefusal = col(func(r Run) float64 { return ratio(float64(r.ListedColdDNSQueries), float64(r.ListedCold.Expected)) })
	s.CPUPerRefusalColdUS = col(func(r Run) float64 { return 1e6 * ratio(r.GatewayCPUListedColdS, float64(r.ListedCold.Expected)) })
	for _, i := range res.Idle {
		switch i.Target {
		case "gateway":
			s.IdlePerConnKiB = i.PerConnKiB
		case "sink":
			s.SinkIdlePerConnKiB = i.PerConnKiB
		}
	}
	res.Targets = []Target{
		{Name: "relay rate, new connection per message, gateway/direct", Want: ">= 0.50", Got: s.NewRatio, Met: s.NewRatio >= 0.50},
		{Name: "relay rate, connections kept open, gateway/direct", Want: ">= 0.40", Got: s.KeepRatio, Met: s.KeepRatio >= 0.40},
		{Name: "listed clients refused/s over sink bare accepts/s", Want: ">= 1.00", Got: s.ListedRatio, Met: s.ListedRatio >= 1.0},
	}
	if len(res.Idle) > 0 {
		res.Targets = append(res.Targets, Target{Name: "resident memory per idle connection (KiB)", Want: "<= 16", Got: s.IdlePerConnKiB, Met: s.IdlePerConnKiB <= 16})
	}
}

func printTable(w *os.File, res *Results, o options) {
	s := res.Summary
	fmt.Fprintf(w, "\ngatewayd benchmark: %d runs (medians) of %d messages of %d octets (DKIM %s), %d senders; sink %s, source %s; %d CPUs, the gateway on %s\n",
		o.runs, o.messages, res.Setup["message_size"], res.Setup["dkim"], o.conc, res.Tools["sink"], res.Tools["source"], res.CPUs, o.cpusText())
	if res.SampleData != nil {
		b, _ := json.Marshal(res.SampleData)
		fmt.Fprintf(w, "checks seen on a relayed message: %s\n", b)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "figure\tgateway\tdirect\tratio\ttarget\t")
	met := func(b bool) string {
		if b {
			return "met"
		}
		return "NOT met"
	}
	fmt.Fprintf(tw, "msgs/s, new connection per message\t%.0f\t%.0f\t%.2f%s\t>= 0.50 %s\t\n", s.GatewayNewRate, s.DirectNewRate, s.NewRatio, spread(s.NewRatioRuns), met(s.NewRatio >= 0.5))
	fmt.Fprintf(tw, "msgs/s, %d messages per connection\t%.0f\t%.0f\t%.2f%s\t>= 0.40 %s\t\n", o.perConn, s.GatewayKeepRate, s.DirectKeepRate, s.KeepRatio, spread(s.KeepRatioRuns), met(s.KeepRatio >= 0.4))
	fmt.Fprintf(tw, "latency p50 / p99 ms, new connection\t%.2f / %.2f\t\t\t\t\n", s.GatewayP50NewUS/1e3, s.GatewayP99NewUS/1e3)
	fmt.Fprintf(tw, "  added by the gateway, p50 / p99 ms\t+%.2f / +%.2f\t\t\t\t\n", s.AddedP50NewUS/1e3, s.AddedP99NewUS/1e3)
	fmt.Fprintf(tw, "latency p50 / p99 ms, kept open\t%.2f / %.2f\t\t\t\t\n", s.GatewayP50KeepUS/1e3, s.GatewayP99KeepUS/1e3)
	fmt.Fprintf(tw, "  added by the gateway, p50 / p99 ms\t+%.2f / +%.2f\t\t\t\t\n", s.AddedP50KeepUS/1e3, s.AddedP99KeepUS/1e3)
	fmt.Fprintf(tw, "listed clients refused/s vs sink accepts/s\t%.0f\t%.0f\t%.2f%s\t>= 1.00 %s\t\n", s.ListedRefusedRate, s.SinkAcceptRate, s.ListedRatio, spread(s.ListedRatioRuns), met(s.ListedRatio >= 1))
	for _, i := range res.Idle {
		extra := ""
		if i.Target == "gateway" {
			extra = "<= 16 " + met(i.PerConnKiB <= 16)
		}
		fmt.Fprintf(tw, "RSS per idle conn KiB, %s (%d conns, %d->%d MiB)\t%.1f\t\t\t%s\t\n", i.Target, i.Conns, i.RSSBeforeKiB>>10, i.RSSAfterKiB>>10, i.PerConnKiB, extra)
		if i.StackInuseKiB > 0 {
			fmt.Fprintf(tw, "  Go heap in use / live after GC / stacks, MiB (%d goroutines)\t%d / %d / %d\t\t\t\t\n", i.GoroutinesOpen, i.HeapInuseKiB>>10, i.HeapLiveKiB>>10, i.StackInuseKiB>>10)
		}
	}
	fmt.Fprintf(tw, "gateway CPU per message µs, new conn / kept open\t%.0f / %.0f\t\t\t\t\n", s.CPUPerMsgNewUS, s.CPUPerMsgKeepUS)
	fmt.Fprintf(tw, "gateway CPU per refused connection µs\t%.0f\t\t\t\t\n", s.CPUPerRefusalUS)
	fmt.Fprintf(tw, "cold: a new client address per connection (smtpload)\t\t\t\t\t\n")
	fmt.Fprintf(tw, "  msgs/s, new connection per message\t%.0f\t%.0f\t%.2f\t\t\n", s.ColdRate, s.DirectNewRate, s.ColdRatio)
	fmt.Fprintf(tw, "  listed clients refused/s vs sink accepts/s\t%.0f\t%.0f\t%.2f\t\t\n", s.ColdListedRate, s.SinkAcceptRate, s.ColdListedRatio)
	fmt.Fprintf(tw, "  DNS queries per message / per refusal\t%.1f / %.1f\t\t\t\t\n", s.ColdDNSPerMsg, s.ColdDNSPerRefusal)
	fmt.Fprintf(tw, "  gateway CPU µs per message / per refusal\t%.0f / %.0f\t\t\t\t\n", s.CPUPerMsgColdUS, s.CPUPerRefusalColdUS)
	tw.Flush()
	for _, n := range res.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	if len(res.Profiles) > 0 {
		fmt.Fprintf(w, "profiles in %s (e.g. go tool pprof -top %s)\n", filepath.Dir(res.Profiles[0]), res.Profiles[0])
	}
}

// spread is " (lowest–highest)" of several runs' ratios, "" for one run.
func spread(xs []float64) string {
	if len(xs) < 2 {
		return ""
	}
	return fmt.Sprintf(" (%.2f–%.2f)", slices.Min(xs), slices.Max(xs))
}

func redisNew() (*redistest.Server, error) { return redistest.New() }
