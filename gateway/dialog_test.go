package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// Dialog tests: short scripts of what the client sends and what the gateway
// must answer, for protocol edge cases (chasquid's style).
func TestDialogs(t *testing.T) {
	cases := []struct {
		name   string
		script string
		relay  int // messages the internal MTA must have afterwards
	}{
		{"plain HELO transaction", `
			< 220 mx.test ESMTP
			> HELO client.test
			< 250 mx.test
			> MAIL FROM:<a@sender.test>
			< 250 2.1.0
			> RCPT TO:<bob@example.com>
			< 250 2.1.5
			> DATA
			< 354
			> Subject: x
			>
			> hi
			> .
			< 250 2.0.0 Ok: queued as
			> QUIT
			< 221 2.0.0`, 1},
		{"EHLO advertises the extensions", `
			< 220
			> EHLO client.test
			< 250 ENHANCEDSTATUSCODES
			> QUIT
			< 221`, 0},
		{"pipelined transaction in one write", `
			< 220
			> EHLO client.test
			< 250
			>> "MAIL FROM:<a@sender.test>\r\nRCPT TO:<bob@example.com>\r\nRCPT TO:<nobody@elsewhere.test>\r\nRCPT TO:<carol@example.com>\r\nDATA\r\n"
			< 250 2.1.0
			< 250 2.1.5
			< 550 5.7.1 Relay access denied
			< 250 2.1.5
			< 354
			>> "Subject: p\r\n\r\nbody\r\n.\r\nQUIT\r\n"
			< 250 2.0.0
			< 221`, 1},
		{"message sent before the 354 (read on, not lost)", `
			< 220
			> EHLO client.test
			< 250
			>> "MAIL FROM:<a@sender.test>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\nSubject: e\r\n\r\nearly\r\n.\r\nQUIT\r\n"
			< 250 2.1.0
			< 250 2.1.5
			< 354
			< 250 2.0.0
			< 221`, 1},
		{"commands out of order", `
			< 220
			> MAIL FROM:<a@sender.test>
			< 503 5.5.1
			> RCPT TO:<bob@example.com>
			< 503 5.5.1
			> DATA
			< 503 5.5.1
			> EHLO client.test
			< 250
			> RCPT TO:<bob@example.com>
			< 503 5.5.1
			> MAIL FROM:<a@sender.test>
			< 250
			> MAIL FROM:<a@sender.test>
			< 503 5.5.1
			> DATA
			< 503 5.5.1
			> RCPT TO:<nobody@elsewhere.test>
			< 550 5.7.1
			> DATA
			< 554 5.5.1 No valid recipients
			> QUIT
			< 221`, 0},
		{"DATA after recipients refused for their syntax", `
			< 220
			> EHLO client.test
			< 250
			>> "MAIL FROM:<a@sender.test>\r\nRCPT TO:<bob@>\r\nRCPT TO:<bob@example.com> NOTIFY=NEVER\r\nRCPT bob@example.com\r\nDATA\r\n"
			< 250 2.1.0
			< 501 5.1.3
			< 555 5.5.4
			< 501 5.5.4
			< 554 5.5.1 No valid recipients
			> RSET
			< 250
			> MAIL FROM:<a@sender.test>
			< 250
			> DATA
			< 503 5.5.1
			> QUIT
			< 221`, 0},
		{"non-ASCII domain without SMTPUTF8", `
			< 220
			> EHLO client.test
			< 250
			> MAIL FROM:<a@bücher.example>
			< 553 5.6.7
			> MAIL FROM:<a@sender.test>
			< 250
			> RCPT TO:<bob@exämple.com>
			< 553 5.6.7
			> RCPT TO:<@relä.example:bob@example.com>
			< 553 5.6.7
			> RSET
			< 250
			> MAIL FROM:<a@bücher.example> SMTPUTF8
			< 250
			> QUIT
			< 221`, 0},
		{"trailing white space tolerated", `
			< 220
			>> "EHLO client.test\t\r\n"
			< 250
			>> "NOOP\t\r\n"
			< 250 2.0.0
			>> "RSET  \r\n"
			< 250 2.0.0
			>> "MAIL FROM:<a@sender.test> \t\r\n"
			< 250 2.1.0
			>> "RCPT TO:<bob@example.com>\t\r\n"
			< 250 2.1.5
			>> "DATA \t \r\n"
			< 354
			>> "Subject: t\r\n\r\nbody\r\n.\r\n"
			< 250 2.0.0
			>> "QUIT\t\r\n"
			< 221`, 1},
		{"unknown and unimplemented commands", `
			< 220
			> FOO bar
			< 500 5.5.1
			> BDAT 10 LAST
			< 502 5.5.1
			> AUTH PLAIN
			< 502 5.5.1
			> VRFY bob
			< 502 5.5.1
			> STARTTLS
			< 502 5.5.1
			> NOOP
			< 250 2.0.0
			> RSET extra
			< 501 5.5.4
			> EHLO
			< 501 5.5.4
			> QUIT
			< 221`, 0},
		{"bad arguments", `
			< 220
			> EHLO client.test
			< 250
			> MAIL TO:<a@sender.test>
			< 501 5.5.4
			> MAIL FROM:a@sender.test
			< 501 5.5.4
			> MAIL FROM:<a@@sender.test>
			< 501 5.1.7
			> MAIL FROM:<a@sender.test> FOO=bar
			< 555 5.5.4
			> MAIL FROM:<a@sender.test> BODY=BINARYMIME
			< 555 5.5.4
			> MAIL FROM:<a@sender.test> SIZE=abc
			< 501 5.5.4
			> MAIL FROM:<ünï@sender.test>
			< 553 5.6.7
			> MAIL FROM:<a@sender.test> BODY=8BITMIME
			< 250 2.1.0
			> RCPT TO:<bob@>
			< 501 5.1.3
			> RCPT TO:<bob@example.com> NOTIFY=NEVER
			< 555 5.5.4
			> QUIT
			< 221`, 0},
		{"null sender and postmaster", `
			< 220
			> EHLO client.test
			< 250
			> MAIL FROM:<>
			< 250
			> RCPT TO:<Postmaster>
			< 250 2.1.5
			> QUIT
			< 221`, 0},
		{"relay attempts are denied", `
			< 220
			> EHLO client.test
			< 250
			> MAIL FROM:<a@sender.test>
			< 250
			> RCPT TO:<victim@elsewhere.test>
			< 550 5.7.1 Relay access denied
			> RCPT TO:<victim%elsewhere.test@example.com>
			< 550 5.7.1 Relay access denied
			> RCPT TO:<"victim@elsewhere.test"@example.com>
			< 550 5.7.1 Relay access denied
			> RCPT TO:<elsewhere.test!victim@example.com>
			< 550 5.7.1 Relay access denied
			> RCPT TO:<@example.com:victim@elsewhere.test>
			< 550 5.7.1 Relay access denied
			> RCPT TO:<victim@[127.0.0.1]>
			< 550 5.7.1 Relay access denied
			> RCPT TO:<victim@example.com.elsewhere.test>
			< 550 5.7.1 Relay access denied
			> RCPT TO:<@elsewhere.test:bob@example.com>
			< 250 2.1.5
			> RCPT TO:<Bob@EXAMPLE.com>
			< 250 2.1.5
			> QUIT
			< 221`, 0},
		{"too long a command line", `
			< 220
			> EHLO ` + strings.Repeat("a", 3000) + `
			< 500 5.5.2 Line too long
			> EHLO client.test
			< 250
			> QUIT
			< 221`, 0},
		{"bare LF in a command line", `
			< 220
			>> "EHLO client.test\n"
			< 500 5.5.2
			>> "EHLO client.test\rMAIL FROM:<a@b.test>\r\n"
			< 500 5.5.2
			> QUIT
			< 221`, 0},
		{"oversized message announced with SIZE", `
			< 220
			> EHLO client.test
			< 250
			> MAIL FROM:<a@sender.test> SIZE=1000000
			< 552 5.3.4
			> MAIL FROM:<a@sender.test> SIZE=1000
			< 250
			> QUIT
			< 221`, 0},
		{"oversized message without SIZE", untilData + `
			>> "Subject: big\r\n\r\n` + strings.Repeat(strings.Repeat("x", 998)+`\r\n`, 70) + `.\r\n"
			< 552 5.3.4
			> RSET
			< 250
			> QUIT
			< 221`, 0},
		{"STARTTLS not offered without a certificate", `
			< 220
			> EHLO client.test
			< 250
			> STARTTLS
			< 502 5.5.1
			> QUIT
			< 221`, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := startGateway(t, testConfig(), nil, nil)
			dialog(t, g.addr, tc.script)
			if got := len(g.mta.messages()); got != tc.relay {
				t.Errorf("internal MTA got %d messages, want %d", got, tc.relay)
			}
		})
	}
}

