package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"time"
)

// Results of smtpload, as it prints them.
type latency struct {
	Count int     `json:"count"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

type sendResult struct {
	Tool        string         `json:"tool"`
	Messages    int            `json:"messages"`
	Failed      int            `json:"failed"`
	Connections int            `json:"connections"`
	ElapsedS    float64        `json:"elapsed_s"`
	Rate        float64        `json:"rate"`
	Latency     latency        `json:"latency_us"`
	Failures    map[string]int `json:"failures,omitempty"`
	FirstError  string         `json:"first_error,omitempty"`
	UserCPUS    float64        `json:"user_cpu_s"`
	SysCPUS     float64        `json:"sys_cpu_s"`
	// Filled in by benchrun: the machine's CPU use over the load (1.0 =
	// every CPU busy), and the sink's CPU seconds.
	MachineBusy float64 `json:"machine_busy"`
	SinkCPUS    float64 `json:"sink_cpu_s"`
	DNSQueries  int     `json:"dns_queries"` // received by the test DNS server during the load
	// CPU seconds used during the load by processes that are not part of
	// the benchmark (other work on the machine skews every figure).
	ForeignCPUS float64 `json:"foreign_cpu_s"`
}

type connectResult struct {
	Connections int            `json:"connections"`
	Failed      int            `json:"failed"`
	ElapsedS    float64        `json:"elapsed_s"`
	Rate        float64        `json:"rate"`
	Codes       map[string]int `json:"codes"`
	Expected    int            `json:"expected"`
	ExpectRate  float64        `json:"expect_rate"`
	Latency     latency        `json:"latency_us"`
	FirstError  string         `json:"first_error,omitempty"`
}

type idleResult struct {
	Open       int     `json:"open"`
	Failed     int     `json:"failed"`
	ElapsedS   float64 `json:"elapsed_s"`
	FirstError string  `json:"first_error,omitempty"`
}

func (e *env) smtpload(v any, args ...string) error {
	cmd := exec.Command(e.smtploadBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	e.logf("smtpload %v", args)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("smtpload %v: %v: %s", args, err, errb.String())
	}
	if err := json.Unmarshal(out.Bytes(), v); err != nil {
		return fmt.Errorf("smtpload %v: %v: %q", args, err, out.String())
	}
	return nil
}

// send runs one load of n messages, perConn per connection, with conc
// sessions, and measures it (rate, CPU of the sender and the sink, the
// machine's load). With Postfix's smtp-source the load is smtp-source's;
// it reports no per-message latency, which addLatency then takes from an
// identical smtpload run, outside the measured window. src is the range of
// source addresses (loadSources, or a cold range, which only smtpload can
// bind: smtp-source has no such option).
func (e *env) send(addr string, n, conc, perConn int, src string) (r sendResult, err error) {
	busy0, total0 := machineCPU()
	sink0, _ := cpuTicks(e.sink.cmd.Process.Pid)
	q0 := e.dns.Queries()
	own0 := e.ownTicks()
	defer func() {
		busy1, _ := machineCPU()
		r.ForeignCPUS = max(0, float64(busy1-busy0)/clockTicks-float64(e.ownTicks()-own0)/clockTicks-r.UserCPUS-r.SysCPUS)
		r.DNSQueries = e.dns.Queries() - q0
		busy1, total1 := machineCPU()
		sink1, _ := cpuTicks(e.sink.cmd.Process.Pid)
		if total1 > total0 {
			r.MachineBusy = float64(busy1-busy0) / float64(total1-total0)
		}
		r.SinkCPUS = float64(sink1-sink0) / clockTicks
	}()
	if e.sourceKind != "postfix" || src != loadSources {
		if err := e.smtpload(&r, e.sendArgs(addr, n, conc, perConn, src)...); err != nil {
			return r, err
		}
		r.Tool = "smtpload"
		return r, nil
	}
	// smtp-source: -d keeps each session's connection for all its messages
	// (it cannot do "K per connection"); -F sends our signed message.
	sargs := []string{"-s", strconv.Itoa(conc), "-m", strconv.Itoa(n), "-f", senderAddr, "-t", rcptAddr,
		"-M", loadHelo, "-F", e.msgFileLF}
	if perConn > 1 {
		sargs = append(sargs, "-d")
	}
	sargs = append(sargs, addr)
	start := time.Now()
	cmd := exec.Command("smtp-source", sargs...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return r, fmt.Errorf("smtp-source %v: %v: %s", sargs, err, out)
	}
	el := time.Since(start).Seconds()
	r.Tool = "postfix smtp-source"
	r.ElapsedS, r.Rate, r.Messages = el, float64(n)/el, n
	r.UserCPUS, r.SysCPUS = cmd.ProcessState.UserTime().Seconds(), cmd.ProcessState.SystemTime().Seconds()
	return r, nil
}

// addLatency fills in the latency of a smtp-source load from an identical
// smtpload run; with smtpload as the source the load measured it already.
func (e *env) addLatency(r *sendResult, addr string, n, conc, perConn int) error {
	if e.sourceKind != "postfix" {
		return nil
	}
	var l sendResult
	if err := e.smtpload(&l, e.sendArgs(addr, n, conc, perConn, loadSources)...); err != nil {
		return err
	}
	r.Latency = l.Latency
	r.Tool = "postfix smtp-source (rate, CPU), smtpload (latency)"
	return nil
}

func (e *env) sendArgs(addr string, n, conc, perConn int, src string) []string {
	return []string{"send", "-addr", addr, "-n", strconv.Itoa(n), "-c", strconv.Itoa(conc),
		"-per-conn", strconv.Itoa(perConn), "-msgfile", e.msgFile, "-from", senderAddr, "-to", rcptAddr,
		"-helo", loadHelo, "-src", src}
}

// coldRange returns the k-th block of n addresses of the /12 network
// (127.16.0.0/12 or 127.32.0.0/12) as an smtpload -src range: each cold
// load takes addresses no earlier load used, so its DNS answers are not
// cached yet.
func coldRange(network string, k, n int) string {
	p := netip.MustParsePrefix(network)
	base := p.Addr().As4()
	start := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	size := uint32(1) << (32 - p.Bits())
	n = max(1, min(n, int(size)))
	// Past the last whole block, the blocks repeat (and their answers may
	// be cached by then).
	first := start + uint32(k%(int(size)/n)*n)
	last := first + uint32(n) - 1
	ip := func(v uint32) string {
		return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}).String()
	}
	return ip(first) + "-" + ip(last)
}

func (e *env) connect(addr string, n, conc int, src string, expect int) (connectResult, error) {
	var r connectResult
	err := e.smtpload(&r, "connect", "-addr", addr, "-n", strconv.Itoa(n), "-c", strconv.Itoa(conc),
		"-src", src, "-expect", strconv.Itoa(expect))
	return r, err
}
