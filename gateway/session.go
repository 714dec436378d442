package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mxgate/gatewayd/checks"
	"github.com/mxgate/gatewayd/policy"
)

var errInterrupted = errors.New("session interrupted for shutdown")

// session is one SMTP connection.
type session struct {
	srv  *Server
	cfg  *Config
	up   Upstream
	hook Hook
	doms map[string]bool

	raw  net.Conn      // as accepted (maybe a PROXY protocol wrapper)
	conn net.Conn      // raw, or TLS over raw, reading through deadlines
	dc   *deadlineConn // the deadline wrapper conn reads through

	// run's place between calls: greeted once the connect stage passed,
	// waited when run returned to wait for the client, waitErr what the
	// wait ended with.
	greeted, waited bool
	// closing: a 421 was written; the session ends once it is sent (RFC
	// 5321 section 3.8: 421 closes the transmission channel).
	closing bool
	waitErr error
	// countedIP is what the server counted this connection under (see
	// limitKey; released as it was counted, whatever a hook does to State).
	countedIP netip.Prefix

	// r and w are taken from pools while the session has something to
	// read or write, and given back while it waits for a command: an idle
	// session holds no buffers (see park).
	r   *bufio.Reader
	w   *bufio.Writer
	pre prefixReader

	st      State
	errs    int
	scratch []byte

	// Deadline state, shared with the reader wrapper and Shutdown.
	mu          sync.Mutex
	idle        bool // waiting for a command outside a transaction
	interrupted bool
	// parked: waiting for the client in a read that Server.sweep may cut
	// short, to move the wait onto a goroutine with a small stack (see
	// park); parkTick the sweep count when it began; handoff that a sweep
	// cut it short.
	parked, handoff bool
	parkTick        uint32
	// keepRD: the next read keeps the idle deadline the cut wait had (a
	// wait handed off goes on in a read that would set it anew).
	keepRD       bool
	dataDeadline time.Time
	// lineDeadline ends the reading of one command line: it must come
	// whole within the idle timeout of its first octets, or a client
	// sending one octet at a time (each read renews the idle timeout)
	// would hold the session for ever (Postfix's smtpd_per_record_deadline).
	lineDeadline time.Time
	// lineArm: park is waiting through TLS, whose Read reads on until a
	// whole record is in; the first octets to come start the line
	// deadline (set and read by the session's goroutine only).
	lineArm bool

	// Transaction state.
	tx         UpstreamTx
	txBroken   error // transport error with the upstream during this transaction
	rcptTried  int   // RCPT commands that passed syntax checks
	rcptSeen   bool  // a RCPT command came, whatever its fate (DATA: 554, not 503)
	dropped    []Address
	dropAll    bool
	txStart    time.Time
	mailParams MailOpts
	hold       *holdBuffer

	// panicLogged: a panic cut a decision short, and its line has the
	// reply run's recover sends.
	panicLogged bool
}

// deadlineConn renews the read deadline before every read: the idle timeout
// from now, cut short by the whole-DATA deadline while data is read. It sits
// under TLS, so reads inside a TLS session renew it too.
type deadlineConn struct {
	net.Conn
	s *session
	// rd and wd are the deadlines last set. A deadline later than the
	// one set by less than a 64th of the idle timeout is not set again:
	// setting one is a runtime timer update per read or write (about 2%
	// of a relayed message's CPU), and the idle timeout stays exact to
	// within that 64th.
	rd, wd time.Time
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	s := c.s
	s.mu.Lock()
	if s.interrupted {
		s.mu.Unlock()
		return 0, errInterrupted
	}
	d := time.Now().Add(s.cfg.IdleTimeout)
	// exact: the DATA deadline binds, and is set as it is. Kept up to a
	// 64th of the idle timeout earlier (closeEnough), the idle deadline
	// set last would end a sender that never paused before the DATA
	// deadline, answered and logged as idle (cmdData tells the two apart
	// by the clock).
	exact := false
	if !s.dataDeadline.IsZero() && s.dataDeadline.Before(d) {
		d, exact = s.dataDeadline, true
	}
	if !s.lineDeadline.IsZero() && s.lineDeadline.Before(d) {
		d, exact = s.lineDeadline, false
	}
	if s.keepRD {
		s.keepRD = false
		d, exact = c.rd, false
	}
	if exact && !c.rd.Equal(d) || !exact && !closeEnough(c.rd, d, s.cfg.IdleTimeout) {
		c.Conn.SetReadDeadline(d)
		c.rd = d
	}
	arm := s.lineArm && s.lineDeadline.IsZero()
	s.mu.Unlock()
	n, err := c.Conn.Read(p)
	if err != nil || arm && n > 0 {
		s.mu.Lock()
		if err != nil && s.interrupted {
			err = errInterrupted
		}
		if arm && n > 0 {
			s.lineDeadline = time.Now().Add(s.cfg.IdleTimeout)
		}
		s.mu.Unlock()
	}
	return n, err
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	if d := time.Now().Add(c.s.cfg.IdleTimeout); !closeEnough(c.wd, d, c.s.cfg.IdleTimeout) {
		c.Conn.SetWriteDeadline(d)
		c.wd = d
	}
	return c.Conn.Write(p)
}

// closeEnough reports whether the deadline set is at most a 64th of the
// idle timeout before the one wanted (never after it).
func closeEnough(set, want time.Time, idle time.Duration) bool {
	return !set.IsZero() && !want.Before(set) && want.Sub(set) < idle/64
}

func newSession(srv *Server, cfg *Config, c net.Conn, client netip.AddrPort) *session {
	s := &session{
		srv:  srv,
		cfg:  cfg,
		up:   srv.upstream.Load().u,
		hook: srv.hook.Load().h,
		doms: *srv.domains.Load(),
		raw:  c,
	}
	s.dc = &deadlineConn{Conn: c, s: s}
	s.conn = s.dc
	local, _ := netip.ParseAddrPort(c.LocalAddr().String())
	s.st = State{SessionID: newID(), Client: client, Local: local}
	return s
}

// interruptIfIdle makes an idle session answer 421 and end; a session in a
// transaction finishes it first and ends at its next command.
func (s *session) interruptIfIdle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.idle {
		s.interrupted = true
		s.raw.SetReadDeadline(time.Now())
	}
}

func (s *session) setIdle(idle bool) {
	s.mu.Lock()
	s.idle = idle
	if idle && s.srv.draining.Load() {
		// Shutdown may have looked at this session just before it went
		// idle, and passed it by: interrupt it as Shutdown would have.
		s.interrupted = true
		s.raw.SetReadDeadline(time.Now())
	}
	s.mu.Unlock()
}

var idEncoding = base32.NewEncoding("0123456789ABCDEFGHJKLMNPQRSTVWXY").WithPadding(base32.NoPadding)

// newID returns a 16-character random identifier.
func newID() string {
	var b [10]byte
	rand.Read(b[:])
	return idEncoding.EncodeToString(b[:])
}

