package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/miekg/dns"

	"github.com/mxgate/gatewayd/config"
	"github.com/mxgate/gatewayd/internal/dnstest"
	"github.com/mxgate/gatewayd/internal/redistest"
)

// Names used by the load and published in the test zones.
const (
	senderDomain = "bench.test"
	senderAddr   = "sender@bench.test"
	rcptAddr     = "user@example.com"
	dkimSelector = "s1"
	// The zone names the shipped rules use; they are answered only by the
	// in-process test DNS server, never queried on the Internet.
	blZone       = "zen.spamhaus.org"
	wlZone       = "list.dnswl.org"
	listedClient = "127.0.0.2"              // listed in blZone (also the RFC 5782 test entry)
	loadSources  = "127.0.0.10-127.0.0.209" // relay load and idle connections
	loadNetwork  = "127.0.0.0/24"           // greylist-allowed before the run
	loadHelo     = "h10.client.bench.test"
	// The cold loads: every connection from an address never seen before,
	// so that each asks the DNS (DNSBL zones, PTR) instead of the cache, as
	// most connections to a public MX do. Relayed messages come from
	// coldNetwork (allowed by SPF and by the greylist's static allow list),
	// refused ones from coldListedNetwork (listed by wildcards).
	coldNetwork       = "127.16.0.0/12"
	coldListedNetwork = "127.32.0.0/12"
	gatewayHost       = "mx.bench.test"
)

// env is everything the benchmark started; close stops it all.
type env struct {
	root    string // module root
	work    string // temporary directory
	keep    bool
	verbose bool
	// memProfile keeps the gateway's allocation sampling on, for the
	// heap profiles of -profile-dir (see pprofOverlay).
	memProfile bool

	gatewayBin, smtploadBin string
	pprofBuilt              bool

	dns   *dnstest.Server
	redis *redistest.Server

	sinkKind, sourceKind string // "postfix" or "smtpload"
	sink                 *proc
	sinkAddr             string

	gateway      *proc
	gatewayAddr  string
	pprofAddr    string
	configPath   string
	decisionsLog string
	rulesDir     string // "" when the config has no rules key or it was not usable
	notes        []string

	msgFile, msgFileLF string
	msgSize            int
	dkimAlg            string

	redisPID int

	mu    sync.Mutex
	procs []*proc
}

func (e *env) note(format string, args ...any) {
	e.notes = append(e.notes, fmt.Sprintf(format, args...))
}

func (e *env) logf(format string, args ...any) {
	if e.verbose {
		fmt.Fprintf(os.Stderr, "benchrun: "+format+"\n", args...)
	}
}

// proc is a child process.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  io.ReadCloser // stdout, when captured
	in   io.WriteCloser
	done chan struct{}
	err  error
}

func (e *env) start(name string, cmd *exec.Cmd, captureStdout, pipeStdin bool) (*proc, error) {
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	// Children die with us, even if we are killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if captureStdout {
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		p.out = out
	}
	if pipeStdin {
		in, err := cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		p.in = in
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	e.mu.Lock()
	e.procs = append(e.procs, p)
	e.mu.Unlock()
	return p, nil
}

// stop sends SIGTERM and waits (SIGKILL after the grace period).
func (p *proc) stop(grace time.Duration) {
	if p == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.cmd.Process.Kill()
		<-p.done
	}
}

func (e *env) close() {
	e.mu.Lock()
	procs := e.procs
	e.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop(10 * time.Second)
	}
	if e.redis != nil {
		e.redis.Close()
	}
	if e.dns != nil {
		e.dns.Close()
	}
	if !e.keep && e.work != "" {
		os.RemoveAll(e.work)
	}
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

func moduleRoot() (string, error) {
	out, err := exec.Command(goTool(), "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run benchrun inside the gatewayd module (go run ./cmd/benchrun)")
	}
	return filepath.Dir(mod), nil
}

