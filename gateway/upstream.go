package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mxgate/gatewayd/policy"
)

// Upstream is where accepted mail goes: the internal MTA over SMTP, or the
// built-in Maildir target.
//
// A returned error is a transport failure (no SMTP reply was had: down,
// timeout, dropped connection); a returned reply that is not 2xx is the
// upstream's own refusal. The session turns the first into a 4xx for the
// sender and passes the second on.
type Upstream interface {
	// Begin starts a transaction with MAIL FROM. An upstream may send MAIL
	// together with the first RCPT (pipelining); a refusal of MAIL then
	// comes back as the reply to that Rcpt.
	Begin(ctx context.Context, from Address, opts MailOpts) (UpstreamTx, policy.Reply, error)
	// Close releases pooled connections.
	Close() error
}

// UpstreamTx is one transaction with the upstream.
type UpstreamTx interface {
	// Rcpt adds a recipient.
	Rcpt(ctx context.Context, to Address) (policy.Reply, error)
	// Data sends the message and returns the upstream's final reply. A msg
	// that implements Sized may be sent with BDAT.
	Data(ctx context.Context, msg io.Reader) (policy.Reply, error)
	// End finishes the transaction: a connection in a clean state goes back
	// to the pool, any other is closed.
	End()
	// Addr names the upstream that took the transaction, for the log.
	Addr() string
}

// Sized is a message that knows its length in octets before it is read.
type Sized interface {
	MessageSize() int64
}

// MailOpts are the MAIL parameters passed upstream.
type MailOpts struct {
	Size     int64
	UTF8     bool
	EightBit bool // BODY=8BITMIME
}

// SMTPUpstreamConfig configures the relay to the internal MTA.
type SMTPUpstreamConfig struct {
	Addrs          []string      // tried in order: failover
	Helo           string        // our name in EHLO
	ConnectTimeout time.Duration // TCP connect and greeting
	CommandTimeout time.Duration // each command's reply
	DataTimeout    time.Duration // the message and its final reply
	MaxIdle        int           // pooled idle connections kept
	IdleTimeout    time.Duration // an idle pooled connection older than this is closed
	StartTLS       string        // "none" or "require"
	TLSConfig      *tls.Config   // for STARTTLS to the internal MTA
	NoPipelining   bool          // never pipeline MAIL with RCPT, even when offered
	NoChunking     bool          // never use BDAT, even when CHUNKING is offered
}

// SMTPUpstream relays over SMTP, pooling connections between transactions.
//
// The SMTP client is ours (upConn) rather than github.com/emersion/go-smtp's,
// which the relay used first: go-smtp's client sends each command and waits
// for its reply and cannot send BDAT, so a relayed message cost four round
// trips (MAIL, RCPT, DATA, the message). Profiles of make bench showed those
// round trips as about a third of the gateway's CPU per message and twice
// the internal MTA's own. upConn pipelines MAIL with the first RCPT (RFC
// 2920) and sends the message as one "BDAT n LAST" (RFC 3030) when the MTA
// offers CHUNKING: two round trips per message. It is small on purpose:
// replies are read with net/textproto, DATA's dot-stuffing is our
// dotWriter (net/textproto's output, thirty times faster), TLS is
// crypto/tls.
//
// Recipients still go upstream one RCPT at a time, in lockstep with the
// sender, so the MTA's refusal of a recipient reaches the sender verbatim.
// Accepted recipients get our own "250 2.1.5" text (an internal MTA's 2xx
// text may name internal hosts).
type SMTPUpstream struct {
	cfg SMTPUpstreamConfig

	mu     sync.Mutex
	idle   []*upConn
	next   int  // index of the address that last worked
	closed bool // Close was called: connections given back are closed
}

// NewSMTPUpstream returns a relay to the given internal MTA addresses.
func NewSMTPUpstream(cfg SMTPUpstreamConfig) *SMTPUpstream {
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = time.Minute
	}
	if cfg.DataTimeout <= 0 {
		cfg.DataTimeout = 10 * time.Minute
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 30 * time.Second
	}
	if cfg.Helo == "" {
		cfg.Helo = "localhost"
	}
	return &SMTPUpstream{cfg: cfg}
}

