package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/mxgate/gatewayd/internal/dnstest"
)

// e2eConfig is a configuration with every check on, the shipped rules, and
// DNS answered by the in-process test server.
func e2eConfig(t *testing.T, listen, dnsAddr string) string {
	rules, err := filepath.Abs("../../rules")
	if err != nil {
		t.Fatal(err)
	}
	return writeConfig(t, fmt.Sprintf(`listen: [%q]
metrics:
  listen: ""
checks: [iprev, dnsbl, spf, dkim, dmarc]
dns:
  servers: [%q]
  timeout: 2s
dnsbl:
  zones:
    - zone: zen.spamhaus.org
      codes: ["127.0.0.2-127.0.0.11"]
    - zone: list.dnswl.org
      type: allow
      codes: ["127.0.0.0-127.0.255.255"]
      error_codes: ["127.0.0.255"]
rules:
  dir: %q
`, listen, dnsAddr, rules))
}

// smtpSend sends a message file over SMTP and returns the final reply line
// (or the first refusal).
func smtpSend(t *testing.T, addr, from, rcpt, file string) string {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s := dialSMTP(t, addr)
	for _, step := range []struct{ cmd, want string }{
		{"EHLO mail.client.test", "250"}, {"MAIL FROM:<" + from + ">", "250"}, {"RCPT TO:<" + rcpt + ">", "250"}, {"DATA", "354"},
	} {
		s.send(step.cmd)
		s.c.SetReadDeadline(deadline())
		line, _ := s.r.ReadString('\n')
		for len(line) > 3 && line[3] == '-' {
			line, _ = s.r.ReadString('\n')
		}
		if !strings.HasPrefix(line, step.want) {
			return strings.TrimSpace(line)
		}
	}
	s.c.Write(dotStuffCRLF(data))
	s.c.SetReadDeadline(deadline())
	line, _ := s.r.ReadString('\n')
	s.send("QUIT")
	return strings.TrimSpace(line)
}

// lastReply is the reply to the end of data in explain's dialog (or the
// refusal that stopped it).
func lastReply(out string) string {
	var last string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "S: ") && !strings.HasPrefix(l, "S: 221") {
			last = strings.TrimPrefix(l, "S: ")
		}
	}
	return last
}

// TestExplainMatchesDaemon: for the same testdata messages, explain prints
// the reply the daemon gives over SMTP (queue ids aside).
func TestExplainMatchesDaemon(t *testing.T) {
	dns := dnstest.Start(t, "testdata/e2e.zone")
	addr := freePort(t)
	cfg := e2eConfig(t, addr, dns.Addr())
	d := startDaemon(t, "-config", cfg)
	for _, c := range []struct{ file, from, want string }{
		{"testdata/clean.eml", "alice@sender.test", "250 2.0.0"},
		{"testdata/spoofed.eml", "ceo@strict.test", "550 5.7.1"},
		{"testdata/quiet.eml", "news@quiet.test", "250 2.0.0"}, // quarantined
	} {
		got := smtpSend(t, addr, c.from, "bob@example.com", c.file)
		if !strings.HasPrefix(got, c.want) {
			t.Errorf("%s over SMTP: %q, want %s", c.file, got, c.want)
		}
		out, err := exec.Command(binary, "explain", "-config", cfg, "-client", "127.0.0.1", "-helo", "mail.client.test",
			"-from", c.from, "-rcpt", "bob@example.com", c.file).CombinedOutput()
		if err != nil {
			t.Fatalf("explain: %v\n%s", err, out)
		}
		ex := lastReply(string(out))
		strip := func(s string) string { // queue ids differ
			if i := strings.Index(s, "queued as"); i >= 0 {
				return s[:i]
			}
			return s
		}
		if strip(ex) != strip(got) {
			t.Errorf("%s: explain says %q, the daemon said %q\n%s", c.file, ex, got, out)
		}
		if c.want == "550 5.7.1" && !strings.Contains(string(out), "+ dmarc_reject") {
			t.Errorf("explain does not show the rule that fired:\n%s", out)
		}
	}
	// The DMARC quarantine of quiet.test went to the quarantine, and only
	// the clean message reached the delivery target.
	q, _ := os.ReadDir(filepath.Join(d.cmd.Dir, "var", "quarantine", "new"))
	m, _ := os.ReadDir(filepath.Join(d.cmd.Dir, "var", "maildir", "new"))
	if len(q) != 1 || len(m) != 1 {
		t.Errorf("quarantine holds %d, maildir %d; want 1 and 1", len(q), len(m))
	}
}

