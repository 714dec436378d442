package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type sendResult struct {
	Mode        string     `json:"mode"` // "send"
	Addr        string     `json:"addr"`
	Concurrency int        `json:"concurrency"`
	PerConn     int        `json:"per_conn"`
	Size        int        `json:"size"` // octets of the message as sent (stuffed, with the final dot)
	Pipelining  bool       `json:"pipelining"`
	Messages    int        `json:"messages"` // accepted: 2xx after the final dot
	Failed      int        `json:"failed"`
	Connections int        `json:"connections"`
	ElapsedS    float64    `json:"elapsed_s"`
	Rate        float64    `json:"rate"` // accepted messages per second
	Latency     latency    `json:"latency_us"`
	Failures    codeCounts `json:"failures,omitempty"` // by reply code, or "io"
	FirstError  string     `json:"first_error,omitempty"`
	UserCPUS    float64    `json:"user_cpu_s"`
	SysCPUS     float64    `json:"sys_cpu_s"`
}

type sender struct {
	addr       string
	n          int64
	perConn    int
	msg        []byte // dot-stuffed, CRLF, ending in ".\r\n"
	envelope   []byte // "MAIL FROM:<..>\r\nRCPT TO:<..>\r\n"
	mailLine   []byte
	rcptLine   []byte
	ehlo       []byte
	srcs       []netip.Addr
	pipelining bool
	timeout    time.Duration
	maxErrors  int64

	next    atomic.Int64 // messages claimed
	dials   atomic.Int64 // connections attempted: picks the source address
	conns   atomic.Int64
	errs    atomic.Int64
	stopped atomic.Bool

	mu         sync.Mutex
	failures   codeCounts
	firstError string
	lat        []time.Duration
	accepted   int
	pipeSeen   bool
}

