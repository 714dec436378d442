package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

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
	// Begin starts a transaction with MAIL FROM.
	Begin(ctx context.Context, from Address, opts MailOpts) (UpstreamTx, policy.Reply, error)
	// Close releases pooled connections.
	Close() error
}

// UpstreamTx is one transaction with the upstream.
type UpstreamTx interface {
	// Rcpt adds a recipient.
	Rcpt(ctx context.Context, to Address) (policy.Reply, error)
	// Data sends the message and returns the upstream's final reply.
	Data(ctx context.Context, msg io.Reader) (policy.Reply, error)
	// End finishes the transaction: a connection in a clean state goes back
	// to the pool, any other is closed.
	End()
	// Addr names the upstream that took the transaction, for the log.
	Addr() string
}

// MailOpts are the MAIL parameters passed upstream.
type MailOpts struct {
	Size int64
	UTF8 bool
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
}

// SMTPUpstream relays over SMTP with github.com/emersion/go-smtp's client,
// pooling connections between transactions.
//
// Limits of the client that shaped this code: it does not pipeline; it hides
// the text of 2xx replies to RCPT (so the sender gets our own "250 2.1.5"
// text for an accepted recipient, while refusals pass on verbatim); and its
// Reset makes the next command send EHLO again, so a connection is reset
// only after an aborted transaction, not after a completed one (RFC 5321
// section 4.1.1.4 leaves the server ready for a new MAIL after DATA).
type SMTPUpstream struct {
	cfg SMTPUpstreamConfig

	mu   sync.Mutex
	idle []*pooledClient
	next int // index of the address that last worked
}