// TestShippedRulesRefuseListedClient: a client in Spamhaus SBL/XBL is refused
// at connect by the shipped rules, with Spamhaus's text, and explain agrees.
func TestShippedRulesRefuseListedClient(t *testing.T) {
	dns := dnstest.Start(t, "testdata/e2e.zone")
	addr := freePort(t)
	cfg := e2eConfig(t, addr, dns.Addr())
	startDaemon(t, "-config", cfg)
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(deadline())
	greeting, _ := bufio.NewReader(c).ReadString('\n')
	if !strings.HasPrefix(greeting, "554 5.7.1") || !strings.Contains(greeting, "spamhaus.org/query/ip/127.0.0.2") {
		t.Fatalf("listed client greeted with %q", greeting)
	}
	out, err := exec.Command(binary, "explain", "-config", cfg, "-client", "127.0.0.2", "-from", "a@b.test", "-rcpt", "bob@example.com").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if got := lastReply(string(out)); got != strings.TrimSpace(greeting) || !strings.Contains(string(out), "+ zen_sbl_xbl") {
		t.Errorf("explain:\n%s\ndaemon: %q", out, greeting)
	}
	// Like the daemon, explain asks no reverse DNS for a client refused
	// before any rule reads it.
	if strings.Contains(string(out), "iprev") {
		t.Errorf("explain looked the refused client's reverse DNS up:\n%s", out)
	}
}

// TestRulesCheckCommand: the shipped rules load; a broken file is reported
// with its position and a non-zero exit.
func TestRulesCheckCommand(t *testing.T) {
	out, err := exec.Command(binary, "rules", "check", "../../rules").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("shipped rules: %v\n%s", err, out)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "10-bad.yaml"), []byte("rules:\n  - name: x\n    stage: rcpt\n    if: spf.reslt == \"fail\"\n    action: reject\n"), 0o600)
	out, err = exec.Command(binary, "rules", "check", dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "10-bad.yaml:4:") {
		t.Fatalf("bad rules: %v\n%s", err, out)
	}
}

// TestRulesCheckZones: with -config, a rule naming a zone the file does
// not configure is refused as the daemon's start refuses it; before,
// rules check could not see it and said OK.
func TestRulesCheckZones(t *testing.T) {
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules")
	os.Mkdir(rules, 0o755)
	os.WriteFile(filepath.Join(rules, "10-z.yaml"), []byte("rules:\n  - name: z\n    stage: connect\n    if: dnsbl_listed(\"bl.unknown.test\")\n    action: reject\n"), 0o600)
	cfg := filepath.Join(dir, "gatewayd.yaml")
	os.WriteFile(cfg, []byte("checks: [dnsbl]\ndnsbl:\n  zones:\n    - zone: bl.known.test\nrules:\n  dir: "+rules+"\n"), 0o600)
	out, err := exec.Command(binary, "rules", "check", "-config", cfg).CombinedOutput()
	want := filepath.Join(rules, "10-z.yaml") + `:4:`
	if err == nil || !strings.Contains(string(out), want) || !strings.Contains(string(out), `zone "bl.unknown.test" is not configured in dnsbl.zones`) {
		t.Errorf("rules check -config: %v\n%s", err, out)
	}
	// The daemon's own check says the same.
	out2, err := exec.Command(binary, "check", "-config", cfg).CombinedOutput()
	if err == nil || !strings.Contains(string(out2), `zone "bl.unknown.test" is not configured in dnsbl.zones`) {
		t.Errorf("check -config: %v\n%s", err, out2)
	}
	// Without the file there are no zones to check against.
	if out, err := exec.Command(binary, "rules", "check", rules).CombinedOutput(); err != nil {
		t.Errorf("rules check without -config: %v\n%s", err, out)
	}
}