// errUpstreamDown is returned when no upstream address could be reached.
var errUpstreamDown = errors.New("upstream: no internal MTA reachable")

// get returns a pooled connection, or a new one to the first address that
// answers.
func (u *SMTPUpstream) get(ctx context.Context) (*upConn, error) {
	u.mu.Lock()
	for len(u.idle) > 0 {
		c := u.idle[len(u.idle)-1]
		u.idle = u.idle[:len(u.idle)-1]
		if time.Since(c.lastUsed) > u.cfg.IdleTimeout || !c.idleClean() {
			// Too old, closed by the MTA, or with something to read
			// that no command of ours asked for.
			c.conn.Close()
			continue
		}
		u.mu.Unlock()
		c.pooled = true
		return c, nil
	}
	start := u.next
	u.mu.Unlock()
	var errs []error
	n := len(u.cfg.Addrs)
	for i := 0; i < n; i++ {
		idx := (start + i) % n
		c, err := dialUpstream(ctx, u.cfg.Addrs[idx], &u.cfg)
		if err == nil {
			u.mu.Lock()
			u.next = idx
			u.mu.Unlock()
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("%w: %w", errUpstreamDown, errors.Join(errs...))
}

func (u *SMTPUpstream) put(c *upConn) {
	if c.br.Buffered() > 0 {
		// A reply (or part of one) nobody asked for: the MTA and we are
		// out of step, and the next transaction would read it.
		c.conn.Close()
		return
	}
	// No deadline while it idles: the check before reuse reads it, and a
	// deadline past would fail that check.
	c.conn.SetDeadline(time.Time{})
	c.lastUsed = time.Now()
	c.pooled = false
	u.mu.Lock()
	if !u.closed && len(u.idle) < u.cfg.MaxIdle {
		u.idle = append(u.idle, c)
		u.mu.Unlock()
		return
	}
	u.mu.Unlock()
	c.quit()
}

// Close says QUIT on every pooled connection and closes it.
func (u *SMTPUpstream) Close() error {
	u.mu.Lock()
	idle := u.idle
	u.idle, u.closed = nil, true
	u.mu.Unlock()
	for _, c := range idle {
		c.quit()
	}
	return nil
}

// Begin implements Upstream. With pipelining, MAIL is only prepared here
// and goes out with the first RCPT.
func (u *SMTPUpstream) Begin(ctx context.Context, from Address, opts MailOpts) (UpstreamTx, policy.Reply, error) {
	t := &smtpTx{u: u, from: from, opts: opts}
	for attempt := 0; ; attempt++ {
		c, err := u.get(ctx)
		if err != nil {
			return nil, policy.Reply{}, err
		}
		if opts.UTF8 && !c.has("SMTPUTF8") && from.UTF8() {
			u.put(c)
			return nil, policy.Reply{Code: 553, Enhanced: "5.6.7", Text: "Internal mail server does not accept non-ASCII addresses"}, nil
		}
		t.c = c
		t.mail = c.mailLine(from, opts)
		if c.pipelining(&u.cfg) {
			return t, policy.Reply{Code: 250, Enhanced: "2.1.0", Text: "OK"}, nil
		}
		stop := context.AfterFunc(ctx, func() { c.conn.Close() })
		r, err := t.sendMail(ctx)
		stop()
		if err == nil {
			if r.Code/100 != 2 {
				t.End()
				return nil, r, nil
			}
			return t, r, nil
		}
		c.close()
		if !c.pooled || attempt > 0 || ctx.Err() != nil {
			return nil, policy.Reply{}, fmt.Errorf("upstream %s: MAIL: %w", c.addr, err)
		}
		// A pooled connection went stale: try once more.
	}
}

// smtpTx is one transaction on an upConn.
type smtpTx struct {
	u      *SMTPUpstream
	c      *upConn
	from   Address
	opts   MailOpts
	mail   string // the MAIL command line, until the MTA accepted it
	open   bool   // MAIL accepted: the MTA holds a transaction
	broken bool   // transport failure: the connection is not reusable
}

func (t *smtpTx) Addr() string { return t.c.addr }

var errTxBroken = errors.New("upstream: connection lost earlier in this transaction")

// sendMail sends MAIL on its own (no pipelining) and reads its reply.
func (t *smtpTx) sendMail(ctx context.Context) (policy.Reply, error) {
	t.c.deadline(ctx, t.u.cfg.CommandTimeout)
	t.c.bw.WriteString(t.mail)
	if err := t.c.bw.Flush(); err != nil {
		return policy.Reply{}, err
	}
	r, err := t.c.readFinal()
	if err == nil && r.Code/100 == 2 {
		t.open, t.mail = true, ""
	}
	return r, err
}

// Rcpt implements UpstreamTx. The first RCPT carries the pending MAIL with
// it; a refused MAIL is the reply, and the next RCPT tries MAIL again.
func (t *smtpTx) Rcpt(ctx context.Context, to Address) (policy.Reply, error) {
	if t.broken {
		return policy.Reply{}, errTxBroken
	}
	rcpt := "RCPT TO:<" + to.String() + ">\r\n"
	for attempt := 0; ; attempt++ {
		// As for the sender in Begin: a non-ASCII recipient goes only to an
		// MTA that offers SMTPUTF8 (RFC 6531 section 3.4); sent as raw
		// octets to one that does not, it may be mangled: an MTA that
		// strips the eighth bit reads U+0165 (octets C5 A5) as "E%", a
		// percent hack the relay check never saw.
		if to.UTF8() && !t.c.has("SMTPUTF8") {
			return policy.Reply{Code: 553, Enhanced: "5.6.7", Text: "Internal mail server does not accept non-ASCII addresses"}, nil
		}
		r, err := t.rcpt(ctx, rcpt)
		if err != nil && ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, context.Cause(ctx))
		}
		if err == nil {
			if r.Code/100 == 2 {
				r = policy.Reply{Code: 250, Enhanced: "2.1.5", Text: "OK"}
			}
			return r, nil
		}
		// A stale pooled connection fails on its first use; nothing was
		// accepted on it yet, so the transaction starts over on a new one.
		if t.c.pooled && !t.open && attempt == 0 && ctx.Err() == nil {
			t.c.close()
			c, gerr := t.u.get(ctx)
			if gerr == nil {
				t.c = c
				t.mail = c.mailLine(t.from, t.opts)
				continue
			}
			err = gerr
		}
		t.broken = true
		return policy.Reply{}, fmt.Errorf("upstream %s: RCPT: %w", t.c.addr, err)
	}
}

