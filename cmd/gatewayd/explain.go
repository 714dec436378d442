package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/mxgate/gatewayd/gateway"
	"github.com/mxgate/gatewayd/maildir"
	"github.com/mxgate/gatewayd/policy"
)

const explainUsage = `usage: gatewayd explain [-config FILE] -client IP [-helo NAME] -from ADDR -rcpt ADDR[,ADDR...] [MESSAGE|-]

Runs one SMTP session through the same gateway, checks, DNS and rules as the
daemon, on a private loopback listener, and prints stage by stage each
check's result, each rule looked at and whether it matched, the score and
the reply the gateway would send. Nothing is sent to the internal MTA and
the greylist store is not changed (a greylist verdict is reported, not
applied). Without MESSAGE the session stops after RCPT; MESSAGE - reads
standard input. Exit status: 0 the session was judged (whatever the
verdict), 1 it could not be (configuration, rules, message file), 2 usage
error.

`

// explainStage is what explain reports for one stage.
type explainStage struct {
	Stage   policy.Stage    `json:"stage"`
	Subject string          `json:"subject,omitempty"` // the recipient, at rcpt
	Checks  map[string]any  `json:"checks,omitempty"`
	Rules   []explainRule   `json:"rules"`
	Score   float64         `json:"score"`
	Total   float64         `json:"total"`
	Action  policy.Action   `json:"action"`
	Rule    string          `json:"rule,omitempty"`
	Reasons []policy.Reason `json:"reasons,omitempty"`
	Reply   string          `json:"reply,omitempty"`
}

type explainRule struct {
	Rule    string `json:"rule"`
	Matched bool   `json:"matched"`
	Err     string `json:"error,omitempty"`
}

// explainer records every evaluation, with the rules looked at when the
// evaluator can tell (the rule engine can).
type explainer struct {
	inner  gateway.Evaluator
	mu     sync.Mutex
	stages []*explainStage
}

func (e *explainer) Needs(s policy.Stage) policy.NeedSet { return e.inner.Needs(s) }

func (e *explainer) Evaluate(f *policy.Facts) policy.Outcome {
	var out policy.Outcome
	var steps []policy.Step
	if x, ok := e.inner.(interface {
		Explain(*policy.Facts) (policy.Outcome, []policy.Step)
	}); ok {
		out, steps = x.Explain(f)
	} else {
		out = e.inner.Evaluate(f)
	}
	return e.record(f, out, steps)
}

// EvaluateLazy implements gateway.LazyEvaluator when the evaluator does,
// so that explain asks for the checks the daemon would ask for, no more
// (a client refused for its listing gets no reverse lookup).
func (e *explainer) EvaluateLazy(f *policy.Facts, pending policy.NeedSet, load func(policy.NeedSet)) policy.Outcome {
	var out policy.Outcome
	var steps []policy.Step
	switch x := e.inner.(type) {
	case interface {
		ExplainLazy(*policy.Facts, policy.NeedSet, func(policy.NeedSet)) (policy.Outcome, []policy.Step)
	}:
		out, steps = x.ExplainLazy(f, pending, load)
	case gateway.LazyEvaluator:
		out = x.EvaluateLazy(f, pending, load)
	default:
		load(pending)
		return e.Evaluate(f)
	}
	return e.record(f, out, steps)
}

func (e *explainer) record(f *policy.Facts, out policy.Outcome, steps []policy.Step) policy.Outcome {
	es := &explainStage{Stage: f.Stage, Checks: factsSummary(f), Rules: []explainRule{},
		Score: out.Score, Total: out.Total, Action: out.Action, Rule: out.Rule, Reasons: out.Reasons}
	if f.Stage == policy.StageRcpt {
		es.Subject = f.Rcpt
		if f.Greylist != "" && out.Action == policy.ActionGreylist {
			// Judged again once the greylist state is known, the
			// daemon takes a greylist verdict as continue (an
			// evaluator that ignores the state gives it again).
			es.Action = policy.ActionContinue
		}
	}
	for _, s := range steps {
		es.Rules = append(es.Rules, explainRule{Rule: s.Rule, Matched: s.Matched, Err: s.Err})
	}
	e.mu.Lock()
	e.stages = append(e.stages, es)
	e.mu.Unlock()
	return out
}

// factsSummary is what the checks saw, as explain prints it.
func factsSummary(f *policy.Facts) map[string]any {
	m := map[string]any{}
	for z, r := range f.DNSBL {
		v := string(r.Status)
		if len(r.Codes) > 0 {
			v += " " + strings.Join(r.Codes, ",")
		}
		if r.Listed && r.Reason != "" {
			v += " (" + r.Reason + ")"
		}
		m["dnsbl "+z] = v
	}
	for z, byWhat := range f.DomainBL {
		for what, r := range byWhat {
			m["domainbl "+z+" "+what] = string(r.Status)
		}
	}
	if f.IPRev != nil {
		m["iprev"] = f.IPRev.Result + " " + f.IPRev.Name
	}
	if f.SPF != nil {
		m["spf"] = string(f.SPF.Result) + " (" + f.SPF.Identity + " " + f.SPF.Domain + ")"
	}
	if f.DKIM != nil {
		var sigs []string
		for _, s := range f.DKIM.Signatures {
			sigs = append(sigs, string(s.Result)+" d="+s.Domain+" s="+s.Selector)
		}
		if len(sigs) == 0 {
			sigs = []string{"none"}
		}
		m["dkim"] = strings.Join(sigs, "; ")
	}
	if f.DMARC != nil {
		m["dmarc"] = fmt.Sprintf("%s (domain %s, policy %q, applied %q)", f.DMARC.Result, f.DMARC.Domain, f.DMARC.Policy, f.DMARC.Applied)
	}
	if f.Greylist != "" {
		m["greylist"] = f.Greylist
	}
	return m
}