// pprofOverlay is added to package main of cmd/gatewayd at build time, in
// the benchmark's build only (go build -overlay): it serves net/http/pprof
// and CPU profile start/stop on the loopback address in
// $GATEWAYD_BENCH_PPROF. The daemon's own source is untouched.
//
// Linking runtime/pprof turns on the runtime's sampling of allocations
// (the daemon alone never has it: the linker leaves it off when nothing
// can read it). It cost about 2.5% of a relayed message's CPU, stack walks
// of sampled allocations, so it is turned off again unless heap profiles
// are asked for ($GATEWAYD_BENCH_MEMPROFILE, with -profile-dir); the
// MemStats the idle figures read come without it.
const pprofOverlay = `package main

import (
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
)

func init() {
	if os.Getenv("GATEWAYD_BENCH_MEMPROFILE") == "" {
		runtime.MemProfileRate = 0
	}
	addr := os.Getenv("GATEWAYD_BENCH_PPROF")
	if addr == "" {
		return
	}
	var mu sync.Mutex
	var f *os.File
	http.HandleFunc("/bench/cpu/start", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if f != nil {
			http.Error(w, "a CPU profile is running", http.StatusConflict)
			return
		}
		nf, err := os.Create(r.URL.Query().Get("file"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if err := pprof.StartCPUProfile(nf); err != nil {
			nf.Close()
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		f = nf
	})
	http.HandleFunc("/bench/cpu/stop", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if f == nil {
			return
		}
		pprof.StopCPUProfile()
		f.Close()
		f = nil
	})
	go http.ListenAndServe(addr, nil)
}
`

// build compiles gatewayd (with the pprof overlay when asked) and smtpload.
func (e *env) build(withPprof bool) error {
	e.gatewayBin = filepath.Join(e.work, "gatewayd")
	e.smtploadBin = filepath.Join(e.work, "smtpload")
	args := []string{"build", "-o", e.gatewayBin}
	if withPprof {
		src := filepath.Join(e.work, "zz_benchrun_pprof.go")
		if err := os.WriteFile(src, []byte(pprofOverlay), 0o644); err != nil {
			return err
		}
		ov, _ := json.Marshal(map[string]any{"Replace": map[string]string{
			filepath.Join(e.root, "cmd", "gatewayd", "zz_benchrun_pprof.go"): src,
		}})
		ovPath := filepath.Join(e.work, "overlay.json")
		if err := os.WriteFile(ovPath, ov, 0o644); err != nil {
			return err
		}
		args = append(args, "-overlay", ovPath)
		e.pprofBuilt = true
	}
	args = append(args, "./cmd/gatewayd")
	for _, a := range [][]string{args, {"build", "-o", e.smtploadBin, "./cmd/smtpload"}} {
		cmd := exec.Command(goTool(), a...)
		cmd.Dir = e.root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go %s: %v\n%s", strings.Join(a, " "), err, out)
		}
	}
	return nil
}