// TestEHLOExtensions checks the exact capability list.
func TestEHLOExtensions(t *testing.T) {
	g := startGateway(t, testConfig(), nil, nil)
	c, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	c.Read(buf)
	fmt.Fprintf(c, "EHLO client.test\r\n")
	var got strings.Builder
	for !strings.Contains(got.String(), "250 ") {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got.Write(buf[:n])
	}
	want := "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 65536\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES\r\n"
	if got.String() != want {
		t.Errorf("EHLO reply:\n%q\nwant\n%q", got.String(), want)
	}
}

// TestTooManyRecipients: the 101st recipient gets 452 4.5.3 and the message
// goes to the first 100.
func TestTooManyRecipients(t *testing.T) {
	g := startGateway(t, testConfig(), nil, nil)
	var s strings.Builder
	s.WriteString("< 220\n> EHLO client.test\n< 250\n> MAIL FROM:<a@sender.test>\n< 250\n")
	for i := 0; i < 100; i++ {
		fmt.Fprintf(&s, "> RCPT TO:<user%d@example.com>\n< 250 2.1.5\n", i)
	}
	s.WriteString("> RCPT TO:<user100@example.com>\n< 452 4.5.3 Too many recipients\n")
	s.WriteString("> DATA\n< 354\n>> \"Subject: many\\r\\n\\r\\nx\\r\\n.\\r\\n\"\n< 250 2.0.0\n> QUIT\n< 221\n")
	dialog(t, g.addr, s.String())
	msgs := g.mta.messages()
	if len(msgs) != 1 || len(msgs[0].Rcpts) != 100 {
		t.Fatalf("want one message to 100 recipients, got %d messages", len(msgs))
	}
}

