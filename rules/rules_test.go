package rules_test

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mxgate/gatewayd/checks"
	"github.com/mxgate/gatewayd/policy"
)

// client is what the checks saw of one session and its message. The test
// runs the stages in order as the gateway does, carrying the score as
// policy documents: connect and helo points for the session, mail points
// for the transaction, rcpt points for that recipient only.
type client struct {
	ip       string
	rdns     string // verified reverse name; "" is iprev fail
	zen      []string
	zenState checks.ListStatus // default: listed when zen is set
	dnswl    []string
	dnswlErr bool
	helo     string
	from     string
	spf      checks.SPFStatus
	rcpt     string
	greylist string
	dmarc    checks.DMARCStatus
	applied  string
	header   []string
}

func (c client) facts(stage policy.Stage, score float64) *policy.Facts {
	f := &policy.Facts{Stage: stage, ClientIP: netip.MustParseAddr(c.ip), ClientName: c.rdns, Score: score,
		Helo: c.helo, MailFrom: c.from, NullSender: c.from == "", Greylist: c.greylist}
	f.IPRev = &checks.IPRevResult{Result: "pass", Name: c.rdns}
	if c.rdns == "" {
		f.IPRev.Result = "fail"
	}
	if _, d, ok := strings.Cut(c.from, "@"); ok {
		f.MailFromDomain = strings.ToLower(d)
	}
	f.DNSBL = map[string]checks.ZoneResult{
		"zen.spamhaus.org": {Zone: "zen.spamhaus.org", Status: checks.NotListed},
		"list.dnswl.org":   {Zone: "list.dnswl.org", Type: checks.TypeAllow, Status: checks.NotListed},
	}
	if len(c.zen) > 0 {
		st := c.zenState
		if st == "" {
			st = checks.Listed
		}
		f.DNSBL["zen.spamhaus.org"] = checks.ZoneResult{Zone: "zen.spamhaus.org", Status: st, Listed: st == checks.Listed,
			Codes: c.zen, Reason: "https://check.spamhaus.org/query/ip/" + c.ip, Error: map[bool]string{true: "error code " + c.zen[0]}[st == checks.ListError]}
	}
	if len(c.dnswl) > 0 {
		st := checks.Listed
		if c.dnswlErr {
			st = checks.ListError
		}
		f.DNSBL["list.dnswl.org"] = checks.ZoneResult{Zone: "list.dnswl.org", Type: checks.TypeAllow, Status: st,
			Listed: st == checks.Listed, Codes: c.dnswl}
	}
	if stage == policy.StageMail || stage == policy.StageRcpt || stage == policy.StageData {
		spf := c.spf
		if spf == "" {
			spf = checks.SPFNone
		}
		f.SPF = &checks.SPFResult{Result: spf, Domain: f.MailFromDomain}
	}
	if stage == policy.StageRcpt {
		f.Rcpt = c.rcpt
		_, f.RcptDomain, _ = strings.Cut(c.rcpt, "@")
	}
	if stage == policy.StageData {
		f.Rcpts = []string{c.rcpt}
		dm := c.dmarc
		if dm == "" {
			dm = checks.DMARCNone
		}
		f.DMARC = &checks.DMARCResult{Result: dm, Domain: f.MailFromDomain, Applied: c.applied}
		hdr := c.header
		if hdr == nil {
			hdr = []string{"From: <" + c.from + ">", "Message-ID: <1@x.test>", "Subject: hi"}
		}
		f.Header = []byte(strings.Join(hdr, "\r\n") + "\r\n")
	}
	return f
}

// result is where a session ended.
type result struct {
	stage   policy.Stage
	out     policy.Outcome
	fired   []string
	session float64 // connect + helo
}

func run(e *policy.Engine, c client) result {
	var res result
	var session, tx float64
	for _, st := range policy.Stages {
		score := session
		if st == policy.StageRcpt || st == policy.StageData {
			score = tx
		}
		o := e.Evaluate(c.facts(st, score))
		if len(o.Errors) > 0 {
			panic(strings.Join(o.Errors, "; "))
		}
		for _, r := range o.Reasons {
			res.fired = append(res.fired, r.Rule)
		}
		switch st {
		case policy.StageConnect, policy.StageHelo:
			session += o.Score
			tx = session
		case policy.StageMail:
			tx = session + o.Score
		}
		res.stage, res.out, res.session = st, o, session
		if o.Action.Terminal() {
			break
		}
	}
	return res
}

func clean() client {
	return client{ip: "198.51.100.20", rdns: "mx.sender.example", helo: "mx.sender.example",
		from: "alice@sender.example", spf: checks.SPFPass, rcpt: "bob@ours.example", dmarc: checks.DMARCPass}
}

