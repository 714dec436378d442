package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type idleResult struct {
	Mode       string  `json:"mode"` // "idle"
	Addr       string  `json:"addr"`
	Open       int     `json:"open"` // greeted and EHLO answered, now held
	Failed     int     `json:"failed"`
	ElapsedS   float64 `json:"elapsed_s"`
	FirstError string  `json:"first_error,omitempty"`
}

func runIdle(args []string) error {
	fs := flag.NewFlagSet("smtpload idle", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:2525", "server address (loopback only)")
	n := fs.Int("n", 10000, "connections to open and hold")
	conc := fs.Int("c", 100, "connections being opened at a time")
	src := fs.String("src", "127.0.0.10-127.0.0.209", "local source addresses: one, a comma list or a range")
	helo := fs.String("helo", "idle.client.test", "EHLO name")
	timeout := fs.Duration("timeout", 30*time.Second, "deadline to open each connection")
	if err := fs.Parse(args); err != nil {
		return err
	}
	srcs, err := prepareLoad(*addr, *src, *conc, *n)
	if err != nil {
		return err
	}
	ehlo := []byte("EHLO " + *helo + "\r\n")
	conns := make([]net.Conn, *n)
	var next atomic.Int64
	var failed atomic.Int64
	var mu sync.Mutex
	firstErr := ""
	start := time.Now()
	var wg sync.WaitGroup
	for range *conc {
		wg.Go(func() {
			r := bufio.NewReaderSize(nil, 1024)
			for {
				i := int(next.Add(1)) - 1
				if i >= *n {
					return
				}
				c, err := func() (net.Conn, error) {
					c, err := dialer(srcs, i, *timeout).Dial("tcp", *addr)
					if err != nil {
						return nil, err
					}
					c.SetDeadline(time.Now().Add(*timeout))
					r.Reset(c)
					if code, line, err := readReply(r); err != nil || code != 220 {
						c.Close()
						return nil, fmt.Errorf("greeting: %s %v", line, err)
					}
					if _, err := c.Write(ehlo); err != nil {
						c.Close()
						return nil, err
					}
					if code, _, err := readEHLO(r); err != nil || code != 250 {
						c.Close()
						return nil, fmt.Errorf("EHLO: %d %v", code, err)
					}
					c.SetDeadline(time.Time{})
					return c, nil
				}()
				if err != nil {
					failed.Add(1)
					mu.Lock()
					if firstErr == "" {
						firstErr = err.Error()
					}
					mu.Unlock()
					continue
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	open := 0
	for _, c := range conns {
		if c != nil {
			open++
		}
	}
	if err := writeJSON(idleResult{Mode: "idle", Addr: *addr, Open: open, Failed: int(failed.Load()),
		ElapsedS: time.Since(start).Seconds(), FirstError: firstErr}); err != nil {
		return err
	}
	// Hold the connections until stdin closes or a signal comes.
	done := make(chan struct{}, 2)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() { io.Copy(io.Discard, os.Stdin); done <- struct{}{} }()
	go func() { <-sigs; done <- struct{}{} }()
	<-done
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	return nil
}
