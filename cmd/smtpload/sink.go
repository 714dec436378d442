package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"
)

// sinkStats are the sink's counters, printed as JSON when it stops.
type sinkStats struct {
	Mode     string  `json:"mode"` // "sink"
	Addr     string  `json:"addr"`
	Sessions int64   `json:"sessions"`
	Messages int64   `json:"messages"`
	Bytes    int64   `json:"bytes"`
	UserCPUS float64 `json:"user_cpu_s"`
	SysCPUS  float64 `json:"sys_cpu_s"`
}

type sinkBackend struct {
	sessions, messages, bytes atomic.Int64
}

func (b *sinkBackend) NewSession(*smtp.Conn) (smtp.Session, error) {
	b.sessions.Add(1)
	return sinkSession{b}, nil
}

type sinkSession struct{ b *sinkBackend }

func (sinkSession) Reset()                               {}
func (sinkSession) Logout() error                        { return nil }
func (sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s sinkSession) Data(r io.Reader) error {
	n, err := io.Copy(io.Discard, r)
	s.b.bytes.Add(n)
	if err != nil {
		return err
	}
	s.b.messages.Add(1)
	return nil
}

type quietLog struct{}

func (quietLog) Printf(string, ...interface{}) {}
func (quietLog) Println(...interface{})        {}

func runSink(args []string) error {
	fs := flag.NewFlagSet("smtpload sink", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address (loopback only; port 0 picks one)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := checkLoopback(*addr); err != nil {
		return err
	}
	raiseNoFile()
	be := &sinkBackend{}
	srv := smtp.NewServer(be)
	srv.Domain = "sink.test"
	srv.MaxRecipients = 10000
	srv.MaxMessageBytes = 0 // no limit: a sink takes everything
	srv.ReadTimeout = 10 * time.Minute
	srv.WriteTimeout = time.Minute
	srv.EnableSMTPUTF8 = true
	srv.ErrorLog = quietLog{}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	fmt.Printf("LISTEN %s\n", l.Addr())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case <-sigs:
	case err := <-errc:
		return err
	}
	srv.Close()
	u, s := cpuTimes()
	return writeJSON(sinkStats{Mode: "sink", Addr: l.Addr().String(), Sessions: be.sessions.Load(),
		Messages: be.messages.Load(), Bytes: be.bytes.Load(), UserCPUS: u, SysCPUS: s})
}