// TestTooManyErrors: a dictionary attack is cut off after max_errors refused
// commands, with 421 and a closed connection.
func TestTooManyErrors(t *testing.T) {
	cfg := testConfig()
	cfg.MaxErrors = 3
	g := startGateway(t, cfg, nil, nil)
	g.mta.setRcptReply(func(to string) error { return &smtpErr550 })
	dialog(t, g.addr, `
		< 220
		> EHLO client.test
		< 250
		> MAIL FROM:<a@sender.test>
		< 250
		> RCPT TO:<a@example.com>
		< 550 5.1.1
		> RCPT TO:<b@example.com>
		< 550 5.1.1
		> RCPT TO:<c@example.com>
		< 550 5.1.1
		> RCPT TO:<d@example.com>
		< 550 5.1.1
		< 421 4.7.0 Too many errors
		<EOF`)
	if !strings.Contains(g.log.String(), `"too_many_errors"`) {
		t.Errorf("cut-off not logged:\n%s", g.log.String())
	}
}

// TestIdleTimeout: a silent client is told 421 4.4.2 and cut off.
func TestIdleTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.IdleTimeout = 200 * time.Millisecond
	g := startGateway(t, cfg, nil, nil)
	dialog(t, g.addr, `
		< 220
		> EHLO client.test
		< 250
		< 421 4.4.2 Idle timeout
		<EOF`)
}

