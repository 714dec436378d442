package gateway

import (
	"crypto/tls"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// trickle writes piece(i) on c every 100 ms (until the session answers or
// closes) and returns what came back within limit.
func trickle(t *testing.T, c net.Conn, piece func(i int) []byte, limit time.Duration) string {
	t.Helper()
	buf := make([]byte, 512)
	end := time.Now().Add(limit)
	for i := 0; time.Now().Before(end); i++ {
		c.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := c.Write(piece(i)); err != nil {
			break
		}
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, _ := c.Read(buf); n > 0 {
			return string(buf[:n])
		}
	}
	return ""
}

// trickleLine trickles line an octet at a time, its last octet repeated
// once the line is out.
func trickleLine(t *testing.T, c net.Conn, line string, limit time.Duration) string {
	t.Helper()
	return trickle(t, c, func(i int) []byte { return []byte{line[min(i, len(line)-1)]} }, limit)
}

// TestCommandLineDeadlineClassified: a line trickled from a little after
// the wait began is cut by the line deadline even when closeEnough left
// the wait's (up to a 64th of the idle timeout earlier) deadline in place,
// and is answered and logged as the line deadline, not as an idle client.
func TestCommandLineDeadlineClassified(t *testing.T) {
	cfg := testConfig()
	// A 64th of 3.2 s is 50 ms: the first octet 25 ms after the wait
	// began finds the wait's deadline close enough to keep.
	cfg.IdleTimeout = 3200 * time.Millisecond
	cfg.MaxLineLength = 512
	g := startGateway(t, cfg, nil, nil)
	c := dialEHLO(t, g.addr)
	time.Sleep(25 * time.Millisecond)
	reply := trickleLine(t, c, "MAIL FROM:<", 30*time.Second)
	if !strings.HasPrefix(reply, "421 4.4.2 Command line took longer than allowed") {
		t.Fatalf("want the line deadline's 421 4.4.2, got %q", reply)
	}
	if log := g.log.String(); !strings.Contains(log, `"rule":"idle_timeout","detail":"command line not complete within limits.idle_timeout"`) {
		t.Errorf("no decision line for the cut: %s", log)
	}
}

// trickleConn writes one octet at a time, 100 ms apart, once slow is set.
type trickleConn struct {
	net.Conn
	slow atomic.Bool
}

func (c *trickleConn) Write(p []byte) (int, error) {
	if !c.slow.Load() {
		return c.Conn.Write(p)
	}
	for i := range p {
		if _, err := c.Conn.Write(p[i : i+1]); err != nil {
			return i, err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return len(p), nil
}

// TestCommandLineDeadlineTLS: inside TLS, a command's record trickled an
// octet at a time must come whole within the idle timeout of its first
// octets too. The wait for a command reads through tls.Conn, which reads
// on until a whole record is in, each read renewing the idle timeout: a
// record of a few hundred octets sent over minutes held the session.
func TestCommandLineDeadlineTLS(t *testing.T) {
	cfg := testConfig()
	cfg.IdleTimeout = 2 * time.Second
	cfg.MaxLineLength = 512
	cfg.TLS = &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}}
	g := startGateway(t, cfg, nil, nil)
	raw, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	runDialog(t, raw, "< 220\n> EHLO client.test\n< 250\n> STARTTLS\n< 220 2.0.0")
	tr := &trickleConn{Conn: raw}
	tc := tls.Client(tr, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	runDialog(t, tc, "> EHLO client.test\n< 250")
	tr.slow.Store(true)
	// About 230 octets of record at 100 ms each: 23 s, against a line
	// deadline of 2 s from the first octets.
	go tc.Write([]byte("NOOP " + strings.Repeat("x", 200) + "\r\n"))
	tc.SetReadDeadline(time.Now().Add(15 * time.Second))
	buf := make([]byte, 512)
	n, err := tc.Read(buf)
	if reply := string(buf[:n]); !strings.HasPrefix(reply, "421 4.4.2 Command line took longer than allowed") {
		t.Fatalf("want the line deadline's 421 4.4.2, got %q (%v)", reply, err)
	}
	if log := g.log.String(); !strings.Contains(log, `"rule":"idle_timeout","detail":"command line not complete within limits.idle_timeout"`) {
		t.Errorf("no decision line for the cut: %s", log)
	}
}