func (t *smtpTx) rcpt(ctx context.Context, rcpt string) (policy.Reply, error) {
	// The session's context ends the wait for a reply (a Shutdown past its
	// deadline), not only the command timeout.
	c := t.c
	stop := context.AfterFunc(ctx, func() { c.conn.Close() })
	defer stop()
	if t.mail != "" && !t.c.pipelining(&t.u.cfg) {
		r, err := t.sendMail(ctx)
		if err != nil || r.Code/100 != 2 {
			return r, err
		}
	}
	if err := t.c.inStep(false); err != nil {
		return policy.Reply{}, err
	}
	t.c.deadline(ctx, t.u.cfg.CommandTimeout)
	withMail := t.mail != ""
	if withMail {
		t.c.bw.WriteString(t.mail)
	}
	t.c.bw.WriteString(rcpt)
	if err := t.c.bw.Flush(); err != nil {
		return policy.Reply{}, err
	}
	if withMail {
		mr, err := t.c.readFinal()
		if err != nil {
			return policy.Reply{}, err
		}
		rr, err := t.c.readFinal() // the RCPT's, also after a refused MAIL
		if err != nil {
			return policy.Reply{}, err
		}
		if mr.Code/100 != 2 {
			return mr, nil
		}
		t.open, t.mail = true, ""
		return rr, nil
	}
	return t.c.readFinal()
}