// TestDataDeadline: the idle timeout is renewed by every read inside DATA
// (a slow but steady sender is not cut off by it), and the whole-DATA
// deadline ends a sender that trickles forever; after it, the rest of the
// stream is never read as commands. The two timeouts answer with different
// texts, so the test tells which one fired without measuring time.
func TestDataDeadline(t *testing.T) {
	cfg := testConfig()
	// An idle timeout of 2 s against a line every 100 ms: wide enough for
	// a loaded machine (1 s was not, once, under -race with other tests).
	cfg.IdleTimeout = 2 * time.Second
	cfg.DataTimeout = 4 * time.Second
	g := startGateway(t, cfg, nil, nil)
	c, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	runDialog(t, c, untilData)
	// Trickle a line every 100ms, far within the idle timeout: only the
	// DATA deadline can end this.
	reply := trickle(t, c, func(i int) []byte { return fmt.Appendf(nil, "line %d\r\n", i) }, 10*time.Second)
	buf := make([]byte, 512)
	if !strings.HasPrefix(reply, "421 4.4.2 Message data took longer than allowed") {
		t.Fatalf("want the DATA deadline's 421 4.4.2, got %q", reply)
	}
	// What follows looks like commands; the connection is closed instead.
	fmt.Fprintf(c, ".\r\nMAIL FROM:<smuggled@test.example>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\nx\r\n.\r\n")
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, _ := c.Read(buf)
	if n > 0 {
		t.Errorf("gateway answered after a failed DATA read: %q", buf[:n])
	}
	if len(g.mta.messages()) != 0 || strings.Contains(strings.Join(g.mta.mailFroms(), ","), "smuggled") {
		t.Errorf("internal MTA got something after a failed DATA read")
	}
}

// TestIdleTimeoutInData: a sender that stops in the middle of DATA is cut
// off by the idle timeout, long before the DATA deadline.
func TestIdleTimeoutInData(t *testing.T) {
	cfg := testConfig()
	cfg.IdleTimeout = 300 * time.Millisecond
	cfg.DataTimeout = time.Hour
	g := startGateway(t, cfg, nil, nil)
	dialog(t, g.addr, untilData+`
		> Subject: half a message
		< 421 4.4.2 Idle timeout reading message data
		<EOF`)
	if !strings.Contains(g.log.String(), `"idle_timeout"`) {
		t.Errorf("decision log:\n%s", g.log.String())
	}
}

// TestRcptOvershootNotErrors: 452 to the recipients past the limit is
// normal flow (RFC 5321 section 4.5.3.1.10: the client sends them in
// another transaction), not errors towards max_errors: the message to the
// accepted recipients goes through.
func TestRcptOvershootNotErrors(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRecipients = 2
	cfg.MaxErrors = 3
	g := startGateway(t, cfg, nil, nil)
	var batch, want strings.Builder
	batch.WriteString("MAIL FROM:<a@sender.test>\r\n")
	want.WriteString("< 250 2.1.0\n")
	for i := range 6 {
		fmt.Fprintf(&batch, "RCPT TO:<user%d@example.com>\r\n", i)
		if i < 2 {
			want.WriteString("< 250 2.1.5\n")
		} else {
			want.WriteString("< 452 4.5.3\n")
		}
	}
	batch.WriteString("DATA\r\n")
	want.WriteString("< 354\n")
	dialog(t, g.addr, "< 220\n> EHLO client.test\n< 250\n>> "+fmt.Sprintf("%q", batch.String())+"\n"+want.String()+
		">> \"Subject: x\\r\\n\\r\\nhi\\r\\n.\\r\\n\"\n< 250 2.0.0\n> QUIT\n< 221")
	if n := len(g.mta.messages()); n != 1 {
		t.Fatalf("internal MTA got %d messages, want 1", n)
	}
	if !strings.Contains(g.log.String(), `"too_many_recipients"`) {
		t.Errorf("no decision line for the 452:\n%s", g.log.String())
	}
}