// TestSIGHUPNewZoneAndRule: a DNSBL zone added to the configuration and a
// rule naming it, both taken in by one SIGHUP: the rules are checked
// against the zones configured now, not those of the start.
func TestSIGHUPNewZoneAndRule(t *testing.T) {
	dns := dnstest.Start(t, "testdata/e2e.zone")
	dns.AddRR(t, "3.0.0.127.bl.new.test. 300 IN A 127.0.0.2")
	dns.AddRR(t, "2.0.0.127.bl.new.test. 300 IN A 127.0.0.2") // the RFC 5782 test entry
	addr, metricsAddr := freePort(t), freePort(t)
	rulesDir := t.TempDir()
	writeRules := func(body string) {
		if err := os.WriteFile(filepath.Join(rulesDir, "10-zones.yaml"), []byte("rules:\n"+body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	zenRule := `  - name: zen
    stage: connect
    if: dnsbl_listed("zen.spamhaus.org")
    action: reject
`
	newRule := `  - name: new_zone
    stage: connect
    if: dnsbl_listed("bl.new.test")
    action: reject
    reply: {code: 554, enhanced: 5.7.1, text: "listed in bl.new.test"}
`
	config := func(zones ...string) string {
		var z strings.Builder
		for _, name := range zones {
			fmt.Fprintf(&z, "    - zone: %s\n", name)
		}
		return fmt.Sprintf("listen: [%q]\nmetrics:\n  listen: %q\nchecks: [dnsbl]\ndns:\n  servers: [%q]\n  timeout: 2s\ndnsbl:\n  zones:\n%srules:\n  dir: %q\n",
			addr, metricsAddr, dns.Addr(), z.String(), rulesDir)
	}
	writeRules(zenRule)
	cfgPath := writeConfig(t, config("zen.spamhaus.org"))
	d := startDaemon(t, "-config", cfgPath)
	greeting := func(from string) string {
		c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(deadline())
		line, _ := bufio.NewReader(c).ReadString('\n')
		return strings.TrimSpace(line)
	}
	if g := greeting("127.0.0.3"); !strings.HasPrefix(g, "220") {
		t.Fatalf("before the reload, 127.0.0.3 greeted with %q", g)
	}
	writeRules(zenRule + newRule)
	if err := os.WriteFile(cfgPath, []byte(config("zen.spamhaus.org", "bl.new.test")), 0o600); err != nil {
		t.Fatal(err)
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, d, "rules reloaded")
	if g := greeting("127.0.0.3"); g != "554 5.7.1 listed in bl.new.test" {
		t.Errorf("after the reload, 127.0.0.3 greeted with %q\n%s", g, d.stderr.String())
	}
	if g := greeting("127.0.0.2"); !strings.HasPrefix(g, "554") {
		t.Errorf("after the reload, 127.0.0.2 (zen) greeted with %q", g)
	}
	// The rule counters, carried across the reload, say which rule
	// refused whom.
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`gatewayd_rule_matches_total{rule="new_zone",stage="connect"} 1`,
		`gatewayd_rule_matches_total{rule="zen",stage="connect"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestExplainUsage: -h is not an error, and a usage error names what is
// wrong (the argument), with exit status 2.
func TestExplainUsage(t *testing.T) {
	out, err := exec.Command(binary, "explain", "-h").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "usage: gatewayd explain") {
		t.Errorf("explain -h: %v\n%s", err, out)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-rcpt", "bob@example.com"}, "-client IP is required"},
		{[]string{"-client", "192.0.2.300", "-rcpt", "bob@example.com"}, `"192.0.2.300" is not an IP address`},
		{[]string{"-client", "192.0.2.7"}, "-rcpt ADDR is required"},
		{[]string{"-client", "192.0.2.7", "-rcpt", "bob@example.com", "a.eml", "b.eml"}, "one MESSAGE file at most"},
	} {
		out, err := exec.Command(binary, append([]string{"explain"}, c.args...)...).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Errorf("explain %v: %v, want exit status 2", c.args, err)
		}
		if !strings.Contains(string(out), c.want) {
			t.Errorf("explain %v: output lacks %q:\n%s", c.args, c.want, out)
		}
	}
}

// TestExplainGreylistAllowList: a client on greylist.allow_cidrs is not
// greylisted by the daemon, and rules after the greylist rule see
// greylist == "allowed"; explain, which does not ask the store, applies
// the configuration's allow lists as the daemon does.
func TestExplainGreylistAllowList(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "rules.yaml"), []byte(`rules:
  - {name: grey_all, stage: rcpt, if: "true", action: greylist}
  - name: allowed_client
    stage: rcpt
    if: 'greylist == "allowed"'
    action: reject
    reply: {code: 550, enhanced: 5.7.1, text: "allow-listed client"}
`), 0o600)
	addr := freePort(t)
	cfg := writeConfig(t, fmt.Sprintf("listen: [%q]\nmetrics:\n  listen: \"\"\nrules:\n  dir: %q\n  watch: false\ngreylist:\n  allow_cidrs: [\"127.0.0.0/8\"]\n", addr, dir))
	startDaemon(t, "-config", cfg)
	got := strings.TrimSpace(sendOnce(t, addr))
	if !strings.HasPrefix(got, "550 5.7.1 allow-listed client") {
		t.Fatalf("daemon: %q", got)
	}
	out, err := exec.Command(binary, "explain", "-config", cfg, "-client", "127.0.0.1", "-from", "alice@sender.test", "-rcpt", "bob@example.com").CombinedOutput()
	if err != nil {
		t.Fatalf("explain: %v\n%s", err, out)
	}
	if ex := lastReply(string(out)); ex != got {
		t.Errorf("explain says %q, the daemon said %q\n%s", ex, got, out)
	}
	if strings.Contains(string(out), "a first attempt is deferred") {
		t.Errorf("explain says an allow-listed client is deferred:\n%s", out)
	}
}

// TestRulesUsageErrors: a usage error of rules names the argument.
func TestRulesUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"rules", "list"}, `unknown command "list"`},
		{[]string{"rules", "check", "rules", "-config", "x.yaml"}, `"-config"`},
	} {
		out, err := exec.Command(binary, c.args...).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), c.want) {
			t.Errorf("%v: %v, want exit status 2 and %q:\n%s", c.args, err, c.want, out)
		}
	}
}