// Data implements UpstreamTx: BDAT when the MTA offers CHUNKING and the
// size is known, else DATA with dot-stuffing.
func (t *smtpTx) Data(ctx context.Context, msg io.Reader) (policy.Reply, error) {
	if t.broken {
		return policy.Reply{}, errTxBroken
	}
	if !t.open {
		return policy.Reply{}, fmt.Errorf("upstream %s: DATA without an accepted MAIL", t.c.addr)
	}
	c := t.c
	stop := context.AfterFunc(ctx, func() { c.conn.Close() })
	defer stop()
	r, err := t.data(ctx, msg)
	if err != nil {
		t.broken = true
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, context.Cause(ctx))
		}
		return policy.Reply{}, fmt.Errorf("upstream %s: %w", c.addr, err)
	}
	return r, nil
}

func (t *smtpTx) data(ctx context.Context, msg io.Reader) (policy.Reply, error) {
	c := t.c
	if sz, ok := msg.(Sized); ok && c.chunking(&t.u.cfg) {
		// The reply read after BDAT LAST is taken for the MTA's answer
		// to the message: nothing may be waiting before it is sent.
		if err := c.inStep(true); err != nil {
			return policy.Reply{}, fmt.Errorf("BDAT: %w", err)
		}
		c.deadline(ctx, t.u.cfg.DataTimeout)
		c.bw.WriteString("BDAT ")
		c.bw.WriteString(strconv.FormatInt(sz.MessageSize(), 10))
		c.bw.WriteString(" LAST\r\n")
		n, err := io.Copy(c.bw, msg)
		if err != nil {
			return policy.Reply{}, fmt.Errorf("sending message: %w", err)
		}
		if n != sz.MessageSize() {
			// The chunk would be short: the MTA would read our next
			// command as message octets. Never reuse this connection.
			return policy.Reply{}, fmt.Errorf("sending message: %d octets, announced %d", n, sz.MessageSize())
		}
		if err := c.bw.Flush(); err != nil {
			return policy.Reply{}, fmt.Errorf("sending message: %w", err)
		}
		r, err := c.readFinal()
		if err != nil {
			return policy.Reply{}, fmt.Errorf("end of data: %w", err)
		}
		t.open = false // BDAT LAST ends the transaction, whatever the reply
		return r, nil
	}
	if err := c.inStep(false); err != nil {
		return policy.Reply{}, fmt.Errorf("DATA: %w", err)
	}
	c.deadline(ctx, t.u.cfg.CommandTimeout)
	c.bw.WriteString("DATA\r\n")
	if err := c.bw.Flush(); err != nil {
		return policy.Reply{}, fmt.Errorf("DATA: %w", err)
	}
	r, err := c.readReply()
	if err != nil {
		return policy.Reply{}, fmt.Errorf("DATA: %w", err)
	}
	if r.Code != 354 {
		if r.Code/100 == 2 || r.Code/100 == 3 {
			return policy.Reply{}, fmt.Errorf("DATA: unexpected reply %d", r.Code)
		}
		return r, nil // refused: the transaction stays open, End resets it
	}
	if err := c.inStep(true); err != nil {
		return policy.Reply{}, fmt.Errorf("DATA: %w", err)
	}
	c.deadline(ctx, t.u.cfg.DataTimeout)
	dw := newDotWriter(c.bw)
	if _, err := io.Copy(dw, msg); err != nil {
		return policy.Reply{}, fmt.Errorf("sending message: %w", err)
	}
	if err := dw.Close(); err != nil { // ".\r\n"
		return policy.Reply{}, fmt.Errorf("sending message: %w", err)
	}
	if err := c.bw.Flush(); err != nil {
		return policy.Reply{}, fmt.Errorf("sending message: %w", err)
	}
	r, err = c.readFinal()
	if err != nil {
		return policy.Reply{}, fmt.Errorf("end of data: %w", err)
	}
	t.open = false
	return r, nil
}