var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4096) }}
	// dataReaderPool holds the readers message data is read with (see
	// growReader).
	dataReaderPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, dataReadSize) }}
)

// dataReadSize is the reader of a session reading message data: a read
// per 32 KiB rather than per 4 KiB (a 1 MB message in about 32 reads
// instead of 256). Only sessions inside DATA hold one; it goes back to
// its pool at the session's next wait, as the command reader does.
const dataReadSize = 32 << 10

// growReader reads on with a data reader, when nothing is buffered that
// the change would lose (a client waits for 354 before it sends data, so
// nothing is).
func (s *session) growReader() {
	if s.r == nil || s.r.Size() >= dataReadSize || s.r.Buffered() > 0 || s.pre.off < s.pre.n {
		return
	}
	big := dataReaderPool.Get().(*bufio.Reader)
	big.Reset(&s.pre)
	s.r.Reset(nil)
	readerPool.Put(s.r)
	s.r = big
}

// prefixReader gives back what park read, then reads the connection.
type prefixReader struct {
	b      [parkRead]byte
	off, n int
	r      io.Reader
}

// lineBuffered says whether a whole command line is already in memory:
// in the reader, or in what park read that the reader has not taken yet.
func (s *session) lineBuffered() bool {
	b, _ := s.r.Peek(s.r.Buffered())
	return bytes.IndexByte(b, '\n') >= 0 || bytes.IndexByte(s.pre.b[s.pre.off:s.pre.n], '\n') >= 0
}

// parkRead is what an idle session reads without a pooled buffer: enough
// for a pipelined MAIL, RCPT and DATA, so that a session in steady use
// reads each batch of commands with one read, while an idle one holds a
// quarter of a KiB instead of a 4 KiB reader.
const parkRead = 256

func (p *prefixReader) Read(b []byte) (int, error) {
	if p.off < p.n {
		k := copy(b, p.b[p.off:p.n])
		p.off += k
		return k, nil
	}
	return p.r.Read(b)
}

// park waits for the client's next octets holding no buffer: the reader
// and writer go back to their pools (the writer flushed), the goroutine
// waits in a read into the session's own small prefix, and a pooled
// reader is taken when data arrives. Thousands of idle connections so cost
// their goroutine and little else.
//
// The goroutine is the larger part: its stack grew to 8 KiB judging the
// client, and the runtime shrinks a waiting goroutine's stack only to 4
// KiB (a stack is halved only while less than a quarter of it, counting
// 800 octets of reserve, is in use). So a wait that may be handed off
// (may) is marked parked: a session still waiting at Server.sweep's
// second look has its read cut short, and park reports handedOff for
// Server.serve to go on waiting on a new goroutine, whose 2 KiB stack
// holds the wait. A session in steady use never waits that long and pays
// two uncontended locks per wait.
func (s *session) park(may bool) (handedOff bool, err error) {
	if err := s.flush(); err != nil {
		return false, err
	}
	s.releaseBuffers()
	s.pre.r = s.conn
	if may {
		s.mu.Lock()
		s.parked, s.parkTick = true, s.srv.sweeps.Load()
		s.mu.Unlock()
	}
	// Through TLS the read goes on until a whole record is in: a record
	// trickled an octet at a time must come within the line deadline of
	// its first octets, as a line in clear text does.
	s.lineArm = s.conn != s.dc
	n, err := s.conn.Read(s.pre.b[:])
	s.lineArm = false
	if may {
		s.mu.Lock()
		cut := s.handoff
		s.parked, s.handoff = false, false
		if cut && !s.interrupted {
			// The sweep moved the read deadline to now: put back the
			// one the idle timeout set (a Read keeps one that is close
			// enough, see closeEnough).
			s.dc.Conn.SetReadDeadline(s.dc.rd)
			s.keepRD = n == 0
		}
		s.mu.Unlock()
		if cut && n == 0 && isTimeout(err) {
			return true, nil
		}
	}
	s.pre.off, s.pre.n = 0, n
	if n > 0 {
		err = nil
	}
	if err != nil {
		return false, err
	}
	s.r = readerPool.Get().(*bufio.Reader)
	s.r.Reset(&s.pre)
	return false, nil
}

// waitHandedOff is the wait of the goroutine a wait was handed off to. On
// plain TCP it waits in the fewest frames a wait can take, so that they
// fit the new goroutine's first stack; the read that follows may grow it.
// A wait that ends in an error (the idle timeout, an interrupt) ends as a
// read would have: a read now would set the idle deadline anew.
func (s *session) waitHandedOff() {
	if sc, ok := s.raw.(*net.TCPConn); ok && s.conn == s.dc {
		if err := waitReadable(sc); err != nil {
			s.mu.Lock()
			if s.interrupted {
				err = errInterrupted
			}
			s.mu.Unlock()
			s.waitErr = err
			return
		}
	}
	s.wait(false)
}

// cutPark is Server.sweep's look at the session: a wait that began before
// the sweep before last (so at least one sweep period ago) is cut short.
func (s *session) cutPark(sweep uint32) {
	s.mu.Lock()
	if s.parked && !s.handoff && !s.interrupted && sweep-s.parkTick >= 2 {
		s.handoff = true
		s.raw.SetReadDeadline(time.Now())
	}
	s.mu.Unlock()
}

// buffered is how many octets the client sent that are read from the
// socket but not yet taken as a command.
func (s *session) buffered() int {
	n := s.pre.n - s.pre.off
	if s.r != nil {
		n += s.r.Buffered()
	}
	return n
}

func (s *session) releaseBuffers() {
	s.pre.off, s.pre.n = 0, 0
	if s.r != nil {
		s.r.Reset(nil)
		if s.r.Size() >= dataReadSize {
			dataReaderPool.Put(s.r)
		} else {
			readerPool.Put(s.r)
		}
		s.r = nil
	}
	if s.w != nil {
		s.w.Reset(nil)
		writerPool.Put(s.w)
		s.w = nil
	}
}

// writer returns the session's writer, taking one from the pool.
func (s *session) writer() *bufio.Writer {
	if s.w == nil {
		s.w = writerPool.Get().(*bufio.Writer)
		s.w.Reset(s.conn)
	}
	return s.w
}

// reply queues one reply line; replies go out when the client's pipelined
// input is used up (RFC 2920) or at a stage that must be answered now.
func (s *session) reply(code int, enh, text string) {
	if code == 421 {
		s.closing = true
	}
	w := s.writer()
	w.WriteString(strconv.Itoa(code))
	w.WriteByte(' ')
	if enh != "" {
		w.WriteString(enh)
		w.WriteByte(' ')
	}
	w.WriteString(text)
	w.WriteString("\r\n")
}

func (s *session) writeReply(r policy.Reply) { s.reply(r.Code, r.Enhanced, r.Text) }

// fail answers a refused command and counts it toward the error cut-off.
func (s *session) fail(code int, enh, text string) {
	s.reply(code, enh, text)
	s.errs++
}

func (s *session) failReply(r policy.Reply) { s.fail(r.Code, r.Enhanced, r.Text) }