// TestHeloInvalidUTF8InReceived: whatever octets a client gives in EHLO,
// our Received field is valid UTF-8 (RFC 6532).
func TestHeloInvalidUTF8InReceived(t *testing.T) {
	g := startGateway(t, testConfig(), nil, nil)
	dialog(t, g.addr, `
		< 220
		>> "EHLO \xff\xfe.example\r\n"
		< 250
		> MAIL FROM:<a@sender.test>
		< 250
		> RCPT TO:<bob@example.com>
		< 250
		> DATA
		< 354
		>> "Subject: x\r\n\r\nhi\r\n.\r\n"
		< 250
		> QUIT
		< 221`)
	msgs := g.mta.messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	hdr := string(msgs[0].Data)
	hdr = hdr[:strings.Index(hdr, "\r\n\r\n")]
	if !utf8.ValidString(hdr) {
		t.Errorf("relayed header section is not valid UTF-8:\n%q", hdr)
	}
}

// TestReplyLineLength: what a reply echoes of a client's text is cut, so
// that no reply line passes RFC 5321's 512 octets.
func TestReplyLineLength(t *testing.T) {
	g := startGateway(t, testConfig(), nil, nil)
	c, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	r.ReadString('\n')
	dom := strings.Repeat("a", 60) + "." + strings.Repeat("b", 60)
	for len(dom) < 900 {
		dom += "." + strings.Repeat("c", 60)
	}
	fmt.Fprintf(c, "EHLO x\r\nMAIL FROM:<a@sender.test>\r\nRCPT TO:<v@%s>\r\nRSET\r\nMAIL FROM:<a@b> %s=1\r\n", dom, strings.Repeat("K", 400))
	for range 10 {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if len(l) > 512 {
			t.Errorf("reply line of %d octets (RFC 5321 4.5.3.1.5: 512): %.60q...", len(l), l)
		}
	}
}

// TestBody8BitMIMERelayed: BODY=8BITMIME from the client goes on to the
// internal MTA, which offers 8BITMIME (RFC 6152).
func TestBody8BitMIMERelayed(t *testing.T) {
	g := startGateway(t, testConfig(), nil, nil)
	dialog(t, g.addr, `
		< 220
		> EHLO client.test
		< 250
		> MAIL FROM:<a@sender.test> BODY=8BITMIME
		< 250
		> RCPT TO:<bob@example.com>
		< 250
		> DATA
		< 354
		>> "Subject: caf\xc3\xa9\r\n\r\nd\xc3\xa9j\xc3\xa0 vu\r\n.\r\n"
		< 250
		> QUIT
		< 221`)
	if raw := g.mta.rawBytes(); !strings.Contains(string(raw), "MAIL FROM:<a@sender.test> BODY=8BITMIME") {
		t.Errorf("BODY=8BITMIME not passed on:\n%q", raw)
	}
}

// TestDecisionLinesForCutOffs: a connection refused at the per-IP limit,
// and a transaction cut off by the idle timeout, each have their decision
// line.
func TestDecisionLinesForCutOffs(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConnectionsPerIP = 1
	cfg.IdleTimeout = 300 * time.Millisecond
	g := startGateway(t, cfg, nil, nil)
	c1, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	c1.SetDeadline(time.Now().Add(10 * time.Second))
	r1 := bufio.NewReader(c1)
	r1.ReadString('\n') // greeted
	c2, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	c2.SetDeadline(time.Now().Add(10 * time.Second))
	if l, _ := bufio.NewReader(c2).ReadString('\n'); !strings.HasPrefix(l, "421 4.7.0") {
		t.Fatalf("second connection from the address: %q", l)
	}
	c2.Close()
	// The first opens a transaction and falls silent.
	fmt.Fprintf(c1, "EHLO client.test\r\nMAIL FROM:<a@sender.test>\r\n")
	var last string
	for {
		l, err := r1.ReadString('\n')
		if err != nil {
			break
		}
		last = l
	}
	if !strings.HasPrefix(last, "421 4.4.2") {
		t.Fatalf("last reply %q, want the idle timeout's 421", last)
	}
	waitFor(t, "both decision lines", func() bool {
		log := g.log.String()
		return strings.Contains(log, `"rule":"connection_limit"`) && strings.Contains(log, `"rule":"idle_timeout"`)
	})
}