// End implements UpstreamTx.
func (t *smtpTx) End() {
	if t.c == nil {
		return
	}
	if t.broken {
		t.c.close()
		t.c = nil
		return
	}
	if t.open {
		// An aborted transaction: RSET before reuse, within a short wait
		// (End has no context: a Shutdown must not wait a command timeout).
		t.c.deadline(context.Background(), min(t.u.cfg.CommandTimeout, rsetTimeout))
		t.c.bw.WriteString("RSET\r\n")
		err := t.c.bw.Flush()
		var r policy.Reply
		if err == nil {
			r, err = t.c.readReply()
		}
		if err != nil || r.Code/100 != 2 {
			t.c.close()
			t.c = nil
			return
		}
		t.open = false
	}
	t.u.put(t.c)
	t.c = nil
}

// upConn is one client connection to the internal MTA. See SMTPUpstream for
// why it is ours.
type upConn struct {
	conn     net.Conn
	raw      net.Conn // the TCP connection, under TLS when STARTTLS was used
	br       *bufio.Reader
	tr       textproto.Reader
	bw       *bufio.Writer
	addr     string
	ext      map[string]string // EHLO keywords (upper case) and their parameters
	lastUsed time.Time
	pooled   bool // came from the pool (may have gone stale)
}

// maxReplyLine bounds one reply line from the internal MTA.
const maxReplyLine = 4096

func dialUpstream(ctx context.Context, addr string, cfg *SMTPUpstreamConfig) (*upConn, error) {
	dctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", addr, err)
	}
	c := &upConn{addr: addr, raw: conn}
	c.setConn(conn)
	stop := context.AfterFunc(dctx, func() { conn.Close() })
	defer stop()
	if err := c.open(dctx, cfg); err != nil {
		c.conn.Close()
		return nil, fmt.Errorf("upstream %s: %w", addr, err)
	}
	c.conn.SetDeadline(time.Time{})
	return c, nil
}

// idleClean reports whether the idle connection is open with nothing
// unread, in our buffer or the kernel's.
func (c *upConn) idleClean() bool {
	if c.br.Buffered() > 0 {
		return false
	}
	if c.conn != c.raw {
		// TLS reads the socket greedily: a record that came with the last
		// reply waits inside tls.Conn, out of the socket's sight. A read
		// with a deadline already past gives what it holds, else times
		// out at once (a timeout in crypto/tls is not sticky).
		c.conn.SetReadDeadline(time.Now())
		_, err := c.br.Peek(1)
		c.conn.SetReadDeadline(time.Time{})
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return false
		}
	}
	sc, ok := c.raw.(syscall.Conn)
	return !ok || idleClean(sc)
}

// errOutOfStep is a reply (or part of one) waiting to be read before a
// command of ours was sent: the MTA sent one too many, and every reply that
// follows would be read one behind.
var errOutOfStep = errors.New("unsolicited reply from the MTA: out of step")

// inStep fails when something waits to be read before the next command of a
// transaction goes out. Our buffer is checked always; with full, the
// kernel's and TLS's too (one non-blocking peek): before the command whose
// reply decides the sender's reply to the message, where a stale 250 would
// be taken for the MTA's acceptance of a message it refuses. It changes
// the connection's deadline: call it before deadline.
func (c *upConn) inStep(full bool) error {
	if c.br.Buffered() > 0 || full && !c.idleClean() {
		return errOutOfStep
	}
	return nil
}

func (c *upConn) setConn(conn net.Conn) {
	c.conn = conn
	c.br = bufio.NewReaderSize(&lineLimitReader{r: conn}, 4096)
	c.tr = textproto.Reader{R: c.br}
	c.bw = bufio.NewWriterSize(conn, 8192)
}

