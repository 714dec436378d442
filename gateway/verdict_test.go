package gateway

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/pires/go-proxyproto"

	"github.com/mxgate/gatewayd/maildir"
	"github.com/mxgate/gatewayd/policy"
)

// stageHook returns v at one stage and continues elsewhere.
func stageHook(at policy.Stage, v policy.Verdict) Hook {
	return HookFunc(func(_ context.Context, stage policy.Stage, st *State) policy.Verdict {
		if stage == at {
			return v
		}
		return policy.Continue
	})
}

// TestVerdictsAtEachStage: each hook verdict at each stage gives the right
// reply, the right effect at the internal MTA, and a decision line.
func TestVerdictsAtEachStage(t *testing.T) {
	reject := policy.Verdict{Action: policy.ActionReject, Reasons: []policy.Reason{{Rule: "test_rule", Score: 5}}}
	deferV := policy.Verdict{Action: policy.ActionDefer, Reasons: []policy.Reason{{Rule: "test_rule"}}}
	drop := policy.Verdict{Action: policy.ActionDrop, Reasons: []policy.Reason{{Rule: "test_rule"}}}
	custom := policy.Verdict{Action: policy.ActionReject, Reply: policy.Reply{Code: 554, Enhanced: "5.7.1", Text: "Listed at zen.test"}}
	cases := []struct {
		name    string
		stage   policy.Stage
		v       policy.Verdict
		wantErr int // code the client sees (0: success)
		stored  int
	}{
		{"connect reject", policy.StageConnect, reject, 554, 0},
		{"connect defer", policy.StageConnect, deferV, 421, 0},
		{"connect custom reply", policy.StageConnect, custom, 554, 0},
		{"helo reject", policy.StageHelo, reject, 550, 0},
		{"mail reject", policy.StageMail, reject, 550, 0},
		{"mail defer", policy.StageMail, deferV, 451, 0},
		{"mail drop", policy.StageMail, drop, 0, 0},
		{"rcpt reject", policy.StageRcpt, custom, 554, 0},
		{"rcpt greylist", policy.StageRcpt, policy.Verdict{Action: policy.ActionGreylist}, 451, 0},
		{"rcpt drop", policy.StageRcpt, drop, 0, 0},
		{"data reject", policy.StageData, reject, 550, 0},
		{"data defer", policy.StageData, deferV, 451, 0},
		{"data drop", policy.StageData, drop, 0, 0},
		{"data continue with a header", policy.StageData, policy.Verdict{Action: policy.ActionContinue,
			Headers: []policy.Header{{Name: "X-Spam-Score", Value: "3.5"}}}, 0, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := startMTA(t)
			g := startGateway(t, testConfig(), m, stageHook(tc.stage, tc.v))
			err := sendMail(g.addr, "a@sender.test", []string{"bob@example.com"}, simpleMsg)
			if tc.wantErr == 0 && err != nil {
				t.Fatalf("want success, got %v", err)
			}
			if tc.wantErr != 0 {
				code := codeOf(err)
				if tc.stage == policy.StageConnect {
					// go-smtp's client reports a refused greeting as an error
					// carrying the code.
					if err == nil || !strings.Contains(err.Error(), fmt.Sprint(tc.wantErr)) && code != tc.wantErr {
						t.Fatalf("want %d, got %v", tc.wantErr, err)
					}
				} else if code != tc.wantErr {
					t.Fatalf("want %d, got %v", tc.wantErr, err)
				}
			}
			if got := len(m.messages()); got != tc.stored {
				t.Errorf("internal MTA holds %d messages, want %d", got, tc.stored)
			}
			if tc.stored == 1 && !strings.Contains(string(m.messages()[0].Data), "X-Spam-Score: 3.5\r\n") {
				t.Errorf("verdict header not added")
			}
			// The decision line names the stage, action and reasons.
			found := false
			for _, l := range g.log.lines() {
				var e map[string]any
				json.Unmarshal([]byte(l), &e)
				if e["stage"] == string(tc.stage) && e["action"] == string(tc.v.Action) {
					found = true
					if len(tc.v.Reasons) > 0 && !strings.Contains(l, `"rule":"test_rule"`) {
						t.Errorf("reasons missing from %s", l)
					}
				}
			}
			if !found && tc.v.Action != policy.ActionContinue {
				t.Errorf("no %s/%s decision in the log:\n%s", tc.stage, tc.v.Action, g.log.String())
			}
		})
	}
}

