package gateway

// Benchmarks of the gateway's hot paths. They print figures and assert
// nothing about time; `make bench` runs them (never `make test`):
//
//	go test -run '^$' -bench . -benchmem ./gateway
//	go test -run '^$' -bench 'Session/checks' -cpuprofile cpu.out ./gateway
//
// The session benchmarks run one SMTP transaction over loopback per
// iteration, through a real gateway to a discarding go-smtp sink, with a
// raw-socket client (pipelined MAIL, RCPT, DATA), so that the client costs
// as little as possible next to the gateway. "checks" runs the Judge with
// every check against the in-process test DNS server and an in-memory
// greylist that allows the client's network.

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"

	"github.com/mxgate/gatewayd/checks"
	"github.com/mxgate/gatewayd/greylist"
	"github.com/mxgate/gatewayd/internal/dnstest"
	"github.com/mxgate/gatewayd/policy"
)

// ---- A discarding sink (the harness's mta keeps every message and a raw
// transcript, which would grow with b.N).

type benchSinkBackend struct{}

func (benchSinkBackend) NewSession(*smtp.Conn) (smtp.Session, error) { return benchSinkSession{}, nil }

type benchSinkSession struct{}

func (benchSinkSession) Reset()                               {}
func (benchSinkSession) Logout() error                        { return nil }
func (benchSinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (benchSinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (benchSinkSession) Data(r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	return err
}

func startBenchSink(b *testing.B) string {
	b.Helper()
	srv := smtp.NewServer(benchSinkBackend{})
	srv.Domain = "sink.test"
	srv.ErrorLog = logDiscard{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(l)
	b.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// startBenchGateway runs a gateway relaying to a discarding sink.
func startBenchGateway(b *testing.B, hook Hook) *testGateway {
	b.Helper()
	up := NewSMTPUpstream(SMTPUpstreamConfig{
		Addrs: []string{startBenchSink(b)}, Helo: "mx.test",
		ConnectTimeout: 5 * time.Second, CommandTimeout: 5 * time.Second, DataTimeout: 5 * time.Second,
		MaxIdle: 16,
	})
	cfg := testConfig()
	cfg.MaxMessageSize = 4 << 20
	g := startGatewayUpstream(b, cfg, up, nil, hook)
	// The decision log would grow with b.N: send it nowhere.
	g.srv.decisions = NewDecisionLogJSON(io.Discard) // as the daemon writes it
	return g
}

// benchMessage builds a plain message of about size octets, CRLF.
func benchMessage(from string, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <bob@example.com>\r\nSubject: bench\r\nDate: Sun, 29 Nov 2026 12:00:00 +0000\r\nMessage-ID: <bench@sender.test>\r\n\r\n", from)
	line := "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n"
	for b.Len()+len(line) <= size {
		b.WriteString(line)
	}
	return b.Bytes()
}

// stuffed returns msg dot-stuffed with the end marker.
func stuffed(msg []byte) []byte {
	var b bytes.Buffer
	for _, line := range bytes.SplitAfter(msg, []byte("\r\n")) {
		if len(line) > 0 && line[0] == '.' {
			b.WriteByte('.')
		}
		b.Write(line)
	}
	b.WriteString(".\r\n")
	return b.Bytes()
}

// benchClient is a raw SMTP client: one write per pipelined group.
type benchClient struct {
	c net.Conn
	r *bufio.Reader
}

func dialBench(b *testing.B, addr, src string) *benchClient {
	d := net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	bc := &benchClient{c: c, r: bufio.NewReader(c)}
	c.SetDeadline(time.Now().Add(time.Minute))
	bc.expect(b, 220)
	bc.send(b, "EHLO mail.client.test\r\n")
	bc.expect(b, 250)
	return bc
}

func (bc *benchClient) send(b *testing.B, s string) {
	if _, err := io.WriteString(bc.c, s); err != nil {
		b.Fatal(err)
	}
}

func (bc *benchClient) expect(b *testing.B, code int) {
	line, err := readReply(bc.r)
	if err != nil {
		b.Fatalf("want %d, read error %v", code, err)
	}
	if !strings.HasPrefix(line, fmt.Sprint(code)) {
		b.Fatalf("want %d, got %q", code, line)
	}
}

func (bc *benchClient) transaction(b *testing.B, envelope string, data []byte) {
	bc.send(b, envelope)
	bc.expect(b, 250)
	bc.expect(b, 250)
	bc.expect(b, 354)
	if _, err := bc.c.Write(data); err != nil {
		b.Fatal(err)
	}
	bc.expect(b, 250)
}

func (bc *benchClient) quit(b *testing.B) {
	bc.send(b, "QUIT\r\n")
	bc.expect(b, 221)
	bc.c.Close()
}

// startChecked runs a gateway with the Judge and every check on, against
// the test DNS server; the message is DKIM-signed with a key published
// there, so SPF, DKIM, DMARC and iprev all pass for a client at 127.0.0.1.
func startChecked(b *testing.B) (*testGateway, []byte) {
	g, msg, _ := startCheckedDNS(b)
	return g, msg
}

// startCheckedDNS is startChecked, also returning the test DNS server.
func startCheckedDNS(b *testing.B) (*testGateway, []byte, *dnstest.Server) {
	srv := dnstest.Start(b, "testdata/checks.zone")
	res, err := checks.NewResolver(checks.DNSConfig{Servers: []string{srv.Addr()}, Timeout: 2 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	bl, err := checks.NewDNSBL(checks.DNSBLConfig{Zones: []checks.ZoneConfig{{Zone: "zen.test"}}}, res, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	gcfg := greylist.DefaultConfig()
	gcfg.Enabled = true
	gcfg.AllowCIDRs = []string{"127.0.0.0/8"}
	gl, err := greylist.Open(gcfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { gl.Close() })
	c := Checks{Resolver: res, DNSBL: bl, SPF: checks.NewSPF(checks.SPFConfig{}, res),
		DKIM: checks.NewDKIM(checks.DKIMConfig{}, res), DMARC: checks.NewDMARC(checks.DMARCConfig{}, res),
		IPRev: true, Greylist: gl}
	j := &Judge{Checks: c, Policy: func() Evaluator { return DefaultPolicy }, Logger: slog.New(slog.DiscardHandler), Hostname: "mx.test"}

	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	if err := srv.Add("bench._domainkey.sender.test. 300 IN TXT \"v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub) + "\""); err != nil {
		b.Fatal(err)
	}
	var signed bytes.Buffer
	if err := dkim.Sign(&signed, bytes.NewReader(benchMessage("alice@sender.test", 4096)), &dkim.SignOptions{
		Domain: "sender.test", Selector: "bench", Signer: priv,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
	}); err != nil {
		b.Fatal(err)
	}
	return startBenchGateway(b, j), signed.Bytes(), srv
}

// BenchmarkRefusal: a DNSBL-listed client connects, is refused at connect
// (554) and hangs up. "warm" is one listed address (its answers cached),
// "cold" a new address each time (listed by a wildcard), so that every
// refusal asks the DNS, as most refusals of a public MX do. The figure
// includes the client and the test DNS server, in this process.
func BenchmarkRefusal(b *testing.B) {
	for _, cold := range []bool{false, true} {
		b.Run(map[bool]string{false: "warm", true: "cold"}[cold], func(b *testing.B) {
			g, _, srv := startCheckedDNS(b)
			if err := srv.Add("*.32.127.zen.test. 300 IN A 127.0.0.2"); err != nil {
				b.Fatal(err)
			}
			n := 0
			b.ReportAllocs()
			for b.Loop() {
				src := "127.0.0.2"
				if cold {
					n++
					src = fmt.Sprintf("127.32.%d.%d", n>>8&255, n&255)
				}
				d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
				c, err := d.Dial("tcp", g.addr)
				if err != nil {
					b.Fatal(err)
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				line, err := readReply(bufio.NewReader(c))
				if err != nil || !strings.HasPrefix(line, "554") {
					b.Fatalf("from %s: %q %v", src, line, err)
				}
				c.Close()
			}
		})
	}
}

// BenchmarkSession: one 4 KB message per iteration through the gateway to
// the sink; "new-conn" opens a connection per message (greeting, EHLO,
// transaction, QUIT), "reuse" keeps one open. "nochecks" is the session
// machine and the relay alone; "checks" adds the Judge with every check.
func BenchmarkSession(b *testing.B) {
	for _, withChecks := range []bool{false, true} {
		for _, reuse := range []bool{false, true} {
			name := map[bool]string{false: "nochecks", true: "checks"}[withChecks] + "/" + map[bool]string{false: "new-conn", true: "reuse"}[reuse]
			b.Run(name, func(b *testing.B) {
				var g *testGateway
				var msg []byte
				from := "alice@sender.test"
				if withChecks {
					g, msg = startChecked(b)
				} else {
					g, msg = startBenchGateway(b, nil), benchMessage(from, 4096)
				}
				data := stuffed(msg)
				envelope := "MAIL FROM:<" + from + ">\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"
				// Warm up: the upstream pool, the DNS cache.
				w := dialBench(b, g.addr, "127.0.0.1")
				w.transaction(b, envelope, data)
				w.quit(b)
				b.SetBytes(int64(len(msg)))
				b.ReportAllocs()
				b.ResetTimer()
				if reuse {
					c := dialBench(b, g.addr, "127.0.0.1")
					for b.Loop() {
						c.transaction(b, envelope, data)
					}
					b.StopTimer()
					c.quit(b)
					return
				}
				for b.Loop() {
					c := dialBench(b, g.addr, "127.0.0.1")
					c.transaction(b, envelope, data)
					c.quit(b)
				}
			})
		}
	}
}

// BenchmarkReceivedField builds our Received field, with and without TLS.
func BenchmarkReceivedField(b *testing.B) {
	ri := receivedInfo{Helo: "mail.client.test", RDNS: "mail.client.test", IP: "192.0.2.25",
		Host: "mx.example.com", Proto: "ESMTP", QueueID: newID(), Rcpt: "bob@example.com",
		When: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC), Software: "gatewayd"}
	b.Run("plain", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = receivedField(ri)
		}
	})
	ri.Proto = "ESMTPS"
	ri.TLS = &tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256}
	b.Run("tls", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = receivedField(ri)
		}
	})
}

// BenchmarkDataReader reads a DATA section (dot-stuffed, with the end
// marker) into a discarding writer.
func BenchmarkDataReader(b *testing.B) {
	for _, size := range []int{4 << 10, 1 << 20} {
		msg := benchMessage("alice@sender.test", size)
		// Some lines start with a dot, to exercise unstuffing.
		msg = bytes.ReplaceAll(msg, []byte("\r\nLorem"), []byte("\r\n.orem"))
		data := stuffed(msg)
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			src := bytes.NewReader(data)
			br := bufio.NewReaderSize(src, 4096)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				src.Reset(data)
				br.Reset(src)
				d := dataReader{r: br, w: io.Discard, max: 25 << 20}
				if _, err := d.run(); err != nil || d.bareCR || d.bareLF || d.nul {
					b.Fatalf("run: %v %+v", err, d)
				}
			}
		})
	}
}