func (s *session) flush() error {
	if s.w == nil {
		return nil
	}
	return s.w.Flush()
}

func (s *session) ctx() context.Context { return s.srv.baseCtx }

// decide asks the hook, recovering from a hook's panic as a temporary
// failure so that a bug in a check never accepts or loses mail.
func (s *session) decide(stage policy.Stage) (v policy.Verdict) {
	defer func() {
		if p := recover(); p != nil {
			s.srv.logger.Error("hook panic", "stage", stage, "panic", fmt.Sprint(p), "session", s.st.SessionID)
			v = policy.Verdict{Action: policy.ActionDefer,
				Reply:   policy.Reply{Code: 451, Enhanced: "4.3.0", Text: "Local error in processing, try again later"},
				Reasons: []policy.Reason{{Rule: "internal_error"}}}
		}
	}()
	v = s.hook.Decide(s.ctx(), stage, &s.st)
	if v.Action == "" {
		v.Action = policy.ActionContinue
	}
	return v
}

func (s *session) logDecision(d *Decision) {
	s.srv.metrics.decision(d.Stage, d.Action)
	s.srv.decisions.log(&s.st, d)
}

// defaultReply fills in the reply of a terminal verdict that has none.
func defaultReply(v policy.Verdict, stage policy.Stage) policy.Reply {
	if !v.Reply.IsZero() {
		return v.Reply
	}
	switch v.Action {
	case policy.ActionReject:
		if stage == policy.StageConnect {
			return policy.Reply{Code: 554, Enhanced: "5.7.1", Text: "Connection refused"}
		}
		return policy.Reply{Code: 550, Enhanced: "5.7.1", Text: "Rejected by policy"}
	case policy.ActionDefer:
		if stage == policy.StageConnect {
			return policy.Reply{Code: 421, Enhanced: "4.7.0", Text: "Try again later"}
		}
		return policy.Reply{Code: 451, Enhanced: "4.7.1", Text: "Try again later"}
	case policy.ActionGreylist:
		if stage == policy.StageConnect {
			return policy.Reply{Code: 421, Enhanced: "4.7.1", Text: "Greylisted, try again later"}
		}
		return policy.Reply{Code: 451, Enhanced: "4.7.1", Text: "Greylisted, try again later"}
	}
	return policy.Reply{}
}

func (s *session) close() {
	s.endTx()
	s.raw.Close()
	s.releaseBuffers()
}

// run serves the session until it must wait for the client's next
// command with nothing buffered (true: the caller calls wait, then run
// again) or the session is over (false). The caller waits, not run, so
// that an idle session's goroutine waits in a shallow stack (see
// Server.handle).
func (s *session) run() (more bool) {
	defer func() {
		if p := recover(); p != nil {
			s.srv.logger.Error("session panic", "panic", fmt.Sprint(p), "session", s.st.SessionID)
			if s.panicLogged {
				// The decision the panic cut short has its line, with
				// this reply (see panicked).
				s.writeReply(localErrorReply)
			} else {
				s.cutOff("local_error", localErrorReply)
			}
			s.flush()
			more = false
		}
	}()
	if !s.greeted {
		s.greeted = true
		if !s.greet() {
			return false
		}
	}
	for {
		if !s.waited {
			if s.errs > s.cfg.MaxErrors {
				r := policy.Reply{Code: 421, Enhanced: "4.7.0", Text: "Too many errors, closing connection"}
				s.logDecision(&Decision{Stage: s.stageNow(), Action: policy.ActionDefer, Reply: r,
					Reasons: []policy.Reason{{Rule: "too_many_errors", Detail: strconv.Itoa(s.errs) + " refused commands"}}})
				s.writeReply(r)
				s.flush()
				return false
			}
			inTx := s.st.HasFrom
			if !inTx && s.srv.draining.Load() {
				// Cut off by the shutdown as an interrupted idle session
				// is: the same reply, the same line.
				s.cutOff("shutdown", policy.Reply{Code: 421, Enhanced: "4.3.2", Text: "Service shutting down, try again later"})
				s.flush()
				return false
			}
			s.setIdle(!inTx)
			if s.r == nil || s.r.Buffered() == 0 {
				// Nothing pipelined: answer, and wait without buffers.
				s.waited = true
				return true
			}
		}
		s.waited = false
		var line []byte
		err := s.waitErr
		s.waitErr = nil
		lineTimeout := false
		if err != nil && !s.lineDeadline.IsZero() {
			// The wait ended after a record's first octets (see park):
			// cut by the line deadline.
			s.mu.Lock()
			lineTimeout = isTimeout(err)
			s.lineDeadline = time.Time{}
			s.mu.Unlock()
		}
		if err == nil {
			if s.lineBuffered() {
				// The whole line is here: no read, no deadline (not even
				// one the wait's first octets started, see park).
				if !s.lineDeadline.IsZero() {
					s.mu.Lock()
					s.lineDeadline = time.Time{}
					s.mu.Unlock()
				}
				line, err = readCommandLine(s.r, s.cfg.MaxLineLength, &s.scratch)
			} else {
				s.mu.Lock()
				if s.lineDeadline.IsZero() {
					s.lineDeadline = time.Now().Add(s.cfg.IdleTimeout)
				}
				s.mu.Unlock()
				line, err = readCommandLine(s.r, s.cfg.MaxLineLength, &s.scratch)
				s.mu.Lock()
				// Every read of the line wanted the line deadline, so any
				// timeout here is its (closeEnough may have kept a deadline
				// up to a 64th of the idle timeout earlier: the clock is no
				// guide).
				lineTimeout = err != nil && isTimeout(err)
				s.lineDeadline = time.Time{}
				s.mu.Unlock()
			}
		}
		s.setIdle(false)
		if err != nil {
			switch {
			case errors.Is(err, errLineTooLong):
				s.fail(500, "5.5.2", "Line too long")
				continue
			case errors.Is(err, errBareLine):
				s.fail(500, "5.5.2", "Command line must end with CRLF, bare CR or LF not allowed (RFC 5321 section 2.3.8)")
				continue
			case errors.Is(err, errInterrupted):
				s.cutOff("shutdown", policy.Reply{Code: 421, Enhanced: "4.3.2", Text: "Service shutting down, try again later"})
			case errors.Is(err, errWaitPanic):
				s.cutOff("local_error", localErrorReply)
			case lineTimeout:
				r := policy.Reply{Code: 421, Enhanced: "4.4.2", Text: "Command line took longer than allowed, closing connection"}
				s.logDecision(&Decision{Stage: s.stageNow(), Action: policy.ActionDefer, Reply: r,
					Reasons: []policy.Reason{{Rule: "idle_timeout", Detail: "command line not complete within limits.idle_timeout"}}})
				s.writeReply(r)
			case isTimeout(err):
				s.cutOff("idle_timeout", policy.Reply{Code: 421, Enhanced: "4.4.2", Text: "Idle timeout, closing connection"})
			default:
				return false
			}
			s.flush()
			return false
		}
		if !s.command(string(line)) || s.closing {
			s.flush()
			return false
		}
	}
}