// TestHookPanicDefers: a panicking check never accepts or loses mail.
func TestHookPanicDefers(t *testing.T) {
	g := startGateway(t, testConfig(), nil, HookFunc(func(_ context.Context, stage policy.Stage, _ *State) policy.Verdict {
		if stage == policy.StageRcpt {
			panic("bug in a check")
		}
		return policy.Continue
	}))
	if code := codeOf(sendMail(g.addr, "a@sender.test", []string{"bob@example.com"}, simpleMsg)); code != 451 {
		t.Fatalf("want 451, got %d", code)
	}
}

// TestLargeMessageHeldOnDisk: a message over the memory threshold is held in
// a temp file, unlinked while in use (so a crash leaves nothing) and
// closed after the transaction.
func TestLargeMessageHeldOnDisk(t *testing.T) {
	cfg := testConfig()
	cfg.MemoryThreshold = 1024
	cfg.TempDir = t.TempDir()
	sawFile, listed := false, true
	hook := HookFunc(func(_ context.Context, stage policy.Stage, st *State) policy.Verdict {
		if stage == policy.StageData {
			ents, _ := os.ReadDir(cfg.TempDir)
			listed = len(ents) > 0
			sawFile = openDeletedFileIn(cfg.TempDir)
		}
		return policy.Continue
	})
	g := startGateway(t, cfg, nil, hook)
	body := strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 500)
	msg := "Subject: big\r\n\r\n" + body
	if err := sendMail(g.addr, "a@sender.test", []string{"bob@example.com"}, msg); err != nil {
		t.Fatal(err)
	}
	if !sawFile {
		t.Error("message was not held in a temp file")
	}
	if listed {
		t.Error("the held message's temp file is listed in the temp directory")
	}
	if !strings.HasSuffix(string(g.mta.messages()[0].Data), msg) {
		t.Error("relayed message differs")
	}
	ents, _ := os.ReadDir(cfg.TempDir)
	if len(ents) != 0 {
		t.Errorf("temp file left behind: %v", ents)
	}
}

// TestConnectionLimits: per-IP and total limits answer 421 4.7.0.
func TestConnectionLimits(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConnectionsPerIP = 2
	g := startGateway(t, cfg, nil, nil)
	var conns []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", g.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		runDialog(t, c, "< 220")
		conns = append(conns, c)
	}
	dialog(t, g.addr, "< 421 4.7.0 Too many connections from your address\n<EOF")
	conns[0].Close()
	waitFor(t, "a slot to free", func() bool {
		c, err := net.Dial("tcp", g.addr)
		if err != nil {
			return false
		}
		defer c.Close()
		buf := make([]byte, 64)
		c.SetReadDeadline(time.Now().Add(time.Second))
		n, _ := c.Read(buf)
		return strings.HasPrefix(string(buf[:n]), "220")
	})

	cfg = testConfig()
	cfg.MaxConnections = 1
	g2 := startGateway(t, cfg, nil, nil)
	c, err := net.Dial("tcp", g2.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	runDialog(t, c, "< 220")
	dialog(t, g2.addr, "< 421 4.7.0 Too many connections\n<EOF")
}

// TestProxyProtocol: from a trusted peer the PROXY header gives the client
// address; from others it is just an unknown command.
func TestProxyProtocol(t *testing.T) {
	cfg := testConfig()
	cfg.ProxyTrusted = mustPrefixes("127.0.0.0/8")
	var seen string
	hook := HookFunc(func(_ context.Context, stage policy.Stage, st *State) policy.Verdict {
		if stage == policy.StageConnect {
			seen = st.Client.String()
		}
		return policy.Continue
	})
	g := startGateway(t, cfg, nil, hook)
	c, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h := &proxyproto.Header{Version: 2, Command: proxyproto.PROXY, TransportProtocol: proxyproto.TCPv4,
		SourceAddr:      &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 40000},
		DestinationAddr: &net.TCPAddr{IP: net.ParseIP("198.51.100.1"), Port: 25}}
	if _, err := h.WriteTo(c); err != nil {
		t.Fatal(err)
	}
	runDialog(t, c, "< 220\n> QUIT\n< 221")
	if seen != "192.0.2.7:40000" {
		t.Errorf("client address %q, want the one in the PROXY header", seen)
	}

	// Untrusted: the gateway listens without trust; the header line is
	// an unknown command.
	g2 := startGateway(t, testConfig(), nil, nil)
	dialog(t, g2.addr, `
		< 220
		> PROXY TCP4 192.0.2.7 198.51.100.1 40000 25
		< 500 5.5.1
		> QUIT
		< 221`)
}

