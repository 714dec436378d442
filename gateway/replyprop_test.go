package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestReplyProperty runs seeded random client scripts (valid and invalid
// commands, pipelined batches, DATA bodies with smuggling and dot-stuffing
// edge cases, disconnects mid-command) against a real gateway over TCP and
// checks every reply: well formed (RFC 5321 section 4.2), a code RFC 5321
// section 4.3.2 allows for the command, an enhanced code of the right
// class (RFC 2034, RFC 3463) with the codes the README promises, exactly
// one reply per command, no hang, and that the internal MTA holds exactly
// the messages the client got a 250 for at the end of data.
func TestReplyProperty(t *testing.T) {
	n := 1500
	if testing.Short() {
		n = 150
	}
	cfg := testConfig()
	cfg.MaxErrors = 1 << 20 // every command is answered...
	g := startGateway(t, cfg, nil, nil)
	// ... but for one in eight scripts, run against a gateway with the
	// default cut-off (10 refused commands).
	cut := startGateway(t, testConfig(), g.mta, nil)

	var mu sync.Mutex
	accepted := map[string]bool{} // tokens of messages answered 250 at end of data
	refused := map[string]bool{}  // tokens of messages not answered 250
	jobs := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				p := &propSession{t: t, seed: int64(i), rnd: rand.New(rand.NewSource(int64(i)*7919 + 1))}
				if i%8 == 7 {
					p.maxErrs = 10
					p.run(cut.addr)
				} else {
					p.run(g.addr)
				}
				mu.Lock()
				for _, tok := range p.accepted {
					accepted[tok] = true
				}
				for _, tok := range p.refused {
					refused[tok] = true
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < n; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()

	// The gateway still serves new connections.
	for _, a := range []string{g.addr, cut.addr} {
		dialog(t, a, "< 220\n> EHLO client.test\n< 250\n> NOOP\n< 250 2.0.0\n> QUIT\n< 221 2.0.0")
	}

	got := map[string]bool{}
	for _, m := range g.mta.messages() {
		tok := propToken.FindString(string(m.Data))
		if tok == "" {
			t.Errorf("internal MTA got a message without a token:\n%.300q", m.Data)
			continue
		}
		if got[tok] {
			t.Errorf("internal MTA got %s twice", tok)
		}
		got[tok] = true
		if !accepted[tok] {
			t.Errorf("internal MTA got %s, which the client was not answered 250 for (refused: %v)", tok, refused[tok])
		}
	}
	for tok := range accepted {
		if !got[tok] {
			t.Errorf("client got 250 for %s, the internal MTA does not have it", tok)
		}
	}
	t.Logf("%d scripts, %d messages accepted, %d refused", n, len(accepted), len(refused))
}

var propToken = regexp.MustCompile(`tok-[0-9]+-[0-9]+`)

type propSession struct {
	t        testing.TB
	seed     int64
	rnd      *rand.Rand
	c        net.Conn
	r        *bufio.Reader
	log      strings.Builder
	enhanced bool // ENHANCEDSTATUSCODES advertised (RFC 2034)
	nmsg     int
	accepted []string
	refused  []string
	stopped  bool // a failure was reported, or the script is over
	maxErrs  int  // the gateway's max_errors; 0: no cut-off
	refusals int  // 4xx and 5xx replies so far (at least the errors it counts)
}

// cutOffPossible says the gateway may have hung up (421 4.7.0) after too
// many errors; its 421 may then be lost to the reset our pipelined octets
// cause, so a closed connection is no failure.
func (p *propSession) cutOffPossible() bool { return p.maxErrs > 0 && p.refusals > p.maxErrs }

func (p *propSession) fail(format string, args ...any) {
	if p.stopped {
		return
	}
	p.stopped = true
	p.t.Errorf("script %d: %s\ntranscript:\n%s", p.seed, fmt.Sprintf(format, args...), p.log.String())
}

func (p *propSession) send(b []byte) bool {
	p.log.WriteString("C: " + strconv.Quote(string(trunc(b, 300))) + "\n")
	p.c.SetWriteDeadline(time.Now().Add(20 * time.Second)) // hang guard only
	if _, err := p.c.Write(b); err != nil {
		if p.cutOffPossible() {
			p.stopped = true // over, no failure: stop quietly
			return false
		}
		p.fail("write: %v", err)
		return false
	}
	return true
}

func trunc(b []byte, n int) []byte {
	if len(b) > n {
		return append(append([]byte(nil), b[:n]...), "..."...)
	}
	return b
}

// readReply reads one reply and checks its form (RFC 5321 section 4.2,
// 4.5.3.1.5). It returns the code and the last line's text.
func (p *propSession) readReply() (int, string, bool) {
	code := 0
	for {
		p.c.SetReadDeadline(time.Now().Add(20 * time.Second)) // hang guard only
		line, err := p.r.ReadString('\n')
		p.log.WriteString("S: " + strconv.Quote(line) + "\n")
		if err != nil {
			if line == "" && (errors.Is(err, io.EOF) || isConnReset(err)) && p.cutOffPossible() {
				p.stopped = true // over, no failure: stop quietly
				return 0, "", false
			}
			p.fail("reading a reply: %v (partial %q)", err, line)
			return 0, "", false
		}
		if len(line) > 512 {
			p.fail("reply line of %d octets, RFC 5321 section 4.5.3.1.5 allows 512", len(line))
		}
		if !strings.HasSuffix(line, "\r\n") {
			p.fail("reply line not CRLF-terminated (bare LF)")
			return 0, "", false
		}
		body := line[:len(line)-2]
		for i := 0; i < len(body); i++ {
			// RFC 5321 section 4.2: textstring = 1*(%d09 / %d32-126);
			// no CR, LF, NUL or other control octets inside a reply.
			if c := body[i]; c != '\t' && (c < 32 || c >= 127) {
				p.fail("control octet %#x in reply line", c)
				return 0, "", false
			}
		}
		if len(body) < 3 || body[0] < '2' || body[0] > '5' || body[1] < '0' || body[1] > '9' || body[2] < '0' || body[2] > '9' {
			p.fail("reply line without a 2xx-5xx code")
			return 0, "", false
		}
		c, _ := strconv.Atoi(body[:3])
		if code != 0 && c != code {
			p.fail("multi-line reply changes code %d -> %d", code, c)
			return 0, "", false
		}
		code = c
		if len(body) == 3 {
			return code, "", true
		}
		switch body[3] {
		case '-':
			continue
		case ' ':
			return code, body[4:], true
		default:
			p.fail("reply line: code not followed by '-' or ' '")
			return 0, "", false
		}
	}
}

var enhRE = regexp.MustCompile(`^([245])\.([0-9]{1,3})\.([0-9]{1,3}) `)

// allowed are the codes RFC 5321 section 4.3.2 lists per command; 500,
// 501 and 421 may answer any command ("in addition to the codes listed
// below, any SMTP command can return any of the following codes").
// Commands RFC 5321 does not define (BDAT, AUTH, STARTTLS not offered,
// unknown verbs) get 500 or 502 (RFC 5321 section 4.2.4).
var allowed = map[string][]int{
	"EHLO": {250, 504, 550, 502},
	"HELO": {250, 504, 550, 502},
	"MAIL": {250, 552, 451, 452, 550, 553, 503, 455, 555},
	"RCPT": {250, 251, 252, 550, 551, 552, 553, 450, 451, 452, 503, 455, 555},
	"DATA": {354, 503, 554, 451}, // 451: internal MTA lost (README)
	"RSET": {250},
	"VRFY": {250, 251, 252, 550, 551, 553, 502, 504},
	"EXPN": {250, 252, 550, 502, 504},
	"HELP": {211, 214, 502, 504},
	"NOOP": {250},
	"QUIT": {221},
	// RFC 3207 section 4: 220, 454, 501; not offered, it is not a
	// command of this server (RFC 5321 section 4.2.4: 502).
	"STARTTLS": {220, 454, 502, 503},
	// after the end of data (RFC 5321 section 4.3.2, DATA: 250, 552,
	// 554, 451, 452, 450, 550)
	"<data>": {250, 552, 554, 451, 452, 450, 550},
	// a reply of the internal MTA's, relayed: what RFC 5321 allows it
	// at the end of data, and 500 (line too long, section 4.3.2)
	"<data, relayed>": {250, 552, 554, 451, 452, 450, 550},
	// a line too long or not ended by CRLF (RFC 5321 sections 2.3.8,
	// 4.3.2: 500 "may include errors such as command line too long")
	"<malformed>": {500},
}

// promised are the enhanced codes the README ("Replies we write")
// promises per basic code for what these scripts can provoke.
var promised = map[int][]string{
	500: {"5.5.1", "5.5.2"},
	501: {"5.5.4", "5.1.7", "5.1.3"},
	502: {"5.5.1"},
	503: {"5.5.1"},
	555: {"5.5.4"},
	553: {"5.6.7"},
	554: {"5.5.1"},
	552: {"5.3.4"},
	550: {"5.7.1", "5.5.2", "5.6.0"},
	452: {"4.5.3"},
}

// check checks one reply to verb (its unit as sent: unit).
func (p *propSession) check(verb string, code int, text string) {
	if code >= 400 {
		p.refusals++
	}
	if code == 421 && strings.HasPrefix(text, "4.7.0 Too many errors") && !p.cutOffPossible() {
		p.fail("cut off after %d refusals, max_errors %d", p.refusals-1, p.maxErrs)
	}
	ok := code == 500 || code == 501 || code == 421
	list, known := allowed[verb]
	if !known {
		list = []int{502}
	}
	for _, c := range list {
		ok = ok || c == code
	}
	if !ok {
		p.fail("reply %d to %s: RFC 5321 section 4.3.2 does not allow it", code, verb)
		return
	}
	// RFC 2034 section 3: enhanced codes on every reply but the greeting
	// and the replies to HELO/EHLO; RFC 3463 section 3.1: the class is 2,
	// 4 or 5, so a 3xx (354, a 334) carries none.
	if !p.enhanced || code/100 == 3 || verb == "EHLO" || verb == "HELO" {
		return
	}
	m := enhRE.FindStringSubmatch(text + " ")
	if m == nil {
		p.fail("reply %d %q to %s has no enhanced status code", code, text, verb)
		return
	}
	if int(m[1][0]-'0') != code/100 {
		p.fail("reply %d %q: enhanced code class differs from the basic code's", code, text)
		return
	}
	if want, ok := promised[code]; ok && verb != "<data, relayed>" {
		enh := m[1] + "." + m[2] + "." + m[3]
		found := false
		for _, w := range want {
			found = found || w == enh
		}
		if !found {
			p.fail("reply %d %s to %s: README promises %v", code, enh, verb, want)
		}
	}
}

// unitVerb is the verb of a unit, one command line as the gateway reads it:
// octets up to and including an LF; malformed when too long or not CRLF.
func unitVerb(u []byte) (verb string, malformed bool) {
	if len(u) > 2048 || len(u) < 2 || u[len(u)-2] != '\r' || bytes.IndexByte(u[:len(u)-2], '\r') >= 0 {
		return "", true
	}
	v, _ := splitCommand(string(u[:len(u)-2]))
	return v, false
}

func (p *propSession) run(addr string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		p.fail("dial: %v", err)
		return
	}
	defer c.Close()
	p.c, p.r = c, bufio.NewReader(c)
	code, _, ok := p.readReply()
	if !ok {
		return
	}
	if code != 220 {
		p.fail("greeting %d", code)
		return
	}
	steps := 3 + p.rnd.Intn(25)
	for step := 0; step < steps && !p.stopped; step++ {
		if p.rnd.Intn(40) == 0 {
			// Disconnect mid-command.
			cmd := p.command()
			p.send([]byte(cmd[:min(len(cmd)-1, 1+p.rnd.Intn(6))]))
			return
		}
		batch, early := p.batch()
		if early != nil {
			batch = batch[:len(batch)-len(early.wire)]
		}
		units := bytes.SplitAfter(batch, []byte("\n"))
		if early != nil {
			batch = append(batch, early.wire...)
		}
		if len(units[len(units)-1]) == 0 {
			units = units[:len(units)-1]
		}
		if !p.send(batch) {
			return
		}
		for i, u := range units {
			verb, bad := unitVerb(u)
			code, text, ok := p.readReply()
			if !ok {
				return
			}
			if bad {
				verb = "<malformed>"
			}
			p.check(verb, code, text)
			if bad && code != 421 && (code != 500 || !strings.HasPrefix(text, "5.5.2 ")) {
				p.fail("reply %d %q to a malformed or too long line, want 500 5.5.2", code, text)
			}
			switch {
			case code == 421:
				p.expectClose()
				return
			case verb == "QUIT" && code == 221:
				p.expectClose()
				return
			case verb == "EHLO" && code == 250:
				p.enhanced = true // it always advertises ENHANCEDSTATUSCODES (TestEHLOReply)
			case code == 354:
				if i != len(units)-1 {
					p.fail("354 to a DATA that is not the batch's last line")
					return
				}
				if !p.data(early) {
					return
				}
			}
		}
	}
	if p.stopped {
		return
	}
	// One reply per command: the next reply is QUIT's.
	if !p.send([]byte("QUIT\r\n")) {
		return
	}
	code, text, ok := p.readReply()
	if ok {
		p.check("QUIT", code, text)
	}
	if ok && code != 221 && !(code == 421 && p.cutOffPossible()) {
		p.fail("QUIT answered %d %q: replies out of step", code, text)
	}
}

func (p *propSession) expectClose() {
	p.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	b, err := p.r.ReadByte()
	if err == nil {
		p.fail("octet %q after the closing reply", b)
		return
	}
	if !errors.Is(err, io.EOF) && !isConnReset(err) {
		p.fail("want the connection closed, got %v", err)
	}
}

// msg is a message as sent after DATA, with what its end must get.
type msg struct {
	tok       string
	wire      []byte
	complete  bool // ends with the end marker (else: the client hangs up)
	long      bool // a line past 1000 octets: the internal MTA may refuse
	bare, nul bool
	big       bool
}

// message makes a message with dot-stuffing and smuggling edge cases.
func (p *propSession) message() *msg {
	p.nmsg++
	tok := fmt.Sprintf("tok-%d-%d", p.seed, p.nmsg)
	var b bytes.Buffer
	b.WriteString("Subject: " + tok + "\r\nX-Token: " + tok + "\r\n")
	if p.rnd.Intn(10) > 0 {
		b.WriteString("\r\n") // else: no body, the header section is the message
	}
	bare, nul, big, long := false, false, false, false
	lines := p.rnd.Intn(12)
	for i := 0; i < lines; i++ {
		var l string
		switch p.rnd.Intn(16) {
		case 0:
			l = "."
		case 1:
			l = ".."
		case 2:
			l = ".x"
		case 3:
			l = "a\n.\r\nMAIL FROM:<smuggle@x.test>" // LF . CR LF: content
			bare = true
		case 4:
			l = "b\r.\rc"
			bare = true
		case 5:
			l = "c\n.b"
			bare = true
		case 6:
			l = "nul\x00here"
			nul = true
		case 7:
			l = "8bit \xc3\xa9\xff"
		case 8:
			if p.rnd.Intn(2) == 0 {
				l = strings.Repeat("L", 998) // the longest line RFC 5321 section 4.5.3.1.6 allows
			} else {
				// Past that limit: the gateway takes it, the internal MTA
				// (go-smtp, 2000 octets) may refuse it, and its reply
				// reaches the client (README: "with their text and an
				// enhanced code of their class").
				l = strings.Repeat("L", 1000+p.rnd.Intn(2000))
				long = true
			}
		case 9:
			if p.rnd.Intn(4) == 0 {
				l = strings.Repeat("B", 70<<10) // past max_message_size
				big = true
			}
		case 10:
			l = ""
		case 11:
			l = "cr at the end\r" // then CR LF: a bare CR, not a line end
			bare = true
		case 12:
			l = "\x00"
			nul = true
		default:
			l = "line " + strconv.Itoa(p.rnd.Int())
		}
		if strings.HasPrefix(l, ".") {
			l = "." + l // dot-stuffing (RFC 5321 section 4.5.2)
		}
		b.WriteString(l + "\r\n")
	}
	m := &msg{tok: tok, long: long, bare: bare, nul: nul, big: big, complete: p.rnd.Intn(30) > 0}
	if m.complete {
		b.WriteString(".\r\n")
	}
	m.wire = b.Bytes()
	return m
}

// data sends a message (unless it went pipelined with DATA, early) and
// checks the reply at its end.
func (p *propSession) data(m *msg) bool {
	if m == nil {
		m = p.message()
		if !p.send(m.wire) {
			return false
		}
	}
	tok, long, bare, nul, big := m.tok, m.long, m.bare, m.nul, m.big
	if !m.complete {
		// Disconnect inside the message: it must not reach the MTA.
		p.refused = append(p.refused, tok)
		p.stopped = true // over, no failure: stop quietly
		return false
	}
	code, text, ok := p.readReply()
	if !ok {
		return false
	}
	verb := "<data>"
	if long {
		verb = "<data, relayed>"
	}
	p.check(verb, code, text)
	want := "250 2.0.0"
	switch {
	case long && !big && !bare && !nul:
		want = strconv.Itoa(code) // the internal MTA's choice
	case big:
		want = "552 5.3.4"
	case bare:
		want = "550 5.5.2"
	case nul:
		want = "550 5.6.0"
	}
	if got := strconv.Itoa(code) + " " + text; !strings.HasPrefix(got, want) {
		p.fail("end of data: got %q, want %s", got, want)
	}
	if code == 250 {
		p.accepted = append(p.accepted, tok)
	} else {
		p.refused = append(p.refused, tok)
	}
	return code != 421
}

// batch is one write: a single command or a pipelined batch. A DATA
// command is only ever last, the message follows its 354.
func (p *propSession) batch() ([]byte, *msg) {
	if p.rnd.Intn(4) == 0 {
		// A valid transaction, so that messages get through.
		b := p.randCase("RSET") + "\r\n" + p.randCase("EHLO") + " client.test\r\n" +
			p.randCase("MAIL") + " FROM:<a@sender.test>" + p.pick("", " BODY=8BITMIME", " SIZE=1000", " SMTPUTF8") + "\r\n" +
			p.randCase("RCPT") + " TO:<" + p.pick("bob@example.com", "x@elsewhere.test", "carol@example.org", "\xc3\xbcn\xc3\xaf@example.com", "x@\xc3\xabxample.com") + ">\r\n"
		if p.rnd.Intn(3) > 0 {
			b += p.randCase("DATA") + "\r\n"
			if strings.HasSuffix(b, "<bob@example.com>\r\n"+b[len(b)-6:]) && p.rnd.Intn(3) == 0 {
				// The message before the 354, which RFC 2920 section
				// 3.1 forbids: the gateway must read it as the message
				// after its 354, never as commands.
				m := p.message()
				return append([]byte(b), m.wire...), m
			}
		}
		return []byte(b), nil
	}
	n := 1
	if p.rnd.Intn(3) == 0 {
		n = 2 + p.rnd.Intn(6)
	}
	var b []byte
	for i := 0; i < n; i++ {
		cmd := p.command()
		units := bytes.SplitAfter([]byte(cmd), []byte("\n"))
		last := i == n-1
		hasData := false
		for j, u := range units {
			if v, bad := unitVerb(u); !bad && v == "DATA" && (!last || j < len(units)-2 || j == len(units)-2 && len(units[len(units)-1]) > 0) {
				hasData = true
			}
		}
		if hasData {
			cmd = "NOOP\r\n"
		}
		b = append(b, cmd...)
	}
	return b, nil
}

func (p *propSession) pick(s ...string) string { return s[p.rnd.Intn(len(s))] }

func (p *propSession) randCase(s string) string {
	if p.rnd.Intn(2) == 0 {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if p.rnd.Intn(2) == 0 {
			if 'a' <= c && c <= 'z' {
				b[i] = c - 32
			} else if 'A' <= c && c <= 'Z' {
				b[i] = c + 32
			}
		}
	}
	return string(b)
}

func (p *propSession) addr() string {
	return p.pick("a@sender.test", "bob@example.com", "carol@example.org", "x@elsewhere.test",
		"", "Postmaster", "postmaster", "a@@b", "bob@", "@example.com:bob@example.com",
		"ünï@example.com", "v%elsewhere.test@example.com", "\"q u\"@example.com", "a@[127.0.0.1]",
		strings.Repeat("l", 300)+"@example.com", "bob@"+strings.Repeat("d", 250)+".com", "a\x00b@example.com",
		"a@exa\xffmple.com", "x@ex ample.com", "x@\xc3\xabxample.com", "\xce\xb4@\xcf\x80\xce\xb1.test", "x@exa\xc3")
}

func (p *propSession) path() string {
	a := p.addr()
	switch p.rnd.Intn(8) {
	case 0:
		return a // missing brackets
	case 1:
		return "<" + a // missing close
	case 2:
		return " <" + a + ">"
	default:
		return "<" + a + ">"
	}
}

func (p *propSession) params() string {
	if p.rnd.Intn(2) == 0 {
		return ""
	}
	return " " + p.pick("SIZE=100", "SIZE=99999999", "SIZE=abc", "SIZE=", "BODY=8BITMIME", "BODY=7BIT",
		"BODY=BINARYMIME", "SMTPUTF8", "SMTPUTF8=x", "FOO=bar", "NOTIFY=NEVER", "=x", "SIZE=1 SIZE=2",
		strings.Repeat("K", 400)+"=1", "X=\x00", "X=\xff")
}

// command is one command line, usually well terminated.
func (p *propSession) command() string {
	var s string
	switch p.rnd.Intn(22) {
	case 0, 1:
		s = p.randCase(p.pick("EHLO", "HELO")) + p.pick(" client.test", "", " ", " [127.0.0.1]", " a b", " \xff\xfe.example", " x\x00y", " "+strings.Repeat("h", 500))
	case 2, 3, 4:
		s = p.randCase("MAIL") + " " + p.randCase(p.pick("FROM:", "FROM: ", "TO:", "FROM", "")) + p.path() + p.params()
	case 5, 6, 7:
		s = p.randCase("RCPT") + " " + p.randCase(p.pick("TO:", "TO: ", "FROM:", "")) + p.path() + p.params()
	case 8, 9:
		s = p.randCase("DATA") + p.pick("", "", "", " x")
	case 10:
		s = p.randCase("RSET") + p.pick("", "", " x")
	case 11:
		s = p.randCase("NOOP") + p.pick("", " hello")
	case 12:
		s = p.randCase("HELP") + p.pick("", " MAIL")
	case 13:
		s = p.randCase(p.pick("VRFY", "EXPN")) + p.pick(" bob", "", " <bob@example.com>")
	case 14:
		s = p.randCase("STARTTLS") + p.pick("", " x")
	case 15:
		s = p.randCase(p.pick("BDAT", "AUTH", "ETRN", "TURN", "SEND", "SOML", "SAML")) + p.pick(" 10 LAST", " PLAIN", "")
	case 16:
		s = p.pick("", " ", "XYZZY", "MAILFROM:<a@b>", "\x00", "\xff\xfe", "  NOOP", "mail\tFROM:<a@b>", "QUIT now")
	case 17:
		if p.rnd.Intn(4) == 0 {
			s = p.randCase("QUIT")
		} else {
			s = "NOOP"
		}
	default:
		s = p.randCase("NOOP")
	}
	// Mutations.
	switch p.rnd.Intn(12) {
	case 0:
		s = insertAt(p.rnd, s, "\x00")
	case 1:
		s = insertAt(p.rnd, s, "\xe9")
	case 2:
		s = insertAt(p.rnd, s, "\r")
	case 3:
		s = insertAt(p.rnd, s, "\n")
	case 4:
		s += strings.Repeat("Z", 2100+p.rnd.Intn(3000)) // past the line limit
	case 5:
		return s + p.pick("\n", "\r", "\r\r\n") + "NOOP\r\n" // bad line end, then a good line
	}
	return s + "\r\n"
}

func insertAt(r *rand.Rand, s, x string) string {
	i := r.Intn(len(s) + 1)
	return s[:i] + x + s[i:]
}
