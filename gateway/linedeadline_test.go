package gateway

import (
	"net"
	"strings"
	"testing"
	"time"
)

// trickleLine sends line one octet every 100 ms on c (until the session
// answers or closes) and returns what came back within limit.
func trickleLine(t *testing.T, c net.Conn, line string, limit time.Duration) string {
	t.Helper()
	buf := make([]byte, 512)
	end := time.Now().Add(limit)
	for i := 0; time.Now().Before(end); i++ {
		c.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte{line[min(i, len(line)-1)]}); err != nil {
			break
		}
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, _ := c.Read(buf); n > 0 {
			return string(buf[:n])
		}
	}
	return ""
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