func mustPrefixes(ss ...string) []netipPrefix {
	var out []netipPrefix
	for _, s := range ss {
		out = append(out, mustPrefix(s))
	}
	return out
}

// TestStartTLS: STARTTLS upgrades, the Received field records the cipher,
// and commands pipelined in clear text after STARTTLS are discarded.
func TestStartTLS(t *testing.T) {
	cfg := testConfig()
	cfg.TLS = &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}}
	g := startGateway(t, cfg, nil, nil)
	c, err := smtp.DialStartTLS(g.addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("a@sender.test", []string{"bob@example.com"}, strings.NewReader(simpleMsg)); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	data := string(g.mta.messages()[0].Data)
	if !strings.Contains(data, "with ESMTPS id") || !strings.Contains(data, "(version=TLS1.3 cipher=") {
		t.Errorf("Received field lacks TLS details:\n%s", data)
	}

	// Injection: "STARTTLS\r\nMAIL FROM:..." in one write.
	raw, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	runDialog(t, raw, "< 220\n> EHLO client.test\n< 250\n>> \"STARTTLS\\r\\nMAIL FROM:<injected@test.example>\\r\\n\"\n< 220 2.0.0")
	tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	runDialog(t, tc, `
		> MAIL FROM:<a@sender.test>
		< 503 5.5.1 Send EHLO
		> EHLO client.test
		< 250
		> QUIT
		< 221`)
}

// TestStartTLSInjectionLogged: commands pipelined in clear text after
// STARTTLS are dropped with a line in the service log naming the session
// and what was dropped; a clean STARTTLS logs nothing of the kind.
func TestStartTLSInjectionLogged(t *testing.T) {
	cfg := testConfig()
	cfg.TLS = &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}}
	cfg.TempDir = t.TempDir()
	logs := &syncBuffer{}
	srv := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(logs, nil)), Upstream: NewSMTPUpstream(SMTPUpstreamConfig{Addrs: []string{startMTA(t).addr}})})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	upgrade := func(starttls string) {
		raw, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		runDialog(t, raw, "< 220\n> EHLO client.test\n< 250\n>> "+strconv.Quote(starttls)+"\n< 220 2.0.0")
		tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		runDialog(t, tc, "> QUIT\n< 221")
	}
	const msg = "commands pipelined in clear text after STARTTLS dropped"
	upgrade("STARTTLS\r\n")
	if strings.Contains(logs.String(), msg) {
		t.Fatalf("a clean STARTTLS logged a drop:\n%s", logs.String())
	}
	upgrade("STARTTLS\r\nMAIL FROM:<injected@test.example>\r\n")
	if want := "octets=35"; !strings.Contains(logs.String(), msg) || !strings.Contains(logs.String(), want) {
		t.Fatalf("the service log lacks %q with %s:\n%s", msg, want, logs.String())
	}
}

func selfSigned(t *testing.T) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mx.test"},
		DNSNames: []string{"mx.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestQuarantine: a quarantine verdict answers 250, puts the message in the
// quarantine Maildir with our fields and the rules, and relays nothing.
func TestQuarantine(t *testing.T) {
	m := startMTA(t)
	q, err := maildir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	hook := stageHook(policy.StageData, policy.Verdict{Action: policy.ActionQuarantine, Reasons: []policy.Reason{{Rule: "dmarc_quarantine"}}})
	cfg := testConfig()
	cfg.TempDir = t.TempDir()
	log := &syncBuffer{}
	srv := New(cfg, Options{Hook: hook, Quarantine: q, Decisions: NewDecisionLogJSON(log),
		Upstream: NewSMTPUpstream(SMTPUpstreamConfig{Addrs: []string{m.addr}, MaxIdle: 2})})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()
	if err := sendMail(l.Addr().String(), "a@sender.test", []string{"bob@example.com"}, simpleMsg); err != nil {
		t.Fatalf("want 250, got %v", err)
	}
	if len(m.messages()) != 0 {
		t.Fatal("a quarantined message reached the internal MTA")
	}
	ents, _ := os.ReadDir(filepath.Join(q.Path(), "new"))
	if len(ents) != 1 {
		t.Fatalf("quarantine holds %d files", len(ents))
	}
	data, _ := os.ReadFile(filepath.Join(q.Path(), "new", ents[0].Name()))
	if !strings.Contains(string(data), "X-Gatewayd-Quarantine: queue id ") || !strings.Contains(string(data), "rules dmarc_quarantine") ||
		!strings.HasSuffix(string(data), simpleMsg) || !strings.HasPrefix(string(data), "Received: ") {
		t.Errorf("quarantined file:\n%s", data)
	}
	if !strings.Contains(log.String(), `"action":"quarantine"`) {
		t.Errorf("decision log:\n%s", log.String())
	}
}

// TestProxyTrustReload: trusting a load balancer takes effect for the next
// connection after a reload.
func TestProxyTrustReload(t *testing.T) {
	var seen atomic.Value
	hook := HookFunc(func(_ context.Context, stage policy.Stage, st *State) policy.Verdict {
		if stage == policy.StageConnect {
			seen.Store(st.Client.Addr().String())
		}
		return policy.Continue
	})
	g := startGateway(t, testConfig(), nil, hook)
	dialog(t, g.addr, "< 220\n> QUIT\n< 221")
	if seen.Load() != "127.0.0.1" {
		t.Fatalf("client %v", seen.Load())
	}
	cfg := testConfig()
	cfg.ProxyTrusted = mustPrefixes("127.0.0.0/8")
	g.srv.Reload(cfg, nil, nil)
	c, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "PROXY TCP4 198.51.100.9 192.0.2.1 41000 25\r\n")
	runDialog(t, c, "< 220\n> QUIT\n< 221")
	if seen.Load() != "198.51.100.9" {
		t.Errorf("after the reload the client is %v, want the PROXY header's", seen.Load())
	}
}