// cutOff ends the session with r, and its decision line: the last line
// of a transaction cut off must not be its last accepted recipient.
func (s *session) cutOff(rule string, r policy.Reply) {
	s.logDecision(&Decision{Stage: s.stageNow(), Action: policy.ActionDefer, Reply: r,
		Reasons: []policy.Reason{{Rule: rule}}})
	s.writeReply(r)
}

// localErrorReply ends a session that panicked.
var localErrorReply = policy.Reply{Code: 421, Enhanced: "4.3.0", Text: "Local error, closing connection"}

// panicked makes d, a decision a panic cut short before its reply, the
// line of the reply run's recover sends instead (one line, the reply
// sent), and marks it logged.
func (s *session) panicked(d *Decision, p any) {
	d.Action = policy.ActionDefer
	d.Reply = localErrorReply
	d.Reasons = append(d.Reasons, policy.Reason{Rule: "local_error", Detail: policy.Truncate("panic: "+fmt.Sprint(p), 200)})
	s.panicLogged = true
}

// errWaitPanic is what wait leaves for run when the wait panicked: run
// answers it as it answers a panic of its own.
var errWaitPanic = errors.New("session panic while waiting")

// wait parks the session until the client sends (see park); run reads
// what came, or the error. handedOff says the wait was cut short to go on
// on another goroutine (may allows that).
func (s *session) wait(may bool) (handedOff bool) {
	defer func() {
		if p := recover(); p != nil {
			s.srv.logger.Error("session panic", "panic", fmt.Sprint(p), "session", s.st.SessionID)
			s.waitErr, handedOff = errWaitPanic, false
		}
	}()
	handedOff, s.waitErr = s.park(may)
	return handedOff
}

