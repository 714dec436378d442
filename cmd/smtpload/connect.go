package main

import (
	"bufio"
	"flag"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

type connectResult struct {
	Mode        string     `json:"mode"` // "connect"
	Addr        string     `json:"addr"`
	Concurrency int        `json:"concurrency"`
	Connections int        `json:"connections"` // greetings read
	Failed      int        `json:"failed"`      // connects or reads that failed
	ElapsedS    float64    `json:"elapsed_s"`
	Rate        float64    `json:"rate"` // greetings per second
	Codes       codeCounts `json:"codes"`
	Expected    int        `json:"expected"` // greetings with the -expect code
	ExpectRate  float64    `json:"expect_rate"`
	Latency     latency    `json:"latency_us"` // dial to greeting
	FirstError  string     `json:"first_error,omitempty"`
	UserCPUS    float64    `json:"user_cpu_s"`
	SysCPUS     float64    `json:"sys_cpu_s"`
}

func runConnect(args []string) error {
	fs := flag.NewFlagSet("smtpload connect", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:2525", "server address (loopback only)")
	conc := fs.Int("c", 10, "concurrent connections")
	n := fs.Int("n", 5000, "connections in all")
	src := fs.String("src", "", "local source addresses: one, a comma list or a range")
	expect := fs.Int("expect", 0, "greeting code to count separately (e.g. 554 or 220)")
	quit := fs.Bool("quit", false, "send QUIT and read its reply before hanging up")
	linger0 := fs.Bool("linger0", true, "hang up with SO_LINGER 0 (RST): no TIME_WAIT piles up on either side, so thousands of connections per second measure the server, not the kernel's port search")
	timeout := fs.Duration("timeout", 10*time.Second, "deadline of each connection")
	if err := fs.Parse(args); err != nil {
		return err
	}
	srcs, err := prepareLoad(*addr, *src, *conc, *n)
	if err != nil {
		return err
	}
	var next atomic.Int64
	var mu sync.Mutex
	codes := codeCounts{}
	lats := make([]time.Duration, 0, *n)
	failed := 0
	firstErr := ""
	u0, s0 := cpuTimes()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range *conc {
		wg.Go(func() {
			r := bufio.NewReaderSize(nil, 1024)
			local := codeCounts{}
			var ll []time.Duration
			var lf int
			var le string
			for {
				i := next.Add(1)
				if i > int64(*n) {
					break
				}
				t0 := time.Now()
				c, err := dialer(srcs, w*1_000_003+int(i), *timeout).Dial("tcp", *addr)
				if err != nil {
					lf++
					if le == "" {
						le = err.Error()
					}
					continue
				}
				c.SetDeadline(t0.Add(*timeout))
				r.Reset(c)
				code, _, err := readReply(r)
				if err != nil {
					lf++
					if le == "" {
						le = err.Error()
					}
					c.Close()
					continue
				}
				ll = append(ll, time.Since(t0))
				local.add(code)
				if *quit {
					c.Write([]byte("QUIT\r\n"))
					readReply(r)
				}
				if tc, ok := c.(*net.TCPConn); ok && *linger0 {
					tc.SetLinger(0)
				}
				c.Close()
			}
			mu.Lock()
			for k, v := range local {
				codes[k] += v
			}
			lats = append(lats, ll...)
			failed += lf
			if firstErr == "" {
				firstErr = le
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	u1, s1 := cpuTimes()
	total := 0
	for _, v := range codes {
		total += v
	}
	exp := 0
	if *expect != 0 {
		exp = codes[itoa(*expect)]
	}
	return writeJSON(connectResult{
		Mode: "connect", Addr: *addr, Concurrency: *conc, Connections: total, Failed: failed,
		ElapsedS: elapsed.Seconds(), Rate: float64(total) / elapsed.Seconds(), Codes: codes,
		Expected: exp, ExpectRate: float64(exp) / elapsed.Seconds(),
		Latency: summarize(lats), FirstError: firstErr, UserCPUS: u1 - u0, SysCPUS: s1 - s0,
	})
}

func itoa(n int) string { return strconv.Itoa(n) }
