package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// checkLoopback refuses a target that is not on this machine's loopback.
// prepareLoad checks what every load mode is given: a loopback target, the
// source addresses, at least one connection; and raises the file limit.
func prepareLoad(addr, src string, conc, n int) ([]netip.Addr, error) {
	if err := checkLoopback(addr); err != nil {
		return nil, err
	}
	srcs, err := parseSources(src)
	if err != nil {
		return nil, err
	}
	if conc < 1 || n < 1 {
		return nil, errors.New("-c and -n must be at least 1")
	}
	raiseNoFile()
	return srcs, nil
}

func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-addr %q: %w", addr, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.Unmap().IsLoopback() {
		return fmt.Errorf("-addr %q: only loopback addresses (127.0.0.0/8, ::1) are allowed", addr)
	}
	return nil
}

// parseSources parses -src: "" (let the kernel choose), one address, a
// comma-separated list, or a range "127.0.0.10-127.0.0.209". Every address
// must be loopback.
func parseSources(s string) ([]netip.Addr, error) {
	if s == "" {
		return nil, nil
	}
	var out []netip.Addr
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if lo, hi, ok := strings.Cut(part, "-"); ok {
			a, err1 := netip.ParseAddr(lo)
			b, err2 := netip.ParseAddr(hi)
			if err1 != nil || err2 != nil || b.Less(a) {
				return nil, fmt.Errorf("-src: bad range %q", part)
			}
			for x := a; ; x = x.Next() {
				out = append(out, x)
				if x == b || len(out) > 1<<16 {
					break
				}
			}
			continue
		}
		a, err := netip.ParseAddr(part)
		if err != nil {
			return nil, fmt.Errorf("-src: %w", err)
		}
		out = append(out, a)
	}
	for _, a := range out {
		if !a.IsLoopback() {
			return nil, fmt.Errorf("-src: %s is not a loopback address", a)
		}
	}
	return out, nil
}

// dialer returns the dialer for connection number i: bound to one of srcs
// (round robin) when any are given.
func dialer(srcs []netip.Addr, i int, timeout time.Duration) *net.Dialer {
	d := &net.Dialer{Timeout: timeout}
	if len(srcs) > 0 {
		d.LocalAddr = &net.TCPAddr{IP: srcs[i%len(srcs)].AsSlice()}
	}
	return d
}

// readReply reads one SMTP reply, multi-line or not, and returns its code
// and its last line (without CRLF). The line is valid until the next read.
func readReply(r *bufio.Reader) (int, []byte, error) {
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return 0, nil, errors.New("reply line too long")
			}
			return 0, nil, err
		}
		if len(line) < 4 {
			return 0, line, fmt.Errorf("malformed reply %q", line)
		}
		code := int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
		if code < 100 || code > 599 {
			return 0, line, fmt.Errorf("malformed reply %q", line)
		}
		if line[3] == '-' {
			continue
		}
		return code, trimCRLF(line), nil
	}
}

// readEHLO reads the EHLO reply and reports whether it offers PIPELINING.
func readEHLO(r *bufio.Reader) (code int, pipelining bool, err error) {
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return 0, false, err
		}
		if len(line) < 4 {
			return 0, false, fmt.Errorf("malformed reply %q", line)
		}
		code = int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
		if strings.EqualFold(strings.TrimSpace(string(line[4:])), "PIPELINING") {
			pipelining = true
		}
		if line[3] != '-' {
			return code, pipelining, nil
		}
	}
}

func trimCRLF(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// latency is a summary of per-message latencies, in microseconds.
type latency struct {
	Count int     `json:"count"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

func summarize(d []time.Duration) latency {
	if len(d) == 0 {
		return latency{}
	}
	slices.Sort(d)
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	us := func(x time.Duration) float64 { return float64(x.Nanoseconds()) / 1e3 }
	pct := func(p float64) float64 {
		i := int(p*float64(len(d)-1) + 0.5)
		return us(d[i])
	}
	return latency{Count: len(d), Mean: us(sum / time.Duration(len(d))), P50: pct(0.50), P90: pct(0.90), P99: pct(0.99), Max: us(d[len(d)-1])}
}

// cpuTimes returns this process's user and system CPU seconds.
func cpuTimes() (user, sys float64) {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0, 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime), tv(ru.Stime)
}

// codeCounts counts replies (or transport errors) by a short key.
type codeCounts map[string]int

func (c codeCounts) add(code int) { c[strconv.Itoa(code)]++ }

func writeJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	return enc.Encode(v)
}

// raiseNoFile raises the soft RLIMIT_NOFILE to the hard limit (the Go
// runtime does it too, but only for itself; be explicit).
func raiseNoFile() {
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil && rl.Cur < rl.Max {
		rl.Cur = rl.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
}