// greet judges the connection and greets the client; false when it was
// refused.
func (s *session) greet() bool {
	start := time.Now()
	v := s.decide(policy.StageConnect)
	switch v.Action {
	case policy.ActionReject, policy.ActionDefer, policy.ActionGreylist, policy.ActionDrop, policy.ActionQuarantine:
		r := defaultReply(v, policy.StageConnect)
		if v.Action != policy.ActionReject && v.Action != policy.ActionDefer && v.Action != policy.ActionGreylist {
			// drop and quarantine mean nothing before a message: refuse.
			r = policy.Reply{Code: 554, Enhanced: "5.7.1", Text: "Connection refused"}
		}
		if r.Temporary() {
			r.Code = 421 // the only 4xx a greeting may carry (RFC 5321 section 3.1)
		} else {
			r.Code = 554
		}
		s.srv.metrics.connRefused.Inc()
		s.logDecision(&Decision{Stage: policy.StageConnect, Action: v.Action, Reply: r, Reasons: v.Reasons, Score: v.Score, Duration: time.Since(start)})
		s.writeReply(r)
		s.flush()
		return false
	}
	s.srv.metrics.connAccepted.Inc()
	s.reply(220, "", s.cfg.Hostname+" ESMTP")
	s.flush()

	return true
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// stageNow names the stage the session is in, for log lines that are not a
// stage's own decision.
func (s *session) stageNow() policy.Stage {
	switch {
	case s.st.HasFrom:
		return policy.StageRcpt
	case s.st.Helo != "":
		return policy.StageMail
	}
	return policy.StageHelo
}

// command handles one command line; false ends the session.
func (s *session) command(line string) bool {
	// RFC 5321 section 4.1.1: receivers SHOULD tolerate trailing white
	// space before the CRLF ("DATA\t", "RSET  "), as Postfix does.
	verb, arg := splitCommand(strings.TrimRight(line, " \t"))
	switch verb {
	case "EHLO", "HELO":
		s.cmdHelo(verb == "EHLO", arg)
	case "MAIL":
		s.cmdMail(arg)
	case "RCPT":
		s.cmdRcpt(arg)
	case "DATA":
		return s.cmdData(arg)
	case "RSET":
		if arg != "" {
			s.fail(501, "5.5.4", "Syntax: RSET")
			break
		}
		s.endTx()
		s.reply(250, "2.0.0", "OK")
	case "NOOP":
		s.reply(250, "2.0.0", "OK")
	case "QUIT":
		s.reply(221, "2.0.0", "Bye")
		return false
	case "VRFY", "EXPN":
		s.reply(502, "5.5.1", verb+" command is disabled")
	case "HELP":
		s.reply(214, "2.0.0", "See RFC 5321")
	case "STARTTLS":
		return s.cmdStartTLS(arg)
	case "BDAT", "AUTH", "ETRN", "TURN", "ATRN", "SEND", "SOML", "SAML":
		s.fail(502, "5.5.1", verb+" command not implemented")
	case "":
		s.fail(500, "5.5.2", "Syntax error, command unrecognized")
	default:
		s.fail(500, "5.5.1", "Command unrecognized")
	}
	return true
}

func (s *session) cmdHelo(ehlo bool, arg string) {
	name := strings.TrimSpace(arg)
	if name == "" || strings.ContainsAny(name, " \t") && !ehlo {
		if ehlo {
			s.fail(501, "5.5.4", "Syntax: EHLO hostname")
		} else {
			s.fail(501, "5.5.4", "Syntax: HELO hostname")
		}
		return
	}
	if i := strings.IndexAny(name, " \t"); i >= 0 {
		name = name[:i] // EHLO with trailing words: keep the name
	}
	s.endTx()
	s.st.Helo = name
	s.st.ESMTP = ehlo
	start := time.Now()
	v := s.decide(policy.StageHelo)
	if v.Action == policy.ActionReject || v.Action == policy.ActionDefer || v.Action == policy.ActionGreylist {
		r := defaultReply(v, policy.StageHelo)
		s.failReply(r)
		s.logDecision(&Decision{Stage: policy.StageHelo, Action: v.Action, Reply: r, Reasons: v.Reasons, Score: v.Score, Duration: time.Since(start)})
		s.st.Helo = ""
		return
	}
	if !ehlo {
		s.reply(250, "", s.cfg.Hostname)
		return
	}
	w := s.writer()
	w.WriteString("250-" + s.cfg.Hostname + "\r\n")
	w.WriteString("250-PIPELINING\r\n")
	w.WriteString("250-SIZE " + strconv.FormatInt(s.cfg.MaxMessageSize, 10) + "\r\n")
	w.WriteString("250-8BITMIME\r\n")
	w.WriteString("250-SMTPUTF8\r\n")
	if s.cfg.TLS != nil && s.st.TLS == nil {
		w.WriteString("250-STARTTLS\r\n")
	}
	w.WriteString("250 ENHANCEDSTATUSCODES\r\n")
}

func (s *session) cmdStartTLS(arg string) bool {
	switch {
	case s.cfg.TLS == nil:
		s.fail(502, "5.5.1", "STARTTLS not available")
		return true
	case s.st.TLS != nil:
		s.fail(503, "5.5.1", "TLS already active")
		return true
	case arg != "":
		s.fail(501, "5.5.4", "Syntax: STARTTLS")
		return true
	}
	s.reply(220, "2.0.0", "Ready to start TLS")
	if err := s.flush(); err != nil {
		return false
	}
	if n := s.buffered(); n > 0 {
		// As Postfix's "improper command pipelining after STARTTLS": a
		// client that does this is broken or attempting an injection.
		s.srv.logger.Warn("commands pipelined in clear text after STARTTLS dropped",
			"session", s.st.SessionID, "client", s.st.Client.String(), "octets", n)
	}
	s.releaseBuffers() // plaintext pipelined after STARTTLS is dropped here
	// Anything the client pipelined after STARTTLS was sent in clear text
	// and must not be read as commands inside TLS (CVE-2011-0411): the new
	// reader starts empty.
	s.dc = &deadlineConn{Conn: s.raw, s: s}
	tc := tls.Server(s.dc, s.cfg.TLS)
	hctx, cancel := context.WithTimeout(s.ctx(), s.cfg.IdleTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		s.srv.logger.Info("TLS handshake failed", "session", s.st.SessionID, "client", s.st.Client.String(), "err", err)
		return false
	}
	state := tc.ConnectionState()
	s.conn = tc
	s.endTx()
	s.st.TLS = &state
	s.st.Helo = "" // RFC 3207 section 4.2: forget what the client said
	s.st.ESMTP = false
	return true
}

func (s *session) cmdMail(arg string) {
	switch {
	case s.st.Helo == "":
		s.fail(503, "5.5.1", "Send EHLO or HELO first")
		return
	case s.st.HasFrom:
		s.fail(503, "5.5.1", "Sender already given")
		return
	}
	rest, ok := cutPrefixFold(arg, "FROM:")
	if !ok {
		s.fail(501, "5.5.4", "Syntax: MAIL FROM:<address>")
		return
	}
	from, params, err := parsePathArg(rest, true)
	if err != nil {
		if errors.Is(err, errDomainSyntax) || strings.HasPrefix(strings.TrimSpace(rest), "<") {
			s.fail(501, "5.1.7", "Bad sender address syntax")
		} else {
			s.fail(501, "5.5.4", "Syntax: MAIL FROM:<address>")
		}
		return
	}
	ps, err := parseParams(params)
	if err != nil {
		s.fail(501, "5.5.4", "Bad MAIL parameter syntax")
		return
	}
	var opts MailOpts
	for i, p := range ps {
		for _, q := range ps[:i] {
			if q.key == p.key {
				s.fail(501, "5.5.4", "MAIL parameter "+policy.Truncate(p.key, 64)+" given twice")
				return
			}
		}
		switch p.key {
		case "SIZE":
			n, ok := parseSize(p.value)
			if !ok {
				s.fail(501, "5.5.4", "Bad SIZE value")
				return
			}
			if n > s.cfg.MaxMessageSize {
				// A limit, not a syntax error: logged, as at DATA.
				r := policy.Reply{Code: 552, Enhanced: "5.3.4", Text: "Message size exceeds fixed maximum message size"}
				s.failReply(r)
				s.st.From, s.st.HasFrom = from, true // for the line's mail_from
				s.logDecision(&Decision{Stage: policy.StageMail, Action: policy.ActionReject, Reply: r,
					Reasons: []policy.Reason{{Rule: "size_limit", Detail: "SIZE=" + strconv.FormatInt(n, 10)}}})
				s.st.From, s.st.HasFrom = Address{}, false
				return
			}
			opts.Size = n
		case "BODY":
			switch strings.ToUpper(p.value) {
			case "7BIT":
			case "8BITMIME":
				opts.EightBit = true // passed on (RFC 6152)
			default:
				s.fail(555, "5.5.4", "Unsupported BODY value")
				return
			}
		case "SMTPUTF8":
			if p.value != "" {
				s.fail(501, "5.5.4", "SMTPUTF8 takes no value")
				return
			}
			opts.UTF8 = true
		default:
			s.fail(555, "5.5.4", "Unsupported MAIL parameter "+policy.Truncate(p.key, 64))
			return
		}
	}
	if !opts.UTF8 && (from.UTF8() || !isASCII(rest)) {
		// The local part, or a domain given as U-labels (kept as
		// A-labels, which UTF8 does not see): without SMTPUTF8 the
		// envelope is ASCII (RFC 6531 section 3.3), as Postfix holds.
		s.fail(553, "5.6.7", "Non-ASCII address needs SMTPUTF8")
		return
	}
	s.st.QueueID = newID()
	s.st.From = from
	s.st.HasFrom = true
	s.st.UTF8 = opts.UTF8
	s.mailParams = opts
	s.txStart = time.Now()
	v := s.decide(policy.StageMail)
	switch v.Action {
	case policy.ActionReject, policy.ActionDefer, policy.ActionGreylist:
		r := defaultReply(v, policy.StageMail)
		s.failReply(r)
		s.logDecision(&Decision{Stage: policy.StageMail, Action: v.Action, Reply: r, Reasons: v.Reasons, Score: v.Score, Duration: time.Since(s.txStart)})
		s.endTx()
		return
	case policy.ActionDrop:
		s.dropAll = true
		r := policy.Reply{Code: 250, Enhanced: "2.1.0", Text: "Sender OK"}
		s.logDecision(&Decision{Stage: policy.StageMail, Action: v.Action, Reply: r, Reasons: v.Reasons, Score: v.Score, Duration: time.Since(s.txStart)})
	}
	s.reply(250, "2.1.0", "Sender OK")
}

// rcptDomainOK reports whether we accept mail for the domain.
func (s *session) rcptDomainOK(d string) bool { return s.doms[d] }

// rcptOvershoot is how many recipients past max_recipients a transaction
// may name before each further one counts as an error.
const rcptOvershoot = 1000

func (s *session) cmdRcpt(arg string) {
	if !s.st.HasFrom {
		s.fail(503, "5.5.1", "Send MAIL first")
		return
	}
	s.rcptSeen = true
	rest, ok := cutPrefixFold(arg, "TO:")
	if !ok {
		s.fail(501, "5.5.4", "Syntax: RCPT TO:<address>")
		return
	}
	var to Address
	var params string
	var err error
	if t := strings.TrimSpace(rest); len(t) >= 12 && strings.EqualFold(t[:12], "<postmaster>") && len(s.cfg.Domains) > 0 {
		// RFC 5321 section 4.5.1: "Postmaster" without a domain must work.
		to, params = Address{Local: "postmaster", Domain: s.cfg.Domains[0]}, strings.TrimSpace(t[12:])
	} else {
		to, params, err = parsePathArg(rest, false)
		if err != nil {
			s.fail(501, "5.1.3", "Bad recipient address syntax")
			return
		}
	}
	if params != "" {
		ps, err := parseParams(params)
		if err != nil {
			s.fail(501, "5.5.4", "Bad RCPT parameter syntax")
			return
		}
		s.fail(555, "5.5.4", "Unsupported RCPT parameter "+policy.Truncate(ps[0].key, 64))
		return
	}
	s.rcptTried++
	if len(s.st.Rcpts)+len(s.dropped) >= s.cfg.MaxRecipients {
		// Not a client error (RFC 5321 section 4.5.3.1.10: the client
		// sends the rest in another transaction): not counted towards
		// max_errors, which would cut off a message of many recipients,
		// up to rcptOvershoot past the limit (as Postfix's
		// smtpd_recipient_overshoot_limit); past that, each counts.
		r := policy.Reply{Code: 452, Enhanced: "4.5.3", Text: "Too many recipients"}
		if s.rcptTried-s.cfg.MaxRecipients > rcptOvershoot {
			s.errs++
		}
		s.logDecision(&Decision{Stage: policy.StageRcpt, Rcpt: to.String(), Action: policy.ActionDefer, Reply: r,
			Reasons: []policy.Reason{{Rule: "too_many_recipients", Detail: strconv.Itoa(s.cfg.MaxRecipients) + " per message"}}})
		s.writeReply(r)
		return
	}
	if !s.st.UTF8 && (to.UTF8() || !isASCII(rest)) {
		s.fail(553, "5.6.7", "Non-ASCII address needs SMTPUTF8")
		return
	}
	start := time.Now()
	s.st.Rcpt = to
	d := &Decision{Stage: policy.StageRcpt, Rcpt: to.String()}
	defer func() {
		p := recover()
		if p != nil {
			s.panicked(d, p)
		}
		s.st.Rcpt = Address{}
		d.Duration = time.Since(start)
		s.logDecision(d)
		if p != nil {
			panic(p) // for run to answer
		}
	}()
	// Relay protection comes before any hook and no verdict lifts it.
	if hasRoutingChars(to.Local) || to.Route != "" && !s.rcptDomainOK(to.Domain) {
		d.Action, d.Reply = policy.ActionReject, policy.Reply{Code: 550, Enhanced: "5.7.1", Text: "Relay access denied: routing characters in recipient"}
		d.Reasons = []policy.Reason{{Rule: "relay_denied", Detail: "routing characters in local part"}}
		s.failReply(d.Reply)
		return
	}
	if !s.rcptDomainOK(to.Domain) {
		d.Action, d.Reply = policy.ActionReject, policy.Reply{Code: 550, Enhanced: "5.7.1", Text: "Relay access denied: we do not accept mail for " + policy.Truncate(to.Domain, 200)}
		d.Reasons = []policy.Reason{{Rule: "relay_denied", Detail: "domain not accepted"}}
		s.failReply(d.Reply)
		return
	}
	v := s.decide(policy.StageRcpt)
	d.Action, d.Reasons, d.Score = v.Action, v.Reasons, v.Score
	switch v.Action {
	case policy.ActionReject, policy.ActionDefer, policy.ActionGreylist:
		d.Reply = defaultReply(v, policy.StageRcpt)
		s.failReply(d.Reply)
		return
	case policy.ActionDrop:
		s.dropped = append(s.dropped, to)
		d.Reply = policy.Reply{Code: 250, Enhanced: "2.1.5", Text: "Recipient OK"}
		s.writeReply(d.Reply)
		return
	}
	if s.dropAll {
		s.dropped = append(s.dropped, to)
		d.Action = policy.ActionDrop
		d.Reply = policy.Reply{Code: 250, Enhanced: "2.1.5", Text: "Recipient OK"}
		s.writeReply(d.Reply)
		return
	}
	// Forward the recipient to the internal MTA now: its answer is ours.
	r, up, err := s.upstreamRcpt(to)
	d.Upstream = up
	if err != nil {
		d.Action = policy.ActionDefer
		d.Reply = policy.Reply{Code: 451, Enhanced: "4.4.1", Text: "Internal mail server unavailable, try again later"}
		s.failReply(d.Reply)
		return
	}
	d.Reply = r
	if r.Code/100 != 2 {
		if r.Temporary() {
			d.Action = policy.ActionDefer
		} else {
			d.Action = policy.ActionReject
		}
		s.failReply(r)
		return
	}
	if d.Action == policy.ActionContinue {
		d.Action = policy.ActionAccept
	}
	s.st.Rcpts = append(s.st.Rcpts, to)
	s.writeReply(r)
}

// upstreamRcpt opens the upstream transaction when needed and forwards one
// recipient.
func (s *session) upstreamRcpt(to Address) (policy.Reply, *UpstreamResult, error) {
	ur := &UpstreamResult{}
	if s.txBroken != nil {
		ur.Error = s.txBroken.Error()
		return policy.Reply{}, ur, s.txBroken
	}
	// The upstream bounds its own exchanges (connect, command and data
	// timeouts); the context ends them at shutdown.
	if s.tx == nil {
		tx, r, err := s.up.Begin(s.ctx(), s.st.From, s.mailParams)
		if err != nil {
			s.srv.logger.Warn("internal MTA unavailable", "session", s.st.SessionID, "err", err)
			ur.Error = err.Error()
			return policy.Reply{}, ur, err
		}
		if tx == nil {
			ur.Reply = r
			return r, ur, nil
		}
		s.tx = tx
	}
	r, err := s.tx.Rcpt(s.ctx(), to)
	// After Rcpt: a stale pooled connection is replaced inside it, and
	// the line names the MTA that answered (or failed).
	ur.Addr = s.tx.Addr()
	if err != nil {
		s.txBroken = err
		ur.Error = err.Error()
		s.srv.logger.Warn("internal MTA failed at RCPT", "session", s.st.SessionID, "err", err)
		return policy.Reply{}, ur, err
	}
	ur.Reply = r
	return r, ur, nil
}

// endTx ends the transaction: upstream transaction closed (RSET), held
// message removed, state cleared.
func (s *session) endTx() {
	if s.tx != nil {
		s.tx.End()
		s.tx = nil
	}
	if s.hold != nil {
		if err := s.hold.Reset(); err != nil {
			s.srv.logger.Error("removing held message", "err", err)
		}
	}
	s.txBroken = nil
	s.rcptTried = 0
	s.rcptSeen = false
	s.dropped = nil
	s.dropAll = false
	s.mailParams = MailOpts{}
	s.st.QueueID = ""
	s.st.From = Address{}
	s.st.HasFrom = false
	s.st.UTF8 = false
	s.st.Rcpts = nil
	s.st.Header = nil
	s.st.Size = 0
	s.st.Message = nil
	s.st.Auth = checks.AuthResultsInput{IPRev: s.st.Auth.IPRev}
	for k := range s.st.Results {
		if !sessionResults[k] {
			delete(s.st.Results, k)
		}
	}
}

// sessionResults are the check results that describe the client, not a
// transaction: they stay in the log lines of every transaction.
var sessionResults = map[string]bool{"dnsbl": true, "iprev": true, "domainbl_helo": true}

func (s *session) rcptStrings() []string {
	out := make([]string, 0, len(s.st.Rcpts)+len(s.dropped))
	for _, a := range s.st.Rcpts {
		out = append(out, a.String())
	}
	for _, a := range s.dropped {
		out = append(out, a.String())
	}
	return out
}

// cmdData receives and judges the message, then relays it; false ends the
// session (a failed read: nothing after it may be read as a command).
func (s *session) cmdData(arg string) bool {
	switch {
	case !s.st.HasFrom:
		s.fail(503, "5.5.1", "Send MAIL first")
		return true
	case len(s.st.Rcpts) == 0 && len(s.dropped) == 0 && !s.rcptSeen && s.txBroken == nil:
		// No RCPT at all. One refused, even for its syntax, is answered
		// below: 554 no valid recipients (RFC 5321 section 3.3, RFC 2920
		// section 3.1), as Postfix does.
		s.fail(503, "5.5.1", "Send RCPT first")
		return true
	case arg != "":
		s.fail(501, "5.5.4", "Syntax: DATA")
		return true
	case len(s.st.Rcpts) == 0 && len(s.dropped) == 0:
		if s.txBroken != nil {
			s.fail(451, "4.4.1", "Internal mail server unavailable, try again later")
		} else {
			s.fail(554, "5.5.1", "No valid recipients")
		}
		return true
	case s.txBroken != nil:
		// A recipient was accepted, then the internal MTA went away: the
		// sender keeps the message and retries.
		s.fail(451, "4.4.2", "Connection to internal mail server lost, try again later")
		s.logDecision(&Decision{Stage: policy.StageData, Action: policy.ActionDefer, Rcpts: s.rcptStrings(),
			Reply:    policy.Reply{Code: 451, Enhanced: "4.4.2", Text: "Connection to internal mail server lost, try again later"},
			Upstream: &UpstreamResult{Error: s.txBroken.Error()}})
		s.endTx()
		return true
	}
	s.reply(354, "", "End data with <CR><LF>.<CR><LF>")
	if err := s.flush(); err != nil {
		return false
	}
	s.growReader()
	start := time.Now()
	if s.hold == nil {
		s.hold = newHoldBuffer(s.cfg.TempDir, s.cfg.MemoryThreshold)
	}
	s.mu.Lock()
	s.dataDeadline = start.Add(s.cfg.DataTimeout)
	s.mu.Unlock()
	dr := dataReader{r: s.r, w: s.hold, max: s.cfg.MaxMessageSize}
	werr, rerr := dr.run()
	s.mu.Lock()
	s.dataDeadline = time.Time{}
	s.mu.Unlock()
	d := &Decision{Stage: policy.StageData, Rcpts: s.rcptStrings(), Size: dr.size}
	defer func() {
		p := recover()
		if p != nil {
			s.panicked(d, p)
		}
		d.Duration = time.Since(start)
		s.logDecision(d)
		s.endTx()
		if p != nil {
			panic(p) // for run to answer
		}
	}()
	if rerr != nil {
		// The data was not read to its end: the rest of the connection is
		// part of a message, never commands.
		d.Action = policy.ActionDefer
		switch {
		case errors.Is(rerr, errInterrupted):
			d.Reply = policy.Reply{Code: 421, Enhanced: "4.3.2", Text: "Service shutting down, try again later"}
			d.Reasons = []policy.Reason{{Rule: "shutdown"}}
		case isTimeout(rerr) && !time.Now().Before(start.Add(s.cfg.DataTimeout)):
			d.Reply = policy.Reply{Code: 421, Enhanced: "4.4.2", Text: "Message data took longer than allowed, closing connection"}
			d.Reasons = []policy.Reason{{Rule: "data_timeout"}}
		case isTimeout(rerr):
			d.Reply = policy.Reply{Code: 421, Enhanced: "4.4.2", Text: "Idle timeout reading message data, closing connection"}
			d.Reasons = []policy.Reason{{Rule: "idle_timeout"}}
		default:
			d.Reply = policy.Reply{Code: 421, Enhanced: "4.4.2", Text: "Error reading message data"}
			d.Reasons = []policy.Reason{{Rule: "data_read_error", Detail: rerr.Error()}}
		}
		s.writeReply(d.Reply)
		return false
	}
	s.srv.metrics.MessageBytes.Observe(float64(dr.size))
	refuse := func(action policy.Action, r policy.Reply, rule, detail string) bool {
		d.Action, d.Reply = action, r
		d.Reasons = append(d.Reasons, policy.Reason{Rule: rule, Detail: detail})
		s.failReply(r)
		return true
	}
	switch {
	case dr.tooBig:
		return refuse(policy.ActionReject, policy.Reply{Code: 552, Enhanced: "5.3.4", Text: "Message size exceeds fixed maximum message size"}, "size_limit", strconv.FormatInt(dr.size, 10)+" octets")
	case dr.bareLF || dr.bareCR:
		return refuse(policy.ActionReject, policy.Reply{Code: 550, Enhanced: "5.5.2", Text: "Message contains bare CR or LF, lines must end with CRLF (RFC 5321 section 2.3.8)"}, "bare_newline", bareDetail(&dr))
	case dr.nul:
		return refuse(policy.ActionReject, policy.Reply{Code: 550, Enhanced: "5.6.0", Text: "Message contains NUL octets"}, "nul_octet", "")
	case werr != nil:
		s.srv.logger.Error("holding message", "session", s.st.SessionID, "err", werr)
		return refuse(policy.ActionDefer, policy.Reply{Code: 451, Enhanced: "4.3.0", Text: "Local error in processing, try again later"}, "hold_error", werr.Error())
	}

	hdr, err := s.headerSection()
	if errors.Is(err, errHeaderTooLarge) {
		return refuse(policy.ActionReject, policy.Reply{Code: 552, Enhanced: "5.3.4", Text: "Message header section too large"}, "header_limit", err.Error())
	}
	if err != nil {
		// The held message cannot be read back: ours, not the sender's.
		s.srv.logger.Error("reading held message", "session", s.st.SessionID, "err", err)
		return refuse(policy.ActionDefer, policy.Reply{Code: 451, Enhanced: "4.3.0", Text: "Local error in processing, try again later"}, "hold_error", err.Error())
	}
	s.st.Header = hdr
	s.st.Size = dr.size
	held := s.hold
	s.st.Message = held.Reader

	v := s.decide(policy.StageData)
	d.Action, d.Reasons, d.Score = v.Action, v.Reasons, v.Score
	switch v.Action {
	case policy.ActionReject, policy.ActionDefer, policy.ActionGreylist:
		d.Reply = defaultReply(v, policy.StageData)
		s.failReply(d.Reply)
		return true
	case policy.ActionDrop:
		d.Reply = policy.Reply{Code: 250, Enhanced: "2.0.0", Text: "Ok: queued as " + s.st.QueueID}
		s.writeReply(d.Reply)
		return true
	case policy.ActionQuarantine:
		s.quarantine(d, v, hdr, held)
		return true
	}
	if s.tx == nil || len(s.st.Rcpts) == 0 {
		// Every recipient was dropped.
		d.Action = policy.ActionDrop
		d.Reply = policy.Reply{Code: 250, Enhanced: "2.0.0", Text: "Ok: queued as " + s.st.QueueID}
		s.writeReply(d.Reply)
		return true
	}

	msg := s.outgoing(v.Headers, hdr, held)
	ctx, cancel := context.WithTimeout(s.ctx(), s.cfg.DataTimeout+time.Minute)
	t0 := time.Now()
	r, err := s.tx.Data(ctx, msg)
	cancel()
	s.srv.metrics.RelayLatency.Observe(time.Since(t0).Seconds())
	d.Upstream = &UpstreamResult{Addr: s.tx.Addr(), Reply: r}
	if err != nil {
		// No answer from the internal MTA: the message may or may not be
		// there; the sender keeps it and retries (at worst a duplicate,
		// never a loss).
		s.srv.metrics.relayed("failed")
		s.srv.logger.Warn("internal MTA failed at DATA", "session", s.st.SessionID, "err", err)
		d.Upstream.Error = err.Error()
		d.Action = policy.ActionDefer
		d.Reply = policy.Reply{Code: 451, Enhanced: "4.4.2", Text: "Internal mail server did not confirm delivery, try again later"}
		s.failReply(d.Reply)
		return true
	}
	switch {
	case r.Code/100 == 2:
		s.srv.metrics.relayed("ok")
		d.Action = policy.ActionRelay
		d.Reply = policy.Reply{Code: 250, Enhanced: "2.0.0", Text: "Ok: queued as " + s.st.QueueID}
		s.writeReply(d.Reply)
	case r.Temporary():
		s.srv.metrics.relayed("deferred")
		d.Action, d.Reply = policy.ActionDefer, r
		s.failReply(r)
	default:
		s.srv.metrics.relayed("rejected")
		d.Action, d.Reply = policy.ActionReject, r
		s.failReply(r)
	}
	return true
}

// outgoing is the message as it leaves us: our trace and authentication
// fields, the verdict's fields, the sender's header section without forged
// Authentication-Results of ours, then the body, streamed from where it is
// held.
func (s *session) outgoing(extra []policy.Header, hdr []byte, held *holdBuffer) io.Reader {
	var pre strings.Builder
	pre.Grow(1024) // Received and Authentication-Results: one allocation
	ri := receivedInfo{Helo: s.st.Helo, RDNS: s.st.ReverseName, IP: s.st.Client.Addr().String(),
		Host: s.cfg.Hostname, Proto: s.proto(), QueueID: s.st.QueueID, TLS: s.st.TLS,
		When: time.Now(), Software: s.cfg.Software}
	if len(s.st.Rcpts) == 1 {
		ri.Rcpt = s.st.Rcpts[0].String()
	}
	pre.WriteString(receivedField(ri))
	pre.WriteString(checks.AuthenticationResultsField(s.cfg.AuthservID, s.st.Auth))
	for _, h := range extra {
		pre.WriteString(h.Name + ": " + h.Value + "\r\n")
	}
	hdrOut := checks.StripAuthResults(hdr, s.cfg.AuthservID)
	rest := held.Section(int64(len(hdr))) // the empty line and the body
	size := int64(pre.Len()) + int64(len(hdrOut)) + held.Size() - int64(len(hdr))
	return &parts{rs: []io.Reader{strings.NewReader(pre.String()), bytes.NewReader(hdrOut), rest}, size: size}
}

// quarantine delivers the message to the quarantine Maildir instead of the
// internal MTA and answers 250; the upstream transaction is abandoned. A
// failure to write is a 4xx: the sender keeps the message.
func (s *session) quarantine(d *Decision, v policy.Verdict, hdr []byte, held *holdBuffer) {
	q := s.srv.quarantine
	var why []string
	for _, r := range v.Reasons {
		why = append(why, r.Rule)
	}
	extra := append(append([]policy.Header(nil), v.Headers...), policy.Header{Name: "X-Gatewayd-Quarantine",
		Value: "queue id " + s.st.QueueID + "; rules " + strings.Join(why, ", ")})
	var name string
	err := errors.New("no quarantine configured")
	if q != nil {
		name, err = q.Deliver(s.outgoing(extra, hdr, held))
	}
	if err != nil {
		s.srv.logger.Error("quarantine failed", "session", s.st.SessionID, "err", err)
		d.Action = policy.ActionDefer
		d.Reply = policy.Reply{Code: 451, Enhanced: "4.3.0", Text: "Local error in processing, try again later"}
		d.Upstream = &UpstreamResult{Addr: "quarantine", Error: err.Error()}
		s.failReply(d.Reply)
		return
	}
	d.Upstream = &UpstreamResult{Addr: "quarantine:" + q.Path(), Reply: policy.Reply{Code: 250, Text: name}}
	d.Reply = policy.Reply{Code: 250, Enhanced: "2.0.0", Text: "Ok: queued as " + s.st.QueueID}
	s.writeReply(d.Reply)
}

func bareDetail(dr *dataReader) string {
	var parts []string
	if dr.bareLF {
		parts = append(parts, "bare LF")
	}
	if dr.bareCR {
		parts = append(parts, "bare CR")
	}
	return strings.Join(parts, ", ")
}

// proto names the protocol for the Received field (RFC 3848, RFC 6531).
func (s *session) proto() string {
	p := "SMTP"
	if s.st.ESMTP {
		p = "ESMTP"
	}
	if s.st.UTF8 {
		p = "UTF8SMTP"
	}
	if s.st.TLS != nil {
		p += "S"
	}
	return p
}

// errHeaderTooLarge is a header section past maxHeaderSection: the
// sender's fault, unlike a failure to read the held message.
var errHeaderTooLarge = errors.New("header section too large")

// headerSection returns the held message's header fields (each with its
// CRLF; the empty line that ends them excluded).
func (s *session) headerSection() ([]byte, error) {
	buf, err := s.hold.Prefix(maxHeaderSection)
	if err != nil {
		return nil, err
	}
	hdr, _, ok := splitHeader(buf)
	if !ok && s.hold.Size() > maxHeaderSection {
		return nil, fmt.Errorf("%w: no end of header section in the first %d octets", errHeaderTooLarge, maxHeaderSection)
	}
	return hdr, nil
}

// parts is a message sent as consecutive pieces. Its WriteTo hands each
// piece to the writer in turn, so bytes.Readers copy without the 32 KiB
// buffer io.MultiReader would allocate for each message.
type parts struct {
	rs   []io.Reader
	size int64 // octets of all parts together
}

// MessageSize implements Sized: the relay may send the message with BDAT.
func (p *parts) MessageSize() int64 { return p.size }

func (p *parts) Read(b []byte) (int, error) {
	for len(p.rs) > 0 {
		n, err := p.rs[0].Read(b)
		if err == io.EOF {
			p.rs = p.rs[1:]
			err = nil
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
	return 0, io.EOF
}

func (p *parts) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for len(p.rs) > 0 {
		n, err := io.Copy(w, p.rs[0])
		total += n
		if err != nil {
			return total, err
		}
		p.rs = p.rs[1:]
	}
	return total, nil
}