// open reads the greeting, says EHLO and starts TLS when configured.
func (c *upConn) open(ctx context.Context, cfg *SMTPUpstreamConfig) error {
	c.deadline(ctx, cfg.ConnectTimeout)
	r, err := c.readReply()
	if err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	if r.Code != 220 {
		return fmt.Errorf("greeting: %s", r)
	}
	if err := c.hello(cfg.Helo); err != nil {
		return err
	}
	if cfg.StartTLS != "require" {
		return nil
	}
	if !c.has("STARTTLS") {
		return errors.New("STARTTLS required but not offered")
	}
	c.bw.WriteString("STARTTLS\r\n")
	if err := c.bw.Flush(); err != nil {
		return fmt.Errorf("STARTTLS: %w", err)
	}
	if r, err = c.readReply(); err != nil {
		return fmt.Errorf("STARTTLS: %w", err)
	}
	if r.Code != 220 {
		return fmt.Errorf("STARTTLS: %s", r)
	}
	tcfg := &tls.Config{}
	if cfg.TLSConfig != nil {
		tcfg = cfg.TLSConfig.Clone()
	}
	if tcfg.ServerName == "" && !tcfg.InsecureSkipVerify {
		host, _, _ := net.SplitHostPort(c.addr)
		tcfg.ServerName = host
	}
	tc := tls.Client(c.conn, tcfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("STARTTLS: %w", err)
	}
	c.setConn(tc)
	c.deadline(ctx, cfg.ConnectTimeout)
	return c.hello(cfg.Helo)
}

// hello says EHLO (HELO when EHLO is refused) and records the extensions.
func (c *upConn) hello(name string) error {
	c.bw.WriteString("EHLO " + name + "\r\n")
	if err := c.bw.Flush(); err != nil {
		return fmt.Errorf("EHLO: %w", err)
	}
	code, msg, err := c.tr.ReadResponse(0)
	if err != nil {
		return fmt.Errorf("EHLO: %w", err)
	}
	c.ext = map[string]string{}
	if code == 250 {
		lines := strings.Split(msg, "\n")
		for _, l := range lines[1:] {
			k, v, _ := strings.Cut(l, " ")
			c.ext[strings.ToUpper(k)] = v
		}
		return nil
	}
	if code/100 != 5 {
		return fmt.Errorf("EHLO: %s", parseReply(code, msg))
	}
	c.bw.WriteString("HELO " + name + "\r\n")
	if err := c.bw.Flush(); err != nil {
		return fmt.Errorf("HELO: %w", err)
	}
	r, err := c.readReply()
	if err != nil {
		return fmt.Errorf("HELO: %w", err)
	}
	if r.Code != 250 {
		return fmt.Errorf("HELO: %s", r)
	}
	return nil
}

func (c *upConn) has(ext string) bool { _, ok := c.ext[ext]; return ok }

func (c *upConn) pipelining(cfg *SMTPUpstreamConfig) bool {
	return !cfg.NoPipelining && c.has("PIPELINING")
}

func (c *upConn) chunking(cfg *SMTPUpstreamConfig) bool {
	return !cfg.NoChunking && c.has("CHUNKING")
}

// mailLine is the MAIL command for from, with SIZE and SMTPUTF8 when the MTA
// offers them.
func (c *upConn) mailLine(from Address, opts MailOpts) string {
	var b strings.Builder
	b.WriteString("MAIL FROM:<")
	b.WriteString(from.String())
	b.WriteByte('>')
	if opts.Size > 0 && c.has("SIZE") {
		b.WriteString(" SIZE=")
		b.WriteString(strconv.FormatInt(opts.Size, 10))
	}
	if opts.EightBit && c.has("8BITMIME") {
		b.WriteString(" BODY=8BITMIME")
	}
	if opts.UTF8 && c.has("SMTPUTF8") {
		b.WriteString(" SMTPUTF8")
	}
	b.WriteString("\r\n")
	return b.String()
}

// deadline bounds the next exchange by d and by ctx's deadline.
func (c *upConn) deadline(ctx context.Context, d time.Duration) {
	t := time.Now().Add(d)
	if cd, ok := ctx.Deadline(); ok && cd.Before(t) {
		t = cd
	}
	c.conn.SetDeadline(t)
}

// readReply reads one (possibly multi-line) reply.
// A 421 (the MTA is closing the connection, RFC 5321 section 3.8) is a
// transport failure, not a reply to pass on: the connection is finished,
// a pooled one that timed out is replaced, and the sender gets our 451
// rather than a 421 that would tell it to hang up on us.
func (c *upConn) readReply() (policy.Reply, error) {
	code, msg, err := c.tr.ReadResponse(0)
	if err != nil {
		return policy.Reply{}, err
	}
	if code < 200 || code > 599 {
		// No SMTP reply is 1xx or 6xx and above; passed on, a sender
		// could read it as anything.
		return policy.Reply{}, fmt.Errorf("reply code %d out of range", code)
	}
	r := parseReply(code, msg)
	if code == 421 {
		return policy.Reply{}, fmt.Errorf("closing: %s", r)
	}
	return r, nil
}