func runSend(args []string) error {
	fs := flag.NewFlagSet("smtpload send", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:2525", "server address (loopback only)")
	conc := fs.Int("c", 10, "concurrent sessions")
	n := fs.Int("n", 5000, "messages to send in all")
	perConn := fs.Int("per-conn", 1, "messages per connection (1: a new connection for each message)")
	size := fs.Int("size", 4096, "message size in octets, when -msgfile is not given")
	msgFile := fs.String("msgfile", "", "message to send (header and body; LF or CRLF line ends); it is dot-stuffed here")
	from := fs.String("from", "load@sender.test", "envelope sender")
	to := fs.String("to", "user@example.com", "envelope recipient")
	helo := fs.String("helo", "load.client.test", "EHLO name")
	src := fs.String("src", "", "local source addresses: one, a comma list or a range (127.0.0.10-127.0.0.209)")
	pipe := fs.Bool("pipelining", true, "pipeline MAIL, RCPT and DATA when the server offers PIPELINING")
	timeout := fs.Duration("timeout", 30*time.Second, "deadline of each connect and each transaction")
	maxErrors := fs.Int("max-errors", 100, "stop after this many failed messages")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *perConn < 1 {
		return errors.New("-per-conn must be at least 1")
	}
	srcs, err := prepareLoad(*addr, *src, *conc, *n)
	if err != nil {
		return err
	}
	var raw []byte
	if *msgFile != "" {
		raw, err = os.ReadFile(*msgFile)
		if err != nil {
			return err
		}
	} else {
		raw = generateMessage(*from, *to, *size)
	}
	s := &sender{
		addr: *addr, n: int64(*n), perConn: *perConn,
		msg:        stuff(raw),
		mailLine:   []byte("MAIL FROM:<" + *from + ">\r\n"),
		rcptLine:   []byte("RCPT TO:<" + *to + ">\r\n"),
		ehlo:       []byte("EHLO " + *helo + "\r\n"),
		srcs:       srcs,
		pipelining: *pipe,
		timeout:    *timeout,
		maxErrors:  int64(*maxErrors),
		failures:   codeCounts{},
		lat:        make([]time.Duration, 0, *n),
	}
	s.envelope = append(append(append([]byte(nil), s.mailLine...), s.rcptLine...), "DATA\r\n"...)

	u0, s0 := cpuTimes()
	start := time.Now()
	var wg sync.WaitGroup
	for range *conc {
		wg.Go(s.worker)
	}
	wg.Wait()
	elapsed := time.Since(start)
	u1, s1 := cpuTimes()

	res := sendResult{
		Mode: "send", Addr: s.addr, Concurrency: *conc, PerConn: s.perConn, Size: len(s.msg),
		Pipelining: s.pipeSeen && s.pipelining,
		Messages:   s.accepted, Failed: int(s.errs.Load()), Connections: int(s.conns.Load()),
		ElapsedS: elapsed.Seconds(), Rate: float64(s.accepted) / elapsed.Seconds(),
		Latency: summarize(s.lat), Failures: s.failures, FirstError: s.firstError,
		UserCPUS: u1 - u0, SysCPUS: s1 - s0,
	}
	if len(res.Failures) == 0 {
		res.Failures = nil
	}
	return writeJSON(res)
}

// claim takes the next message to send; false when all are taken.
func (s *sender) claim() bool {
	if s.stopped.Load() {
		return false
	}
	return s.next.Add(1) <= s.n
}

func (s *sender) fail(key string, err error) {
	s.mu.Lock()
	s.failures[key]++
	if s.firstError == "" && err != nil {
		s.firstError = err.Error()
	}
	s.mu.Unlock()
	if s.errs.Add(1) >= s.maxErrors {
		s.stopped.Store(true)
	}
}

func (s *sender) worker() {
	lat := make([]time.Duration, 0, 1024)
	accepted := 0
	defer func() {
		s.mu.Lock()
		s.lat = append(s.lat, lat...)
		s.accepted += accepted
		s.mu.Unlock()
	}()
	r := bufio.NewReaderSize(nil, 4096)
	for {
		if !s.claim() {
			return
		}
		t0 := time.Now()
		c, pipe, err := s.open(int(s.dials.Add(1)), r)
		if err != nil {
			s.fail("io", err)
			continue
		}
		pipe = pipe && s.pipelining
		ok := true
		for k := 0; ok; k++ {
			if k > 0 && (k >= s.perConn || !s.claim()) {
				break
			}
			ts := time.Now()
			if k == 0 && s.perConn == 1 {
				ts = t0
			}
			c.SetDeadline(ts.Add(s.timeout))
			var code int
			code, err = s.transaction(c, r, pipe)
			switch {
			case err != nil:
				s.fail("io", err)
				ok = false
			case code/100 != 2:
				s.fail(fmt.Sprint(code), fmt.Errorf("final reply %d", code))
			default:
				lat = append(lat, time.Since(ts))
				accepted++
			}
		}
		if ok {
			c.SetDeadline(time.Now().Add(s.timeout))
			c.Write([]byte("QUIT\r\n"))
			readReply(r)
		}
		c.Close()
	}
}

// open connects, reads the greeting and says EHLO.
func (s *sender) open(i int, r *bufio.Reader) (net.Conn, bool, error) {
	c, err := dialer(s.srcs, i, s.timeout).Dial("tcp", s.addr)
	if err != nil {
		return nil, false, err
	}
	s.conns.Add(1)
	c.SetDeadline(time.Now().Add(s.timeout))
	r.Reset(c)
	code, line, err := readReply(r)
	if err == nil && code != 220 {
		err = fmt.Errorf("greeting: %s", line)
	}
	if err != nil {
		c.Close()
		return nil, false, err
	}
	if _, err := c.Write(s.ehlo); err != nil {
		c.Close()
		return nil, false, err
	}
	code, pipe, err := readEHLO(r)
	if err == nil && code != 250 {
		err = fmt.Errorf("EHLO: %d", code)
	}
	if err != nil {
		c.Close()
		return nil, false, err
	}
	if pipe {
		s.mu.Lock()
		s.pipeSeen = true
		s.mu.Unlock()
	}
	return c, pipe, nil
}

// transaction sends one message and returns the reply code to the final
// dot (or the first refusal). An error is a transport failure: the
// connection is not usable any more.
func (s *sender) transaction(c net.Conn, r *bufio.Reader, pipe bool) (int, error) {
	var mailCode, rcptCode, dataCode int
	var err error
	if pipe {
		if _, err = c.Write(s.envelope); err != nil {
			return 0, err
		}
		if mailCode, _, err = readReply(r); err != nil {
			return 0, err
		}
		if rcptCode, _, err = readReply(r); err != nil {
			return 0, err
		}
		if dataCode, _, err = readReply(r); err != nil {
			return 0, err
		}
	} else {
		step := func(line []byte) (int, error) {
			if _, err := c.Write(line); err != nil {
				return 0, err
			}
			code, _, err := readReply(r)
			return code, err
		}
		if mailCode, err = step(s.mailLine); err != nil {
			return 0, err
		}
		if mailCode/100 != 2 {
			return mailCode, s.rset(c, r)
		}
		if rcptCode, err = step(s.rcptLine); err != nil {
			return 0, err
		}
		if rcptCode/100 != 2 {
			return rcptCode, s.rset(c, r)
		}
		if dataCode, err = step([]byte("DATA\r\n")); err != nil {
			return 0, err
		}
	}
	switch {
	case mailCode/100 != 2:
		return mailCode, s.rset(c, r)
	case rcptCode/100 != 2:
		return rcptCode, s.rset(c, r)
	case dataCode != 354:
		return dataCode, s.rset(c, r)
	}
	if _, err := c.Write(s.msg); err != nil {
		return 0, err
	}
	code, _, err := readReply(r)
	return code, err
}

func (s *sender) rset(c net.Conn, r *bufio.Reader) error {
	if _, err := c.Write([]byte("RSET\r\n")); err != nil {
		return err
	}
	_, _, err := readReply(r)
	return err
}

// stuff turns a message into DATA octets: CRLF line ends, dot-stuffing
// (RFC 5321 section 4.5.2) and the final ".\r\n".
func stuff(raw []byte) []byte {
	raw = bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n"))
	raw = bytes.TrimSuffix(raw, []byte("\n"))
	var b bytes.Buffer
	b.Grow(len(raw) + len(raw)/40 + 8)
	for _, line := range bytes.Split(raw, []byte("\n")) {
		if len(line) > 0 && line[0] == '.' {
			b.WriteByte('.')
		}
		b.Write(line)
		b.WriteString("\r\n")
	}
	b.WriteString(".\r\n")
	return b.Bytes()
}

// generateMessage builds a plain message of about size octets.
func generateMessage(from, to string, size int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: smtpload test message\r\nDate: %s\r\nMessage-ID: <smtpload.%d@%s>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
		from, to, time.Now().Format(time.RFC1123Z), time.Now().UnixNano(), "smtpload.test")
	line := "The quick brown fox jumps over the lazy dog. 0123456789 abcdefghijklmnopqrstu\r\n"
	for b.Len()+len(line) <= size {
		b.WriteString(line)
	}
	if rest := size - b.Len(); rest > 2 {
		b.WriteString(strings.Repeat("x", rest-2) + "\r\n")
	}
	return []byte(b.String())
}