// openDeletedFileIn reports whether this process holds open a file of dir
// that has been unlinked (Linux: /proc/self/fd links end in "(deleted)").
func openDeletedFileIn(dir string) bool {
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, fd := range fds {
		target, err := os.Readlink("/proc/self/fd/" + fd.Name())
		if err == nil && strings.HasPrefix(target, dir+"/gatewayd-msg-") && strings.HasSuffix(target, " (deleted)") {
			return true
		}
	}
	return false
}

// TestConnectionLimitPerIPv6Prefix: max_connections_per_ip counts an IPv6
// client by its /64, the subnet one customer is given: addresses of one
// /64 share the limit (a host with a /64 could otherwise open 2^64
// connections), another /64 has its own. The clients come through a
// trusted PROXY peer, so the limit applies to the header's addresses.
func TestConnectionLimitPerIPv6Prefix(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConnectionsPerIP = 2
	cfg.ProxyTrusted = mustPrefixes("127.0.0.0/8")
	g := startGateway(t, cfg, nil, nil)
	open := func(src string) string {
		t.Helper()
		c, err := net.Dial("tcp", g.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		fmt.Fprintf(c, "PROXY TCP6 %s 2001:db8:ffff::1 40000 25\r\n", src)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		return line
	}
	for _, src := range []string{"2001:db8:1:2::1", "2001:db8:1:2:aaaa::7"} {
		if line := open(src); !strings.HasPrefix(line, "220") {
			t.Fatalf("%s: %q, want 220", src, line)
		}
	}
	if line := open("2001:db8:1:2:ffff:ffff:ffff:fffe"); !strings.HasPrefix(line, "421 4.7.0 Too many connections from your address") {
		t.Fatalf("a third address of the same /64 got %q, want 421 4.7.0", line)
	}
	if line := open("2001:db8:1:3::1"); !strings.HasPrefix(line, "220") {
		t.Fatalf("another /64 got %q, want 220", line)
	}
	log := g.log.String()
	if !strings.Contains(log, `"client_ip":"2001:db8:1:2:ffff:ffff:ffff:fffe"`) || !strings.Contains(log, `"detail":"limits.max_connections_per_ip"`) {
		t.Errorf("no decision line naming the refused client and the limit: %s", log)
	}
}

// TestProxyTrustedMappedPrefix: a trusted network written IPv4-mapped
// (::ffff:127.0.0.0/104) trusts the IPv4 peers it names; peers are
// matched unmapped, so such a prefix used to match none of them.
func TestProxyTrustedMappedPrefix(t *testing.T) {
	cfg := testConfig()
	cfg.ProxyTrusted = mustPrefixes("::ffff:127.0.0.0/104")
	var seen atomic.Value
	hook := HookFunc(func(_ context.Context, stage policy.Stage, st *State) policy.Verdict {
		if stage == policy.StageConnect {
			seen.Store(st.Client.String())
		}
		return policy.Continue
	})
	g := startGateway(t, cfg, nil, hook)
	dialog(t, g.addr, `
		> PROXY TCP4 192.0.2.7 198.51.100.1 40000 25
		< 220
		> QUIT
		< 221`)
	if got, _ := seen.Load().(string); got != "192.0.2.7:40000" {
		t.Errorf("client %q, want the PROXY header's 192.0.2.7:40000", got)
	}
}