type pooledClient struct {
	c        *smtp.Client
	conn     net.Conn
	addr     string
	lastUsed time.Time
	pooled   bool // came from the pool (may have gone stale)
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

func (u *SMTPUpstream) get(ctx context.Context) (*pooledClient, error) {
	u.mu.Lock()
	for len(u.idle) > 0 {
		pc := u.idle[len(u.idle)-1]
		u.idle = u.idle[:len(u.idle)-1]
		if time.Since(pc.lastUsed) > u.cfg.IdleTimeout {
			pc.c.Close()
			continue
		}
		u.mu.Unlock()
		pc.pooled = true
		return pc, nil
	}
	start := u.next
	u.mu.Unlock()
	var errs []error
	n := len(u.cfg.Addrs)
	for i := 0; i < n; i++ {
		idx := (start + i) % n
		addr := u.cfg.Addrs[idx]
		pc, err := u.dial(ctx, addr)
		if err == nil {
			u.mu.Lock()
			u.next = idx
			u.mu.Unlock()
			return pc, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("%w: %w", errUpstreamDown, errors.Join(errs...))
}

func (u *SMTPUpstream) dial(ctx context.Context, addr string) (*pooledClient, error) {
	dctx, cancel := context.WithTimeout(ctx, u.cfg.ConnectTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", addr, err)
	}
	conn.SetDeadline(time.Now().Add(u.cfg.ConnectTimeout))
	var c *smtp.Client
	if u.cfg.StartTLS == "require" {
		// go-smtp's client starts TLS only through this constructor, whose
		// first EHLO says "localhost"; the EHLO after TLS uses our name.
		c, err = smtp.NewClientStartTLS(conn, u.cfg.TLSConfig)
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("upstream %s: STARTTLS: %w", addr, err)
		}
	} else {
		c = smtp.NewClient(conn)
	}
	c.CommandTimeout = u.cfg.ConnectTimeout
	c.SubmissionTimeout = u.cfg.DataTimeout
	if err := c.Hello(u.cfg.Helo); err != nil {
		c.Close()
		return nil, fmt.Errorf("upstream %s: EHLO: %w", addr, err)
	}
	// Hello is lazy: NOOP reads the greeting and sends EHLO now, so that a
	// dead or refusing upstream fails over here, not in a transaction.
	if err := c.Noop(); err != nil {
		c.Close()
		return nil, fmt.Errorf("upstream %s: greeting: %w", addr, err)
	}
	conn.SetDeadline(time.Time{})
	c.CommandTimeout = u.cfg.CommandTimeout
	return &pooledClient{c: c, conn: conn, addr: addr}, nil
}

func (u *SMTPUpstream) put(pc *pooledClient) {
	pc.lastUsed = time.Now()
	pc.pooled = false
	u.mu.Lock()
	if len(u.idle) < u.cfg.MaxIdle {
		u.idle = append(u.idle, pc)
		u.mu.Unlock()
		return
	}
	u.mu.Unlock()
	pc.c.Close()
}

// Close closes every pooled connection.
func (u *SMTPUpstream) Close() error {
	u.mu.Lock()
	idle := u.idle
	u.idle = nil
	u.mu.Unlock()
	for _, pc := range idle {
		pc.c.Quit()
		pc.c.Close()
	}
	return nil
}

// Begin implements Upstream.
func (u *SMTPUpstream) Begin(ctx context.Context, from Address, opts MailOpts) (UpstreamTx, policy.Reply, error) {
	for attempt := 0; attempt < 2; attempt++ {
		pc, err := u.get(ctx)
		if err != nil {
			return nil, policy.Reply{}, err
		}
		mo := &smtp.MailOptions{Size: opts.Size}
		if opts.UTF8 {
			if ok, _ := pc.c.Extension("SMTPUTF8"); ok {
				mo.UTF8 = true
			} else if from.UTF8() {
				u.put(pc)
				return nil, policy.Reply{Code: 553, Enhanced: "5.6.7", Text: "Internal mail server does not accept non-ASCII addresses"}, nil
			}
		}
		// Commands are bounded by the client's CommandTimeout; only DATA,
		// which may run long, also follows ctx.
		err = pc.c.Mail(from.String(), mo)
		if err == nil {
			return &smtpTx{u: u, pc: pc, mailDone: true}, policy.Reply{Code: 250, Enhanced: "2.1.0", Text: "OK"}, nil
		}
		if r, ok := replyOf(err); ok {
			tx := &smtpTx{u: u, pc: pc, mailDone: true}
			tx.End()
			return nil, r, nil
		}
		pc.c.Close()
		if !pc.pooled || ctx.Err() != nil {
			return nil, policy.Reply{}, fmt.Errorf("upstream %s: MAIL: %w", pc.addr, err)
		}
		// A pooled connection went stale: try once more on a new one.
	}
	return nil, policy.Reply{}, errUpstreamDown
}

type smtpTx struct {
	u        *SMTPUpstream
	pc       *pooledClient
	mailDone bool
	dataDone bool
	broken   bool
}

func (t *smtpTx) Addr() string { return t.pc.addr }

func (t *smtpTx) Rcpt(ctx context.Context, to Address) (policy.Reply, error) {
	if t.broken {
		return policy.Reply{}, errors.New("upstream: connection lost earlier in this transaction")
	}
	err := t.pc.c.Rcpt(to.String(), nil)
	if err == nil {
		return policy.Reply{Code: 250, Enhanced: "2.1.5", Text: "OK"}, nil
	}
	if r, ok := replyOf(err); ok {
		return r, nil
	}
	t.broken = true
	return policy.Reply{}, fmt.Errorf("upstream %s: RCPT: %w", t.pc.addr, err)
}

func (t *smtpTx) Data(ctx context.Context, msg io.Reader) (policy.Reply, error) {
	if t.broken {
		return policy.Reply{}, errors.New("upstream: connection lost earlier in this transaction")
	}
	stop := context.AfterFunc(ctx, func() { t.pc.conn.Close() })
	defer stop()
	w, err := t.pc.c.Data()
	if err != nil {
		if r, ok := replyOf(err); ok {
			return r, nil
		}
		t.broken = true
		return policy.Reply{}, fmt.Errorf("upstream %s: DATA: %w", t.pc.addr, err)
	}
	if _, err := io.Copy(w, msg); err != nil {
		t.broken = true
		return policy.Reply{}, fmt.Errorf("upstream %s: sending message: %w", t.pc.addr, err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		if r, ok := replyOf(err); ok {
			t.dataDone = true
			return r, nil
		}
		t.broken = true
		return policy.Reply{}, fmt.Errorf("upstream %s: end of data: %w", t.pc.addr, err)
	}
	t.dataDone = true
	t.mailDone = false
	code, enh, text := splitReplyText(resp.StatusText)
	_ = code
	return policy.Reply{Code: 250, Enhanced: enh, Text: text}, nil
}

func (t *smtpTx) End() {
	if t.broken {
		t.pc.c.Close()
		return
	}
	if t.mailDone {
		// An aborted transaction: RSET before reuse.
		if err := t.pc.c.Reset(); err != nil {
			t.pc.c.Close()
			return
		}
	}
	t.u.put(t.pc)
}

// replyOf turns a go-smtp error carrying an SMTP reply into our Reply.
func replyOf(err error) (policy.Reply, bool) {
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		return policy.Reply{}, false
	}
	r := policy.Reply{Code: se.Code, Text: se.Message}
	if se.EnhancedCode != smtp.NoEnhancedCode && se.EnhancedCode != smtp.EnhancedCodeNotSet {
		r.Enhanced = fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	}
	r.Text = strings.ReplaceAll(strings.ReplaceAll(r.Text, "\r", " "), "\n", " ")
	if r.Text == "" {
		r.Text = "(no text)"
	}
	return r, true
}

// splitReplyText splits an enhanced code off a 2xx reply text, which go-smtp
// returns whole for DATA.
func splitReplyText(s string) (int, string, string) {
	s = strings.ReplaceAll(strings.ReplaceAll(s, "\r", " "), "\n", " ")
	first, rest, _ := strings.Cut(s, " ")
	parts := strings.Split(first, ".")
	if len(parts) == 3 && parts[0] == "2" {
		ok := true
		for _, p := range parts {
			if _, err := strconv.Atoi(p); err != nil {
				ok = false
			}
		}
		if ok {
			return 250, first, rest
		}
	}
	return 250, "2.0.0", s
}