// dryRunUpstream stands in for the internal MTA: it accepts everything and
// sends nothing.
type dryRunUpstream struct{}

func (dryRunUpstream) Begin(context.Context, gateway.Address, gateway.MailOpts) (gateway.UpstreamTx, policy.Reply, error) {
	return dryRunTx{}, policy.Reply{Code: 250, Enhanced: "2.1.0", Text: "OK"}, nil
}
func (dryRunUpstream) Close() error { return nil }

type dryRunTx struct{}

func (dryRunTx) Rcpt(context.Context, gateway.Address) (policy.Reply, error) {
	return policy.Reply{Code: 250, Enhanced: "2.1.5", Text: "OK"}, nil
}
func (dryRunTx) Data(_ context.Context, r io.Reader) (policy.Reply, error) {
	io.Copy(io.Discard, r)
	return policy.Reply{Code: 250, Enhanced: "2.0.0", Text: "OK (explain: not sent)"}, nil
}
func (dryRunTx) End()         {}
func (dryRunTx) Addr() string { return "explain (nothing sent)" }

func runExplain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gatewayd explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, explainUsage); fs.PrintDefaults() }
	cfgPath := fs.String("config", "", "configuration file, as the daemon's")
	client := fs.String("client", "", "client IP address (required)")
	helo := fs.String("helo", "", "HELO/EHLO name (default: unknown.invalid)")
	from := fs.String("from", "", "envelope sender (empty: the null sender)")
	rcpts := fs.String("rcpt", "", "recipients, comma-separated (required)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	// A usage error names what is wrong, not only the usage.
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "gatewayd explain: "+format+" (gatewayd explain -h tells more)\n", a...)
		return 2
	}
	ip, err := netip.ParseAddr(*client)
	switch {
	case *client == "":
		return usageErr("-client IP is required")
	case err != nil:
		return usageErr("-client %q is not an IP address", *client)
	case *rcpts == "":
		return usageErr("-rcpt ADDR is required")
	case fs.NArg() > 1:
		return usageErr("one MESSAGE file at most, got %q", fs.Args())
	}
	var msg []byte
	if fs.NArg() == 1 {
		if fs.Arg(0) == "-" {
			msg, err = io.ReadAll(os.Stdin)
		} else {
			msg, err = os.ReadFile(fs.Arg(0))
		}
		if err != nil {
			fmt.Fprintf(stderr, "gatewayd explain: %v\n", err)
			return 1
		}
	}
	if *helo == "" {
		*helo = "unknown.invalid"
	}
	stages, replies, err := explain(*cfgPath, ip, *helo, *from, strings.Split(*rcpts, ","), msg)
	if err != nil {
		fmt.Fprintf(stderr, "gatewayd explain: %v\n", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(map[string]any{"stages": stages, "dialog": replies})
		return 0
	}
	printExplain(stdout, stages, replies)
	return 0
}