func with(fn func(*client)) client {
	c := clean()
	fn(&c)
	return c
}

// copyRules copies the shipped rules to a temporary directory, with list
// entries added, for the cases that need a non-empty allow list.
func copyRules(t *testing.T, lists map[string]string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(".", func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, ".go") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		b = append(b, lists[p]...)
		if err := os.MkdirAll(filepath.Join(dst, filepath.Dir(p)), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, p), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestShippedRules(t *testing.T) {
	shipped, err := policy.LoadOptions(".", policy.Options{Zones: []string{"zen.spamhaus.org", "list.dnswl.org"}})
	if err != nil {
		t.Fatalf("the shipped rules do not load:\n%v", err)
	}
	withLists, err := policy.Load(copyRules(t, map[string]string{
		"lists/allow_networks.txt":       "192.0.2.0/24\n2001:db8:10::/48\n",
		"lists/allow_sender_domains.txt": ".partner.example\n",
	}))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		engine  *policy.Engine
		c       client
		stage   policy.Stage // where the session ends
		action  policy.Action
		reply   string // a part of the reply text
		total   float64
		fired   []string
		headers []string
	}{
		{name: "clean mail is relayed", c: clean(),
			stage: policy.StageData, action: policy.ActionContinue, total: -1,
			fired: []string{"dmarc_pass", "spam_score_header"}, headers: []string{"X-Spam-Score: -1.0"}},
		{name: "allow-listed network skips everything", engine: withLists,
			c:     with(func(c *client) { c.ip = "192.0.2.9"; c.zen = []string{"127.0.0.2"} }),
			stage: policy.StageConnect, action: policy.ActionAccept, fired: []string{"allow_networks"}},
		{name: "allow-listed sender domain with SPF pass", engine: withLists,
			c:     with(func(c *client) { c.from = "a@mail.partner.example"; c.rdns = "" }),
			stage: policy.StageMail, action: policy.ActionAccept, total: 1.5, fired: []string{"no_reverse_dns", "allow_sender_domains"}},
		{name: "allow-listed sender domain without SPF pass is filtered", engine: withLists,
			c:     with(func(c *client) { c.from = "a@partner.example"; c.spf = checks.SPFFail; c.rdns = "" }),
			stage: policy.StageRcpt, action: policy.ActionGreylist, reply: "Greylisted", total: 5.5,
			fired: []string{"no_reverse_dns", "spf_fail", "greylist_suspicious"}},
		{name: "SBL listing is refused at connect with the TXT", c: with(func(c *client) { c.zen = []string{"127.0.0.2"} }),
			stage: policy.StageConnect, action: policy.ActionReject,
			reply: "client [198.51.100.20] blocked using zen.spamhaus.org; https://check.spamhaus.org/query/ip/198.51.100.20",
			fired: []string{"zen_sbl_xbl"}},
		{name: "CSS listing", c: with(func(c *client) { c.zen = []string{"127.0.0.3"} }),
			stage: policy.StageConnect, action: policy.ActionReject, reply: "blocked using zen.spamhaus.org", fired: []string{"zen_sbl_xbl"}},
		{name: "XBL listing", c: with(func(c *client) { c.zen = []string{"127.0.0.4", "127.0.0.10"} }),
			stage: policy.StageConnect, action: policy.ActionReject, reply: "blocked using zen.spamhaus.org", fired: []string{"zen_sbl_xbl"}},
		{name: "DROP listing", c: with(func(c *client) { c.zen = []string{"127.0.0.9"} }),
			stage: policy.StageConnect, action: policy.ActionReject, reply: "blocked using zen.spamhaus.org", fired: []string{"zen_sbl_xbl"}},
		{name: "PBL listing scores and gets greylisted", c: with(func(c *client) { c.zen = []string{"127.0.0.11"} }),
			stage: policy.StageRcpt, action: policy.ActionGreylist, total: 4, fired: []string{"zen_pbl", "greylist_suspicious"}},
		{name: "PBL listing that passed greylisting is relayed", c: with(func(c *client) { c.zen = []string{"127.0.0.10"}; c.greylist = "pass" }),
			stage: policy.StageData, action: policy.ActionContinue, total: 3,
			fired: []string{"zen_pbl", "dmarc_pass", "spam_score_header"}, headers: []string{"X-Spam-Score: 3.0"}},
		{name: "Spamhaus error codes are never a listing", c: with(func(c *client) {
			c.zen = []string{"127.255.255.254"}
			c.zenState = checks.ListError
		}),
			stage: policy.StageData, action: policy.ActionContinue, total: -1,
			fired: []string{"zen_unusable", "dmarc_pass", "spam_score_header"}, headers: []string{"X-Spam-Score: -1.0"}},
		{name: "DNSWL high trust lowers the score and skips greylisting", c: with(func(c *client) {
			c.dnswl = []string{"127.0.15.3"}
			c.rdns = ""
			c.zen = []string{"127.0.0.10"}
		}),
			stage: policy.StageData, action: policy.ActionContinue, total: 0.5,
			fired:   []string{"zen_pbl", "dnswl_trusted", "no_reverse_dns", "dmarc_pass", "spam_score_header"},
			headers: []string{"X-Spam-Score: 0.5"}},
		{name: "DNSWL low trust", c: with(func(c *client) { c.dnswl = []string{"127.0.9.1"}; c.rdns = "" }),
			stage: policy.StageData, action: policy.ActionContinue, total: -0.5,
			fired: []string{"dnswl_listed", "no_reverse_dns", "dmarc_pass", "spam_score_header"}, headers: []string{"X-Spam-Score: -0.5"}},
		{name: "DNSWL error code is no listing", c: with(func(c *client) { c.dnswl = []string{"127.0.0.255"}; c.dnswlErr = true; c.rdns = "" }),
			stage: policy.StageRcpt, action: policy.ActionGreylist, total: 1.5, fired: []string{"no_reverse_dns", "greylist_suspicious"}},
		{name: "HELO localhost", c: with(func(c *client) { c.helo = "LocalHost" }),
			stage: policy.StageData, action: policy.ActionContinue, total: 1,
			fired: []string{"helo_localhost", "dmarc_pass", "spam_score_header"}, headers: []string{"X-Spam-Score: 1.0"}},
		{name: "HELO bare IPv4 and greylisting on score", c: with(func(c *client) { c.helo = "198.51.100.20"; c.spf = checks.SPFSoftFail }),
			stage: policy.StageRcpt, action: policy.ActionGreylist, total: 3, fired: []string{"helo_bare_ip", "spf_softfail", "greylist_suspicious"}},
		{name: "HELO bare IPv6", c: with(func(c *client) { c.helo = "2001:db8::1"; c.greylist = "pass" }),
			stage: policy.StageData, action: policy.ActionContinue, total: 0.5,
			fired: []string{"helo_bare_ip", "dmarc_pass", "spam_score_header"}, headers: []string{"X-Spam-Score: 0.5"}},
		{name: "HELO address literal is fine", c: with(func(c *client) { c.helo = "[IPv6:2001:db8::1]" }),
			stage: policy.StageData, action: policy.ActionContinue, total: -1,
			fired: []string{"dmarc_pass", "spam_score_header"}, headers: []string{"X-Spam-Score: -1.0"}},
		{name: "SPF fail plus PBL plus no rDNS is quarantined after greylisting", c: with(func(c *client) {
			c.zen = []string{"127.0.0.10"}
			c.rdns = ""
			c.spf = checks.SPFFail
			c.dmarc = checks.DMARCNone
			c.greylist = "pass"
		}),
			stage: policy.StageData, action: policy.ActionQuarantine, total: 9.5,
			fired:   []string{"zen_pbl", "no_reverse_dns", "spf_fail", "spam_score_header", "threshold:add_header", "threshold:quarantine"},
			headers: []string{"X-Spam-Score: 9.5", "X-Spam-Flag: YES"}},
		{name: "one more sign reaches the reject threshold at rcpt", c: with(func(c *client) {
			c.zen = []string{"127.0.0.10"}
			c.rdns = ""
			c.spf = checks.SPFFail
			c.helo = "localhost"
			c.greylist = "pass"
		}),
			stage: policy.StageRcpt, action: policy.ActionReject, reply: "too many signs of spam (score 11.5)", total: 11.5,
			fired: []string{"zen_pbl", "no_reverse_dns", "helo_localhost", "spf_fail", "threshold:reject"}},
		{name: "no Message-ID and a reject threshold at data", c: with(func(c *client) {
			c.zen = []string{"127.0.0.10"}
			c.spf = checks.SPFFail
			c.rdns = ""
			c.greylist = "pass"
			c.dmarc = checks.DMARCNone
			c.header = []string{"From: <alice@sender.example>", "Subject: cheap"}
		}),
			stage: policy.StageData, action: policy.ActionReject, reply: "score 10.5", total: 10.5,
			fired:   []string{"zen_pbl", "no_reverse_dns", "spf_fail", "no_message_id", "spam_score_header", "threshold:add_header", "threshold:reject"},
			headers: []string{"X-Spam-Score: 10.5", "X-Spam-Flag: YES"}},
		{name: "DMARC reject", c: with(func(c *client) { c.dmarc = checks.DMARCFail; c.applied = "reject"; c.from = "ceo@bank.example" }),
			stage: policy.StageData, action: policy.ActionReject, reply: "DMARC policy of bank.example says to reject", fired: []string{"dmarc_reject"}},
		{name: "DMARC quarantine", c: with(func(c *client) { c.dmarc = checks.DMARCFail; c.applied = "quarantine" }),
			stage: policy.StageData, action: policy.ActionQuarantine, fired: []string{"dmarc_quarantine"}},
		{name: "DMARC fail with p=none is only scored by other rules", c: with(func(c *client) { c.dmarc = checks.DMARCFail; c.applied = "none" }),
			stage: policy.StageData, action: policy.ActionContinue, fired: []string{"spam_score_header"}, headers: []string{"X-Spam-Score: 0.0"}},
		{name: "DMARC permerror (no usable From) is refused", c: with(func(c *client) { c.dmarc = checks.DMARCPermError }),
			stage: policy.StageData, action: policy.ActionReject, reply: "From header field has no author domain", fired: []string{"dmarc_permerror"}},
		{name: "two From fields add points", c: with(func(c *client) {
			c.header = []string{"From: <alice@sender.example>", "From: <ceo@bank.example>", "Message-ID: <1@sender.example>"}
		}),
			stage: policy.StageData, action: policy.ActionContinue, total: 4,
			fired: []string{"multiple_from", "dmarc_pass", "spam_score_header"}, headers: []string{"X-Spam-Score: 4.0"}},
		{name: "DMARC temperror defers", c: with(func(c *client) { c.dmarc = checks.DMARCTempError }),
			stage: policy.StageData, action: policy.ActionDefer, reply: "DMARC check of the From domain failed for now", fired: []string{"dmarc_temperror"}},
	}
	seen := map[string]bool{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := tc.engine
			if e == nil {
				e = shipped
			}
			res := run(e, tc.c)
			for _, r := range res.fired {
				seen[r] = true
			}
			o := res.out
			if res.stage != tc.stage || o.Action != tc.action {
				t.Errorf("ended at %s with %s (%s), want %s with %s", res.stage, o.Action, o.Reply, tc.stage, tc.action)
			}
			if !strings.Contains(o.Reply.Text, tc.reply) {
				t.Errorf("reply %q does not contain %q", o.Reply, tc.reply)
			}
			if err := o.Reply.Validate(); !o.Reply.IsZero() && err != nil {
				t.Errorf("reply %q: %v", o.Reply, err)
			}
			if o.Total != tc.total {
				t.Errorf("total score %g, want %g", o.Total, tc.total)
			}
			if !slices.Equal(res.fired, tc.fired) {
				t.Errorf("fired %v, want %v", res.fired, tc.fired)
			}
			var hs []string
			for _, h := range o.Headers {
				hs = append(hs, h.Name+": "+h.Value)
			}
			if !slices.Equal(hs, tc.headers) {
				t.Errorf("headers %q, want %q", hs, tc.headers)
			}
		})
	}
	// Every shipped rule and threshold fired in at least one case.
	for _, r := range shipped.Rules() {
		if !seen[r.Name] {
			t.Errorf("rule %s (%s:%d) is not exercised by any case", r.Name, r.File, r.Line)
		}
	}
	for _, th := range []string{"threshold:reject", "threshold:quarantine", "threshold:add_header"} {
		if !seen[th] {
			t.Errorf("%s is not exercised by any case", th)
		}
	}
}

// TestShippedNeeds: the checks each stage of the shipped rules reads.
func TestShippedNeeds(t *testing.T) {
	e, err := policy.Load(".")
	if err != nil {
		t.Fatal(err)
	}
	want := map[policy.Stage]policy.NeedSet{
		policy.StageConnect: {DNSBL: true, IPRev: true},
		policy.StageHelo:    {},
		policy.StageMail:    {SPF: true},
		policy.StageRcpt:    {DNSBL: true, IPRev: true, Greylist: true},
		policy.StageData:    {DMARC: true},
	}
	for st, w := range want {
		if got := e.Needs(st); got != w {
			t.Errorf("Needs(%s) = %v, want %v", st, got, w)
		}
	}
	if got := e.Zones(); !slices.Equal(got, []string{"list.dnswl.org", "zen.spamhaus.org"}) {
		t.Errorf("Zones() = %v", got)
	}
}