// BenchmarkParsePathArg parses MAIL and RCPT arguments.
func BenchmarkParsePathArg(b *testing.B) {
	cases := []struct {
		name, arg string
		null      bool
	}{
		{"simple", "<alice@example.com>", false},
		{"params", "<alice@example.com> SIZE=4096 BODY=8BITMIME", true},
		{"quoted", "<\"alice smith\"@example.com>", false},
		{"route", "<@relay.example.net,@other.example.org:alice@example.com>", false},
		{"idn", "<alice@bücher.example>", false},
		{"null", "<>", true},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			if _, _, err := parsePathArg(c.arg, c.null); err != nil {
				b.Fatalf("%q: %v", c.arg, err)
			}
			b.ReportAllocs()
			for b.Loop() {
				parsePathArg(c.arg, c.null)
			}
		})
	}
}

// BenchmarkDecisionLog: one data-stage line of a relayed message with the
// check results of a session where every check ran, JSON to io.Discard,
// through slog and written directly (what the daemon does).
func BenchmarkDecisionLog(b *testing.B) {
	st := &State{SessionID: "9KNSBBXL03LSNH92", Client: netip.MustParseAddrPort("192.0.2.7:40000"),
		ReverseName: "h7.client.bench.test", Helo: "h7.client.bench.test", QueueID: "9KNSBBXL03LSNH93",
		From: Address{Local: "load", Domain: "bench.test"}, HasFrom: true}
	st.SetResult("dnsbl", []zoneLog{})
	st.SetResult("iprev", iprevLog{Result: "pass", Name: "h7.client.bench.test"})
	st.SetResult("spf", spfLog{Result: "pass", Domain: "bench.test", Identity: "mailfrom"})
	st.SetResult("greylist", greylistLog{Action: "pass", Reason: "known triplet", Network: "192.0.2.0/24"})
	st.SetResult("dkim", []dkimLog{{D: "bench.test", S: "s1", Result: "pass"}})
	st.SetResult("dmarc", dmarcLog{Result: "pass", Domain: "bench.test", Policy: "reject"})
	d := &Decision{Stage: policy.StageData, Action: policy.ActionRelay, Rcpts: []string{"user@example.com"},
		Reply:    policy.Reply{Code: 250, Enhanced: "2.0.0", Text: "Ok: queued as 9KNSBBXL03LSNH93"},
		Reasons:  []policy.Reason{{Rule: "dkim_pass", Score: -1}},
		Upstream: &UpstreamResult{Addr: "127.0.0.1:2526", Reply: policy.Reply{Code: 250, Enhanced: "2.0.0", Text: "OK: queued"}},
		Size:     4400, Duration: 1500 * time.Microsecond}
	for _, c := range []struct {
		name string
		dl   *DecisionLog
	}{
		{"slog", NewDecisionLog(slog.NewJSONHandler(io.Discard, nil))},
		{"direct", NewDecisionLogJSON(io.Discard)},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.dl.log(st, d)
			}
		})
	}
}