// tools picks Postfix's smtp-sink and smtp-source when installed, else ours.
func (e *env) tools(force string) {
	e.sinkKind, e.sourceKind = "smtpload", "smtpload"
	if force == "smtpload" {
		return
	}
	if _, err := exec.LookPath("smtp-sink"); err == nil {
		e.sinkKind = "postfix"
	}
	if _, err := exec.LookPath("smtp-source"); err == nil {
		e.sourceKind = "postfix"
	}
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// waitDial waits until addr accepts TCP connections.
func waitDial(addr string, within time.Duration, alive <-chan struct{}) error {
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-alive:
			return fmt.Errorf("process exited before listening on %s", addr)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s: %w", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startSink starts the stand-in for the internal MTA.
func (e *env) startSink() error {
	if e.sinkKind == "postfix" {
		addr, err := freePort()
		if err != nil {
			return err
		}
		args := []string{addr, "1024"}
		if os.Geteuid() == 0 {
			// smtp-sink refuses to run as root without a user to become.
			args = append([]string{"-u", "nobody"}, args...)
		}
		cmd := exec.Command("smtp-sink", args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		p, err := e.start("smtp-sink", cmd, false, false)
		if err != nil {
			return err
		}
		e.sink, e.sinkAddr = p, addr
		if err := waitDial(addr, 10*time.Second, p.done); err != nil {
			return fmt.Errorf("smtp-sink: %w: %s", err, strings.TrimSpace(stderr.String()))
		}
		return nil
	}
	p, err := e.start("smtpload sink", exec.Command(e.smtploadBin, "sink", "-addr", "127.0.0.1:0"), true, false)
	if err != nil {
		return err
	}
	line, err := bufio.NewReader(p.out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "LISTEN ") {
		return fmt.Errorf("smtpload sink: %q %v", line, err)
	}
	e.sink, e.sinkAddr = p, strings.TrimSpace(strings.TrimPrefix(line, "LISTEN "))
	// The stats line comes at exit; keep the pipe drained.
	go io.Copy(io.Discard, p.out)
	return nil
}

// startDNS serves the zones: the DNSBL, the sender domain's SPF, DKIM key
// and DMARC policy, the load clients' names (A records), and with rdns
// their PTR records too (forward-confirmed reverse DNS). Without rdns the
// shipped rules greylist the load's clients, so every recipient asks the
// greylist store. It returns the DKIM signer whose key is published.
func (e *env) startDNS(alg string, rdns bool) (crypto.Signer, error) {
	var zone strings.Builder
	fmt.Fprintf(&zone, "$TTL 3600\n$ORIGIN %s.\n@ IN SOA ns.bench.test. hostmaster.bench.test. 1 3600 600 86400 300\n", blZone)
	fmt.Fprintf(&zone, "2.0.0.127 IN A 127.0.0.2\n          IN TXT \"Listed in the benchmark DNSBL\"\n")
	for b := 32; b < 48; b++ { // coldListedNetwork
		fmt.Fprintf(&zone, "*.%d.127 IN A 127.0.0.2\n          IN TXT \"Listed in the benchmark DNSBL\"\n", b)
	}
	fmt.Fprintf(&zone, "$ORIGIN %s.\n@ IN SOA ns.bench.test. hostmaster.bench.test. 1 3600 600 86400 300\n", wlZone)
	fmt.Fprintf(&zone, "2.0.0.127 IN A 127.0.10.0\n")
	fmt.Fprintf(&zone, "$ORIGIN %s.\n@ IN SOA ns.bench.test. hostmaster.bench.test. 1 3600 600 86400 300\n", senderDomain)
	fmt.Fprintf(&zone, "@ IN TXT \"v=spf1 ip4:127.0.0.0/24 ip4:%s -all\"\n", coldNetwork)
	fmt.Fprintf(&zone, "_dmarc IN TXT \"v=DMARC1; p=reject\"\n")
	for i := 1; i <= 254; i++ {
		fmt.Fprintf(&zone, "h%d.client IN A 127.0.0.%d\n", i, i)
	}
	fmt.Fprintf(&zone, "$ORIGIN 127.in-addr.arpa.\n@ IN SOA ns.bench.test. hostmaster.bench.test. 1 3600 600 86400 300\n")
	for i := 1; i <= 254 && rdns; i++ {
		fmt.Fprintf(&zone, "%d.0.0 IN PTR h%d.client.bench.test.\n", i, i)
	}
	srv, err := dnstest.New()
	if err != nil {
		return nil, err
	}
	e.dns = srv
	if err := srv.LoadZone(strings.NewReader(zone.String()), "", "bench.zone"); err != nil {
		return nil, err
	}

	var signer crypto.Signer
	var keyTag, pub string
	switch alg {
	case "ed25519":
		pk, sk, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		signer, keyTag, pub = sk, "ed25519", base64.StdEncoding.EncodeToString(pk)
	case "rsa":
		sk, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKIXPublicKey(&sk.PublicKey)
		if err != nil {
			return nil, err
		}
		signer, keyTag, pub = sk, "rsa", base64.StdEncoding.EncodeToString(der)
	default:
		return nil, fmt.Errorf("-dkim %q: want rsa or ed25519", alg)
	}
	rec := "v=DKIM1; k=" + keyTag + "; p=" + pub
	var chunks []string
	for len(rec) > 255 {
		chunks, rec = append(chunks, rec[:255]), rec[255:]
	}
	chunks = append(chunks, rec)
	srv.AddRecords(&dns.TXT{Hdr: dns.RR_Header{Name: dkimSelector + "._domainkey." + senderDomain + ".", Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 3600}, Txt: chunks})
	e.dkimAlg = alg + map[string]string{"rsa": "-sha256 (2048 bits)", "ed25519": "-sha256"}[alg]
	return signer, nil
}

// writeMessage writes the DKIM-signed test message of about size octets
// (CRLF), and a copy with LF line ends for Postfix's smtp-source -F.
func (e *env) writeMessage(signer crypto.Signer, size int) error {
	build := func(bodyLen int) ([]byte, error) {
		var msg strings.Builder
		fmt.Fprintf(&msg, "From: Bench Sender <%s>\r\nTo: <%s>\r\nSubject: gatewayd benchmark message\r\nDate: %s\r\nMessage-ID: <bench.%d@%s>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
			senderAddr, rcptAddr, time.Now().Format(time.RFC1123Z), time.Now().UnixNano(), senderDomain)
		line := "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n"
		n := 0
		for n+len(line) <= bodyLen {
			msg.WriteString(line)
			n += len(line)
		}
		if bodyLen-n > 2 {
			msg.WriteString(strings.Repeat("z", bodyLen-n-2) + "\r\n")
		}
		var out bytes.Buffer
		err := dkim.Sign(&out, strings.NewReader(msg.String()), &dkim.SignOptions{
			Domain: senderDomain, Selector: dkimSelector, Signer: signer,
			HeaderCanonicalization: dkim.CanonicalizationRelaxed,
			BodyCanonicalization:   dkim.CanonicalizationRelaxed,
			HeaderKeys:             []string{"From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"},
		})
		return out.Bytes(), err
	}
	first, err := build(size)
	if err != nil {
		return err
	}
	msg, err := build(max(0, 2*size-len(first)))
	if err != nil {
		return err
	}
	e.msgSize = len(msg)
	e.msgFile = filepath.Join(e.work, "message.eml")
	e.msgFileLF = filepath.Join(e.work, "message-lf.eml")
	if err := os.WriteFile(e.msgFile, msg, 0o644); err != nil {
		return err
	}
	return os.WriteFile(e.msgFileLF, bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n")), 0o644)
}

// hasRulesKey reports whether the config package knows a top-level
// `rules` key (the lead is adding `rules: {dir: ./rules}`).
func hasRulesKey() bool {
	t := reflect.TypeOf(config.Config{})
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name == "rules" {
			return true
		}
	}
	return false
}

// configAddrs are the places configYAML names.
type configAddrs struct {
	gateway, sink, dns, redis string // host:port
	decisions, tmp, rules     string // paths; rules "" leaves the key out
}

// configYAML is the gateway's configuration (see writeConfig). A setting
// of o at its default is left out, so that the gateway's own default
// applies: the configuration refuses a written 0 where 0 means nothing.
func configYAML(a configAddrs, maxConns int, o options) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# generated by cmd/benchrun
hostname: %s
listen: [%q]
domains: [example.com]
limits:
  max_connections: %d
  max_connections_per_ip: %d
upstream:
  addrs: [%q]
metrics:
  listen: ""
log:
  decisions: %q
  level: warn
temp_dir: %q
checks: [iprev, dnsbl, spf, dkim, dmarc]
dns:
  servers: [%q]
  timeout: 2s
`, gatewayHost, a.gateway, maxConns, maxConns, a.sink, a.decisions, a.tmp, a.dns)
	if o.udpSocketQueries > 0 {
		fmt.Fprintf(&b, "  udp_socket_queries: %d\n", o.udpSocketQueries)
	}
	fmt.Fprintf(&b, `dnsbl:
  zones:
    - zone: %s
    - zone: %s
      type: allow
      codes: ["127.0.0.0-127.0.255.255"]
      error_codes: ["127.0.0.255"]
greylist:
  enabled: true
  allow_cidrs: [%q]
  pass_cache: %s
  redis:
    addrs: [%q]
`, blZone, wlZone, coldNetwork, o.passCache, a.redis)
	if n := o.gatewayCPUs(); n > 0 {
		fmt.Fprintf(&b, "cpus: %d\n", n)
	}
	if a.rules != "" {
		fmt.Fprintf(&b, "rules:\n  dir: %q\n", a.rules)
	}
	return b.String()
}

// writeConfig writes the gateway's configuration: every check on, DNS at
// the test server, greylisting in Redis with no built-in allow list (the
// load's network is allowed through the greylist store instead), upstream
// to the sink, connection limits above the idle test, and o's settings of
// the gateway (pass cache, UDP socket reuse, cpus).
func (e *env) writeConfig(withRules bool, maxConns int, o options) error {
	addr, err := freePort()
	if err != nil {
		return err
	}
	e.gatewayAddr = addr
	e.decisionsLog = filepath.Join(e.work, "decisions.log")
	tmp := filepath.Join(e.work, "tmp")
	os.MkdirAll(tmp, 0o755)
	rules := ""
	if withRules {
		e.rulesDir = filepath.Join(e.root, "rules")
		rules = e.rulesDir
	}
	text := configYAML(configAddrs{gateway: addr, sink: e.sinkAddr, dns: e.dns.Addr(), redis: e.redis.Addr,
		decisions: e.decisionsLog, tmp: tmp, rules: rules}, maxConns, o)
	e.configPath = filepath.Join(e.work, "gatewayd.yaml")
	if err := os.WriteFile(e.configPath, []byte(text), 0o644); err != nil {
		return err
	}
	out, err := exec.Command(e.gatewayBin, "check", "-config", e.configPath).CombinedOutput()
	if err != nil {
		return fmt.Errorf("gatewayd check: %v: %s", err, out)
	}
	return nil
}

// greylistAllow allows the load's network in the greylist store, through
// the daemon's own admin command.
func (e *env) greylistAllow() error {
	out, err := exec.Command(e.gatewayBin, "greylist", "allow", "-redis", e.redis.Addr, "-for", "1h", loadNetwork).CombinedOutput()
	if err != nil {
		return fmt.Errorf("gatewayd greylist allow: %v: %s", err, out)
	}
	e.logf("greylist allow: %s", strings.TrimSpace(string(out)))
	return nil
}

func (e *env) startGateway() error {
	cmd := exec.Command(e.gatewayBin, "-config", e.configPath)
	cmd.Env = os.Environ()
	if e.pprofBuilt {
		a, err := freePort()
		if err != nil {
			return err
		}
		e.pprofAddr = a
		cmd.Env = append(cmd.Env, "GATEWAYD_BENCH_PPROF="+a)
		if e.memProfile {
			cmd.Env = append(cmd.Env, "GATEWAYD_BENCH_MEMPROFILE=1")
		}
	}
	errf, err := os.Create(filepath.Join(e.work, "gatewayd.stderr"))
	if err != nil {
		return err
	}
	cmd.Stderr = errf
	cmd.Stdout = errf
	p, err := e.start("gatewayd", cmd, false, false)
	if err != nil {
		return err
	}
	e.gateway = p
	if err := waitDial(e.gatewayAddr, 20*time.Second, p.done); err != nil {
		return fmt.Errorf("gatewayd: %w\n%s", err, tail(filepath.Join(e.work, "gatewayd.stderr"), 20))
	}
	if e.pprofAddr != "" {
		if err := waitDial(e.pprofAddr, 5*time.Second, p.done); err != nil {
			e.note("pprof endpoint did not come up: %v", err)
			e.pprofAddr = ""
		}
	}
	return nil
}

func (e *env) pprofGet(path string) ([]byte, error) {
	if e.pprofAddr == "" {
		return nil, errors.New("no pprof endpoint")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+e.pprofAddr+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("%s: %s %s", path, resp.Status, b)
	}
	return b, err
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ---- /proc

// cpuTicks returns utime+stime of pid in clock ticks.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("bad /proc/PID/stat")
	}
	f := strings.Fields(s[i+1:])
	// After the command: state is field 3; utime and stime are 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("short /proc/PID/stat")
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("bad /proc/PID/stat")
	}
	return u + st, nil
}

// clockTicks is USER_HZ, 100 on every Linux ABI Go supports.
const clockTicks = 100

// procStatus returns a field of /proc/PID/status in kB (or as a count).
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// machineCPU returns the busy and total jiffies of all CPUs (/proc/stat).
func machineCPU() (busy, total int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

// ownTicks is the CPU time of the benchmark's long-lived processes: us
// (the DNS server), the gateway, the sink and redis-server.
func (e *env) ownTicks() int64 {
	var t int64
	pids := []int{os.Getpid()}
	if e.gateway != nil {
		pids = append(pids, e.gateway.cmd.Process.Pid)
	}
	if e.sink != nil {
		pids = append(pids, e.sink.cmd.Process.Pid)
	}
	if e.redisPID == 0 && e.redis != nil {
		e.redisPID = findPID("redis-server", strconv.Itoa(e.redis.Port))
	}
	if e.redisPID > 0 {
		pids = append(pids, e.redisPID)
	}
	for _, p := range pids {
		n, _ := cpuTicks(p)
		t += n
	}
	return t
}

// findPID finds a process whose command line holds both words.
func findPID(a, b string) int {
	ents, _ := os.ReadDir("/proc")
	for _, d := range ents {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		cl, _ := os.ReadFile("/proc/" + d.Name() + "/cmdline")
		s := strings.ReplaceAll(string(cl), "\x00", " ")
		if strings.Contains(s, a) && strings.Contains(s, b) {
			return pid
		}
	}
	return -1
}