// explain runs the session and returns the stages judged and the dialog.
func explain(cfgPath string, ip netip.Addr, helo, from string, rcpts []string, msg []byte) ([]*explainStage, []string, error) {
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		return nil, nil, err
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	rules, err := openRules(cfg, logger)
	if err != nil {
		return nil, nil, err
	}
	ex := &explainer{}
	rc, err := buildChecks(cfg, nil, logger, func() gateway.Evaluator {
		ex.inner = rules.evaluator()
		return ex
	}, nil)
	if err != nil {
		return nil, nil, err
	}
	defer rc.stop()
	rc.judge.DryRun = true

	gc := gatewayConfig(cfg, &certHolder{})
	gc.ProxyTrusted = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	gc.MaxConnectionsPerIP = 10
	// A quarantined message goes to a scratch Maildir, removed afterwards.
	qdir, err := os.MkdirTemp("", "gatewayd-explain-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(qdir)
	quarantine, err := maildir.Open(qdir)
	if err != nil {
		return nil, nil, err
	}
	srv := gateway.New(gc, gateway.Options{Upstream: dryRunUpstream{}, Hook: rc.judge, Logger: logger, Quarantine: quarantine})
	rc.judge.Hostname = srv.Config().Hostname
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	go srv.Serve(l)
	defer srv.Close()

	dialog, err := explainDialog(l.Addr().String(), ip, helo, from, rcpts, msg)
	ex.mu.Lock()
	defer ex.mu.Unlock()
	return ex.stages, dialog, err
}

// explainDialog speaks SMTP to the private listener, presenting ip through
// a PROXY protocol header, and returns the transcript.
func explainDialog(addr string, ip netip.Addr, helo, from string, rcpts []string, msg []byte) ([]string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	proto := proxyproto.TCPv4
	if ip.Is6() {
		proto = proxyproto.TCPv6
	}
	dst := netip.IPv4Unspecified()
	if ip.Is6() {
		dst = netip.IPv6Unspecified()
	}
	h := &proxyproto.Header{Version: 2, Command: proxyproto.PROXY, TransportProtocol: proto,
		SourceAddr:      net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, 40000)),
		DestinationAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(dst, 25))}
	if _, err := h.WriteTo(c); err != nil {
		return nil, err
	}
	r := bufio.NewReader(c)
	var out []string
	read := func() (string, error) {
		var last string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return last, err
			}
			line = strings.TrimRight(line, "\r\n")
			out = append(out, "S: "+line)
			last = line
			if len(line) < 4 || line[3] != '-' {
				return line, nil
			}
		}
	}
	cmd := func(line string) (string, error) {
		out = append(out, "C: "+line)
		if _, err := io.WriteString(c, line+"\r\n"); err != nil {
			return "", err
		}
		return read()
	}
	ok := func(reply string) bool { return strings.HasPrefix(reply, "2") || strings.HasPrefix(reply, "3") }
	if reply, err := read(); err != nil || !ok(reply) {
		return out, nil
	}
	if reply, err := cmd("EHLO " + helo); err != nil || !ok(reply) {
		return out, nil
	}
	if reply, err := cmd("MAIL FROM:<" + from + ">"); err != nil || !ok(reply) {
		return out, nil
	}
	accepted := 0
	for _, rc := range rcpts {
		reply, err := cmd("RCPT TO:<" + strings.TrimSpace(rc) + ">")
		if err != nil {
			return out, nil
		}
		if ok(reply) {
			accepted++
		}
	}
	if msg == nil || accepted == 0 {
		cmd("QUIT")
		return out, nil
	}
	if reply, err := cmd("DATA"); err != nil || !ok(reply) {
		return out, nil
	}
	out = append(out, fmt.Sprintf("C: <message, %d octets>", len(msg)))
	if _, err := c.Write(dotStuffCRLF(msg)); err != nil {
		return out, err
	}
	read()
	cmd("QUIT")
	return out, nil
}

// dotStuffCRLF turns a message file (LF or CRLF line ends) into DATA
// content: CRLF line ends, dot-stuffed, with the end marker.
func dotStuffCRLF(msg []byte) []byte {
	msg = bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n"))
	var b bytes.Buffer
	for _, line := range strings.SplitAfter(string(msg), "\n") {
		if line == "" {
			continue
		}
		line = strings.TrimSuffix(line, "\n")
		if strings.HasPrefix(line, ".") {
			b.WriteByte('.')
		}
		b.WriteString(line)
		b.WriteString("\r\n")
	}
	b.WriteString(".\r\n")
	return b.Bytes()
}

// greylistNote says what the daemon does with the greylist verdict of
// stages[i], from the evaluation that follows it for the same recipient.
func greylistNote(stages []*explainStage, i int) string {
	s := stages[i]
	var state any
	if i+1 < len(stages) && stages[i+1].Stage == s.Stage && stages[i+1].Subject == s.Subject {
		state = stages[i+1].Checks["greylist"]
	}
	switch state {
	case nil:
		return " (greylisting is off: the daemon goes on as if no rule had decided)"
	case "allowed":
		return " (on a greylist allow list: the daemon does not defer; judged again below)"
	}
	return " (greylisting applies to this recipient: a first attempt is deferred; explain does not consult or change the store; its retry is judged below)"
}

func printExplain(w io.Writer, stages []*explainStage, dialog []string) {
	for i, s := range stages {
		title := string(s.Stage)
		if s.Subject != "" {
			title += " " + s.Subject
		}
		fmt.Fprintf(w, "== %s\n", title)
		keys := make([]string, 0, len(s.Checks))
		for k := range s.Checks {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "   check  %-28s %v\n", k, s.Checks[k])
		}
		for _, r := range s.Rules {
			mark := "  -"
			if r.Matched {
				mark = "  +"
			}
			line := fmt.Sprintf("   rule %s %s", mark, r.Rule)
			if r.Err != "" {
				line += "  (error: " + r.Err + ")"
			}
			fmt.Fprintln(w, line)
		}
		for _, r := range s.Reasons {
			fmt.Fprintf(w, "   reason %s %+g %s\n", r.Rule, r.Score, r.Detail)
		}
		fmt.Fprintf(w, "   score  %+g (total %g)\n", s.Score, s.Total)
		verdict := string(s.Action)
		if s.Rule != "" {
			verdict += " by " + s.Rule
		}
		if s.Action == policy.ActionGreylist {
			verdict += greylistNote(stages, i)
		}
		fmt.Fprintf(w, "   verdict %s\n", verdict)
	}
	fmt.Fprintln(w, "== dialog")
	for _, l := range dialog {
		fmt.Fprintf(w, "   %s\n", l)
	}
}