// TestMailSizeParameter: an oversized SIZE is 552 5.3.4 even past int64,
// a signed one and a repeated parameter are syntax errors.
func TestMailSizeParameter(t *testing.T) {
	g := startGateway(t, testConfig(), nil, nil)
	dialog(t, g.addr, `
		< 220
		> EHLO client.test
		< 250
		> MAIL FROM:<a@sender.test> SIZE=99999999999999999999999
		< 552 5.3.4
		> MAIL FROM:<a@sender.test> SIZE=+10
		< 501 5.5.4
		> MAIL FROM:<a@sender.test> SIZE=10 SIZE=20
		< 501 5.5.4
		> MAIL FROM:<a@sender.test> SIZE=10
		< 250
		> QUIT
		< 221`)
}

// TestRcptOvershootBounded: recipients past the limit are not errors up to
// rcptOvershoot past it; past that each counts, so a client cannot name
// recipients for ever.
func TestRcptOvershootBounded(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRecipients = 2
	cfg.MaxErrors = 3
	g := startGateway(t, cfg, nil, nil)
	c, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	go func() {
		var b strings.Builder
		b.WriteString("EHLO client.test\r\nMAIL FROM:<a@sender.test>\r\n")
		for i := range cfg.MaxRecipients + rcptOvershoot + 10 {
			fmt.Fprintf(&b, "RCPT TO:<user%d@example.com>\r\n", i)
		}
		io.WriteString(c, b.String())
	}()
	r := bufio.NewReader(c)
	var n452 int
	var last string
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			break
		}
		if strings.HasPrefix(l, "452") {
			n452++
		}
		last = l
	}
	if !strings.HasPrefix(last, "421 4.7.0") || n452 < rcptOvershoot || n452 > rcptOvershoot+cfg.MaxErrors+1 {
		t.Fatalf("%d 452s, last reply %q; want the cut-off soon after %d past the limit", n452, last, rcptOvershoot)
	}
}

// TestLimitRefusalDoesNotBlockAccept: at max_connections, a trusted PROXY
// peer that has not sent its header yet does not stall the accept loop
// (the refusal reads the client's address, which reads the header) for
// the connections after it: the next one is refused long before the
// header timeout (a minute here).
func TestLimitRefusalDoesNotBlockAccept(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConnections = 1
	cfg.ProxyTrusted = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	cfg.ProxyHeaderTimeout = time.Minute
	g := startGateway(t, cfg, nil, nil)
	hold, err := net.Dial("tcp", g.addr) // takes the one slot
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	hold.Write([]byte("PROXY TCP4 192.0.2.1 192.0.2.2 1000 25\r\n"))
	bufio.NewReader(hold).ReadString('\n')
	slow, err := net.Dial("tcp", g.addr) // refused, but sends no header
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	time.Sleep(100 * time.Millisecond)
	c, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("PROXY TCP4 192.0.2.3 192.0.2.2 1000 25\r\n"))
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	if !strings.HasPrefix(line, "421") {
		t.Fatalf("next connection got %q: the accept loop waited on another client's PROXY header", line)
	}
}

// TestCommandLineDeadline: a command line trickled an octet at a time,
// each octet well within the idle timeout, must still come whole within
// the idle timeout of its first octets; otherwise the session ends with
// 421 4.4.2 and its decision line.
func TestCommandLineDeadline(t *testing.T) {
	cfg := testConfig()
	// An idle timeout of 2 s against an octet every 100 ms (see
	// TestDataDeadline for why not less).
	cfg.IdleTimeout = 2 * time.Second
	cfg.MaxLineLength = 512
	g := startGateway(t, cfg, nil, nil)
	c, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	runDialog(t, c, "< 220\n> EHLO client.test\n< 250\n")
	// 200 octets at one per 100 ms is 20 s: only the line deadline can
	// end this (the line is within max_line_length, so nothing else).
	reply := trickleLine(t, c, "MAIL FROM:<", 20*time.Second)
	if !strings.HasPrefix(reply, "421 4.4.2 Command line took longer than allowed") {
		t.Fatalf("want the line deadline's 421 4.4.2, got %q", reply)
	}
	if log := g.log.String(); !strings.Contains(log, `"rule":"idle_timeout","detail":"command line not complete within limits.idle_timeout"`) {
		t.Errorf("no decision line for the cut: %s", log)
	}
}