// rsetTimeout bounds the wait for the reply to RSET after an aborted
// transaction; a slower MTA loses the connection, not the session's time.
const rsetTimeout = 5 * time.Second

// readFinal reads the reply to a command that takes no data after it
// (MAIL, RCPT, the end of the message): a 3xx there is a protocol error,
// not a reply to pass on (a sender told 354 at the end of its message
// could take it for anything), and the connection is not reused.
func (c *upConn) readFinal() (policy.Reply, error) {
	r, err := c.readReply()
	if err == nil && r.Code/100 == 3 {
		return policy.Reply{}, fmt.Errorf("unexpected reply %d %s", r.Code, r.Text)
	}
	return r, err
}

func (c *upConn) quit() {
	c.conn.SetDeadline(time.Now().Add(time.Second))
	c.bw.WriteString("QUIT\r\n")
	if c.bw.Flush() == nil {
		c.readReply()
	}
	c.conn.Close()
}

func (c *upConn) close() { c.conn.Close() }

// parseReply turns a reply read by net/textproto (lines joined by "\n")
// into a Reply: the enhanced code of the first line split off (RFC 2034),
// the repeated codes of further lines dropped, the lines joined by spaces.
func parseReply(code int, msg string) policy.Reply {
	r := policy.Reply{Code: code}
	var text strings.Builder
	one := "" // the text of a one-line reply, which needs no builder
	i := 0
	for line := range strings.SplitSeq(msg, "\n") {
		rest := line
		if first, after, _ := strings.Cut(line, " "); looksEnhanced(first) {
			// The first line's code is ours when of our class; one of
			// another class ("550 4.1.1 ...") would contradict it, and
			// the codes repeated on further lines are noise: all go.
			if i == 0 && first[0] == byte('0'+code/100) {
				r.Enhanced = first
			}
			rest = after
		}
		i++
		if i == 1 {
			one = rest
			if len(one) > maxRelayedText {
				break // as the builder's check would
			}
			continue
		}
		if i == 2 {
			text.WriteString(one)
		}
		if text.Len() > 0 {
			text.WriteByte(' ')
		}
		text.WriteString(rest)
		if text.Len() > maxRelayedText {
			break
		}
	}
	if i > 1 {
		one = text.String()
	}
	if r.Enhanced == "" {
		// We offer ENHANCEDSTATUSCODES: every reply carries one, the
		// class's own when the MTA gave none (RFC 3463 X.0.0).
		r.Enhanced = strconv.Itoa(code/100) + ".0.0"
	}
	r.Text = policy.Truncate(oneLine(strings.TrimSpace(one)), maxRelayedText)
	if r.Text == "" {
		r.Text = "(no text)"
	}
	return r
}

// maxRelayedText bounds the text of a reply relayed from the MTA: our
// reply line stays within RFC 5321's 512 octets.
const maxRelayedText = 400

// looksEnhanced reports whether s has the shape of an enhanced status
// code, whatever its class.
func looksEnhanced(s string) bool {
	class, rest, ok1 := strings.Cut(s, ".")
	subject, detail, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || len(class) != 1 || class[0] < '2' || class[0] > '5' {
		return false
	}
	for _, p := range []string{subject, detail} {
		if p == "" || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return false
		}
	}
	return true
}

// lineLimitReader fails a read once maxReplyLine octets arrived without a
// line end: a broken internal MTA cannot make us buffer without bound.
type lineLimitReader struct {
	r   io.Reader
	run int // octets since the last LF
}

func (l *lineLimitReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	for _, b := range p[:n] {
		if b == '\n' {
			l.run = 0
		} else if l.run++; l.run > maxReplyLine {
			return 0, errors.New("upstream: reply line too long")
		}
	}
	return n, err
}