// BenchmarkAuthenticationResults builds the Authentication-Results field of
// a message with every check's result, as outgoing does.
func BenchmarkAuthenticationResults(b *testing.B) {
	in := checks.AuthResultsInput{
		IPRev: &checks.IPRevResult{Result: "pass", IP: netip.MustParseAddr("192.0.2.1"), Name: "mx.example.com"},
		SPF:   &checks.SPFResult{Result: checks.SPFPass, Identity: checks.IdentityMailFrom, Sender: "bounce@example.com", Domain: "example.com"},
		DKIM: &checks.DKIMResult{Signatures: []checks.DKIMSignature{
			{Domain: "example.com", Selector: "sel1", Algorithm: "rsa-sha256", Identifier: "@example.com", Result: checks.DKIMPass, BPrefix: "abcdEFGH"},
		}},
		DMARC: &checks.DMARCResult{Result: checks.DMARCPass, Domain: "example.com", Policy: "reject"},
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = checks.AuthenticationResultsField("mx.example.com", in)
	}
}

// BenchmarkSessionLarge: a 1 MB message per iteration on a kept-open
// connection, the session machine and the relay alone, sent upstream with
// BDAT and with DATA (dot-stuffed): how the message's octets are read
// from the client and written to the internal MTA.
func BenchmarkSessionLarge(b *testing.B) {
	for _, chunking := range []bool{true, false} {
		b.Run(map[bool]string{true: "bdat", false: "data"}[chunking], func(b *testing.B) {
			up := NewSMTPUpstream(SMTPUpstreamConfig{
				Addrs: []string{startBenchSink(b)}, Helo: "mx.test",
				ConnectTimeout: 5 * time.Second, CommandTimeout: 5 * time.Second, DataTimeout: 5 * time.Second,
				MaxIdle: 16, NoChunking: !chunking,
			})
			cfg := testConfig()
			cfg.MaxMessageSize = 4 << 20
			cfg.MemoryThreshold = 4 << 20
			g := startGatewayUpstream(b, cfg, up, nil, nil)
			g.srv.decisions = NewDecisionLogJSON(io.Discard)
			from := "alice@sender.test"
			msg := benchMessage(from, 1<<20)
			data := stuffed(msg)
			envelope := "MAIL FROM:<" + from + ">\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"
			c := dialBench(b, g.addr, "127.0.0.1")
			c.transaction(b, envelope, data)
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				c.transaction(b, envelope, data)
			}
			b.StopTimer()
			c.quit(b)
		})
	}
}
