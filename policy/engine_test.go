package policy_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/mxgate/gatewayd/checks"
	"github.com/mxgate/gatewayd/policy"
)

// outcome is the part of a policy.Outcome a case asserts.
type outcome struct {
	action  policy.Action
	reply   string // Reply.String(), "" for none
	scope   policy.Scope
	rule    string
	added   float64 // Verdict.Score
	total   float64
	reasons []string
	headers []string // "Name: value"
}

func view(o policy.Outcome) outcome {
	v := outcome{action: o.Action, scope: o.Scope, rule: o.Rule, added: o.Score, total: o.Total, reasons: reasons(o)}
	if !o.Reply.IsZero() {
		v.reply = o.Reply.String()
	}
	for _, h := range o.Headers {
		v.headers = append(v.headers, h.Name+": "+h.Value)
	}
	return v
}

func equal(a, b outcome) bool {
	return a.action == b.action && a.reply == b.reply && a.scope == b.scope && a.rule == b.rule &&
		a.added == b.added && a.total == b.total && slices.Equal(a.reasons, b.reasons) && slices.Equal(a.headers, b.headers)
}

const (
	cont = policy.ActionContinue
	zen  = "bl.test"
)

// defaultReply names the cases whose rule gave no reply.
var defaultReply = map[string]bool{
	"connect reject default reply": true, "connect defer default reply": true, "mail defer null sender": true,
	"rcpt greylist rule": true, "rcpt greylist threshold reached by the rcpt score": true,
}

func TestEvaluateActions(t *testing.T) {
	e, err := policy.Load("testdata/actions")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		facts *policy.Facts
		want  outcome
	}{
		// connect
		{"connect nothing", facts(policy.StageConnect),
			outcome{action: cont}},
		{"connect accept listed network", facts(policy.StageConnect, ip("192.0.2.77")),
			outcome{action: policy.ActionAccept, scope: policy.ScopeSession, rule: "connect_allow", reasons: []string{"connect_allow"}}},
		{"connect accept IPv6 network", facts(policy.StageConnect, ip("2001:db8:1:ff::1")),
			outcome{action: policy.ActionAccept, scope: policy.ScopeSession, rule: "connect_allow", reasons: []string{"connect_allow"}}},
		{"connect accept single address", facts(policy.StageConnect, ip("203.0.113.77")),
			outcome{action: policy.ActionAccept, scope: policy.ScopeSession, rule: "connect_allow", reasons: []string{"connect_allow"}}},
		{"connect IPv4-mapped client", facts(policy.StageConnect, ip("::ffff:192.0.2.9")),
			outcome{action: policy.ActionAccept, scope: policy.ScopeSession, rule: "connect_allow", reasons: []string{"connect_allow"}}},
		{"connect reject with TXT", facts(policy.StageConnect, zone(zen, checks.Listed, "see https://bl.test/203.0.113.1", "127.0.0.4")),
			outcome{action: policy.ActionReject, rule: "connect_reject_listed", reasons: []string{"connect_reject_listed"},
				reply: "554 5.7.1 Blocked using bl.test: see https://bl.test/203.0.113.1"}},
		{"connect TXT cannot inject lines", facts(policy.StageConnect, zone(zen, checks.Listed, "bad\r\n250 ok", "127.0.0.2")),
			outcome{action: policy.ActionReject, rule: "connect_reject_listed", reasons: []string{"connect_reject_listed"},
				reply: "554 5.7.1 Blocked using bl.test: bad 250 ok"}},
		{"connect score on other code", facts(policy.StageConnect, zone(zen, checks.Listed, "pbl", "127.0.0.10")),
			outcome{action: cont, added: 3, total: 3, reasons: []string{"connect_score_listed:3"}}},
		{"connect zone error is never a listing", facts(policy.StageConnect, zone(zen, checks.ListError, "", "127.255.255.254")),
			outcome{action: cont, reasons: []string{"connect_zone_error"}}},
		{"connect not listed", facts(policy.StageConnect, zone(zen, checks.NotListed, "")),
			outcome{action: cont}},
		{"connect reject default reply", facts(policy.StageConnect, ip("198.51.100.2")),
			outcome{action: policy.ActionReject, rule: "connect_reject_default", reasons: []string{"connect_reject_default"},
				reply: "554 5.7.1 Connection refused"}},
		{"connect defer default reply", facts(policy.StageConnect, ip("198.51.100.3")),
			outcome{action: policy.ActionDefer, rule: "connect_defer", reasons: []string{"connect_defer"}, reply: "421 4.7.0 Try again later"}},
		{"connect score carries into total", facts(policy.StageConnect, score(1.5), zone(zen, checks.Listed, "", "127.0.0.11")),
			outcome{action: cont, added: 3, total: 4.5, reasons: []string{"connect_score_listed:3"}}},

		// helo
		{"helo accept", facts(policy.StageHelo, helo("friend.test")),
			outcome{action: policy.ActionAccept, scope: policy.ScopeSession, rule: "helo_accept", reasons: []string{"helo_accept"}}},
		{"helo score", facts(policy.StageHelo, helo("LOCALHOST.localdomain")),
			outcome{action: cont, added: 2, total: 2, reasons: []string{"helo_localhost:2"}}},
		{"helo reject short reply form", facts(policy.StageHelo, helo("reject.test")),
			outcome{action: policy.ActionReject, rule: "helo_reject", reasons: []string{"helo_reject"}, reply: "550 5.7.1 Bad HELO reject.test"}},
		{"helo defer code without text", facts(policy.StageHelo, helo("defer.test")),
			outcome{action: policy.ActionDefer, rule: "helo_defer", reasons: []string{"helo_defer"}, reply: "450 4.7.1 Try again later"}},

		// mail
		{"mail accept allowed domain with SPF pass", facts(policy.StageMail, from("a@x.friends.test"), spf(checks.SPFPass, "x.friends.test")),
			outcome{action: policy.ActionAccept, scope: policy.ScopeTransaction, rule: "mail_allow_domain", reasons: []string{"mail_allow_domain"}}},
		{"mail allowed domain itself", facts(policy.StageMail, from("a@friends.test"), spf(checks.SPFPass, "friends.test")),
			outcome{action: policy.ActionAccept, scope: policy.ScopeTransaction, rule: "mail_allow_domain", reasons: []string{"mail_allow_domain"}}},
		{"mail allowed subdomain only form", facts(policy.StageMail, from("a@deep.sub.test"), spf(checks.SPFPass, "deep.sub.test")),
			outcome{action: policy.ActionAccept, scope: policy.ScopeTransaction, rule: "mail_allow_domain", reasons: []string{"mail_allow_domain"}}},
		{"mail *.sub.test does not match sub.test", facts(policy.StageMail, from("a@sub.test"), spf(checks.SPFPass, "sub.test")),
			outcome{action: cont}},
		{"mail allowed domain without SPF pass", facts(policy.StageMail, from("a@good.test"), spf(checks.SPFSoftFail, "good.test")),
			outcome{action: cont, added: 1.5, total: 1.5, reasons: []string{"mail_spf_softfail:1.5"}}},
		{"mail reject listed sender", facts(policy.StageMail, from("Spammer@Mail.Test")),
			outcome{action: policy.ActionReject, rule: "mail_bad_sender", reasons: []string{"mail_bad_sender"}, reply: "553 5.7.1 Sender Spammer@Mail.Test refused"}},
		{"mail address list strips brackets", facts(policy.StageMail, from("other@mail.test")),
			outcome{action: policy.ActionReject, rule: "mail_bad_sender", reasons: []string{"mail_bad_sender"}, reply: "553 5.7.1 Sender other@mail.test refused"}},
		{"mail drop", facts(policy.StageMail, from("drop@mail.test")),
			outcome{action: policy.ActionDrop, rule: "mail_drop", reasons: []string{"mail_drop"}}},
		{"mail score with detail", facts(policy.StageMail, from("a@forged.test"), spf(checks.SPFFail, "forged.test"), score(2)),
			outcome{action: cont, added: 4, total: 6, reasons: []string{"mail_spf_fail:4"}}},
		{"mail defer null sender", facts(policy.StageMail, from(""), helo("bounce.test")),
			outcome{action: policy.ActionDefer, rule: "mail_null_bounce", reasons: []string{"mail_null_bounce"}, reply: "451 4.7.1 Try again later"}},

		// rcpt
		{"rcpt accept has recipient scope", facts(policy.StageRcpt, rcpt("postmaster@rcpt.test"), score(50)),
			outcome{action: policy.ActionAccept, scope: policy.ScopeRecipient, rule: "rcpt_postmaster", total: 50, reasons: []string{"rcpt_postmaster"}}},
		{"rcpt drop via regex list", facts(policy.StageRcpt, rcpt("trap42@rcpt.test")),
			outcome{action: policy.ActionDrop, rule: "rcpt_trap", reasons: []string{"rcpt_trap"}}},
		{"rcpt reject", facts(policy.StageRcpt, rcpt("nobody@rcpt.test")),
			outcome{action: policy.ActionReject, rule: "rcpt_unknown", reasons: []string{"rcpt_unknown"}, reply: "550 5.1.1 No such user"}},
		{"rcpt defer", facts(policy.StageRcpt, rcpt("busy@rcpt.test")),
			outcome{action: policy.ActionDefer, rule: "rcpt_busy", reasons: []string{"rcpt_busy"}, reply: "452 4.2.2 Mailbox full"}},
		{"rcpt greylist rule", facts(policy.StageRcpt, rcpt("grey@rcpt.test")),
			outcome{action: policy.ActionGreylist, rule: "rcpt_greylist", reasons: []string{"rcpt_greylist"}, reply: "451 4.7.1 Greylisted, try again later"}},
		{"rcpt greylist passed", facts(policy.StageRcpt, rcpt("grey@rcpt.test"), greylist("pass")),
			outcome{action: cont}},
		{"rcpt score below thresholds", facts(policy.StageRcpt, rcpt("a@scored.test"), score(1)),
			outcome{action: cont, added: 1, total: 2, reasons: []string{"rcpt_score:1"}}},
		{"rcpt greylist threshold reached by the rcpt score", facts(policy.StageRcpt, rcpt("a@scored.test"), score(2)),
			outcome{action: policy.ActionGreylist, rule: "threshold:greylist", added: 1, total: 3,
				reasons: []string{"rcpt_score:1", "threshold:greylist"}, reply: "451 4.7.1 Greylisted, try again later"}},
		{"rcpt greylist threshold skipped after a pass", facts(policy.StageRcpt, rcpt("a@x.test"), score(5), greylist("pass")),
			outcome{action: cont, total: 5}},
		{"rcpt reject threshold", facts(policy.StageRcpt, rcpt("a@x.test"), score(10)),
			outcome{action: policy.ActionReject, rule: "threshold:reject", total: 10,
				reasons: []string{"threshold:reject"}, reply: "550 5.7.1 Too spammy (score 10)"}},
		{"rcpt quarantine and add_header thresholds are data only", facts(policy.StageRcpt, rcpt("a@x.test"), score(8), greylist("pass")),
			outcome{action: cont, total: 8}},

		// data
		{"data nothing", facts(policy.StageData, header("Subject: hello")),
			outcome{action: cont}},
		{"data accept", facts(policy.StageData, header("Subject: accept me"), score(30)),
			outcome{action: policy.ActionAccept, scope: policy.ScopeTransaction, rule: "data_accept", total: 30, reasons: []string{"data_accept"}}},
		{"data add_header then continue", facts(policy.StageData, dkim("example.org=pass"), rcpts("a@x.test", "b@x.test")),
			outcome{action: cont, reasons: []string{"data_dkim_header"}, headers: []string{"X-Trusted-Signer: a@x.test,b@x.test signed by example.org"}}},
		{"data add_header and quarantine", facts(policy.StageData, dkim("example.org=pass"), header("Subject: please quarantine")),
			outcome{action: policy.ActionQuarantine, rule: "data_quarantine", reasons: []string{"data_dkim_header", "data_quarantine"},
				headers: []string{"X-Trusted-Signer: signed by example.org"}}},
		{"data DMARC reject", facts(policy.StageData, dmarc(checks.DMARCFail, "bank.test", "reject", "reject")),
			outcome{action: policy.ActionReject, rule: "data_dmarc_reject", reasons: []string{"data_dmarc_reject"},
				reply: "550 5.7.1 DMARC policy of bank.test says reject"}},
		{"data DMARC reject sampled out", facts(policy.StageData, dmarc(checks.DMARCFail, "bank.test", "reject", "quarantine")),
			outcome{action: cont}},
		{"data DMARC temperror", facts(policy.StageData, dmarc(checks.DMARCTempError, "bank.test", "", "")),
			outcome{action: policy.ActionDefer, rule: "data_dmarc_temperror", reasons: []string{"data_dmarc_temperror"},
				reply: "451 4.7.5 DMARC policy not available, try again later"}},
		{"data drop on header", facts(policy.StageData, header("Subject: x", "X-Drop: yes")),
			outcome{action: policy.ActionDrop, rule: "data_drop", reasons: []string{"data_drop"}}},
		{"data continue rule is recorded", facts(policy.StageData, dkim("a.test=fail")),
			outcome{action: cont, reasons: []string{"data_continue"}}},
		{"data score and add_header threshold", facts(policy.StageData, size(2000000), score(2)),
			outcome{action: cont, added: 2.5, total: 4.5, reasons: []string{"data_big:2.5", "threshold:add_header"},
				headers: []string{"X-Spam-Score: 4.5"}}},
		{"data quarantine threshold adds the header too", facts(policy.StageData, score(7)),
			outcome{action: policy.ActionQuarantine, rule: "threshold:quarantine", total: 7,
				reasons: []string{"threshold:add_header", "threshold:quarantine"}, headers: []string{"X-Spam-Score: 7.0"}}},
		{"data reject threshold", facts(policy.StageData, size(2000000), score(8)),
			outcome{action: policy.ActionReject, rule: "threshold:reject", added: 2.5, total: 10.5,
				reasons: []string{"data_big:2.5", "threshold:add_header", "threshold:reject"}, headers: []string{"X-Spam-Score: 10.5"},
				reply: "550 5.7.1 Too spammy (score 10.5)"}},
		{"data negative total", facts(policy.StageData, score(-5)),
			outcome{action: cont, total: -5}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := e.Evaluate(tc.facts)
			if len(out.Errors) > 0 {
				t.Errorf("run-time errors: %v", out.Errors)
			}
			if got, want := out.DefaultReply, defaultReply[tc.name]; got != want {
				t.Errorf("DefaultReply = %v, want %v", got, want)
			}
			if got := view(out); !equal(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			if err := out.Reply.Validate(); !out.Reply.IsZero() && err != nil {
				t.Errorf("reply %q: %v", out.Reply, err)
			}
			var sum float64
			for _, r := range out.Reasons {
				sum += r.Score
			}
			if sum != out.Score {
				t.Errorf("Verdict.Score %g is not the sum of the reasons' scores %g", out.Score, sum)
			}
		})
	}
}

// TestEvaluateScoreWithinStage: "score" in a condition includes what the
// rules before it added in the same stage.
func TestEvaluateScoreWithinStage(t *testing.T) {
	e, err := policy.Load("testdata/scoring")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		facts *policy.Facts
		want  outcome
	}{
		{"first rule alone", facts(policy.StageMail, from("a@one.test")),
			outcome{action: cont, added: 2, total: 2, reasons: []string{"plus_two:2"}}},
		{"second rule sees the first", facts(policy.StageMail, from("a@one.test"), score(1)),
			outcome{action: policy.ActionReject, rule: "reject_at_three", added: 2, total: 3,
				reasons: []string{"plus_two:2", "reject_at_three"}, reply: "550 5.7.1 score 3 reached"}},
		{"negative scores lower it", facts(policy.StageMail, from("a@one.test"), score(1), tls("TLS1.3")),
			outcome{action: cont, added: 0.5, total: 1.5, reasons: []string{"plus_two:2", "tls_bonus:-1.5"}}},
		{"detail in the reason", facts(policy.StageMail, from("a@two.test")),
			outcome{action: cont, reasons: []string{"note_two"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := e.Evaluate(tc.facts)
			if got := view(out); !equal(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
	out := e.Evaluate(facts(policy.StageMail, from("a@two.test")))
	if got := out.Reasons[0].Detail; got != "mail from two.test at score 0" {
		t.Errorf("detail %q", got)
	}
}

// TestEvaluateRuntimeError: a condition that fails at run time is skipped
// and reported, never taken as true.
func TestEvaluateRuntimeError(t *testing.T) {
	e, err := policy.Load("testdata/scoring")
	if err != nil {
		t.Fatal(err)
	}
	out, steps := e.Explain(facts(policy.StageRcpt, rcpt("a@x.test")))
	if out.Action != cont || len(out.Errors) != 1 || !strings.Contains(out.Errors[0], "first_other_rcpt") {
		t.Fatalf("got %+v", out)
	}
	if len(steps) != 2 || steps[0].Err == "" || steps[1].Rule != "always" || !steps[1].Matched {
		t.Fatalf("steps %+v", steps)
	}
}

func TestNeeds(t *testing.T) {
	e, err := policy.Load("testdata/actions")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		stage policy.Stage
		want  policy.NeedSet
	}{
		{policy.StageConnect, policy.NeedSet{DNSBL: true}},
		{policy.StageHelo, policy.NeedSet{}},
		{policy.StageMail, policy.NeedSet{SPF: true}},
		{policy.StageRcpt, policy.NeedSet{Greylist: true}},
		{policy.StageData, policy.NeedSet{DKIM: true, DMARC: true}},
		{"nosuch", policy.NeedSet{}},
	}
	for _, tc := range tests {
		if got := e.Needs(tc.stage); got != tc.want {
			t.Errorf("Needs(%s) = %v, want %v", tc.stage, got, tc.want)
		}
	}
	if got := e.Zones(); !slices.Equal(got, []string{"bl.test"}) {
		t.Errorf("Zones() = %v", got)
	}
	n, err := policy.Load("testdata/needs")
	if err != nil {
		t.Fatal(err)
	}
	want := policy.NeedSet{DNSBL: true, DomainBL: true, IPRev: true, SPF: true, DKIM: true, DMARC: true, Greylist: true}
	if got := n.Needs(policy.StageData); got != want {
		t.Errorf("data needs %v, want %v", got, want)
	}
	if got := n.Needs(policy.StageHelo); got != (policy.NeedSet{IPRev: true, DNSBL: true}) {
		t.Errorf("helo needs %v (client_name in the condition, ZoneReason in the reply)", got)
	}
}

// TestGreylistReevaluation: after a greylist verdict the gateway asks the
// store and evaluates again with the state set; greylist rules and the
// greylist threshold are then skipped and the rest still applies.
func TestGreylistReevaluation(t *testing.T) {
	e, err := policy.Load("testdata/greylist")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		facts *policy.Facts
		want  outcome
	}{
		{"first pass greylists", facts(policy.StageRcpt, rcpt("a@x.test")),
			outcome{action: policy.ActionGreylist, rule: "grey_unknown", reasons: []string{"grey_unknown"}, reply: "451 4.7.1 Greylisted, try again later"}},
		{"threshold greylists", facts(policy.StageRcpt, rcpt("a@x.test"), rdns("mx.test"), score(4)),
			outcome{action: policy.ActionGreylist, rule: "threshold:greylist", added: 1, total: 5,
				reasons: []string{"after_grey:1", "threshold:greylist"}, reply: "451 4.7.1 Greylisted, try again later"}},
		{"after a pass the rest applies", facts(policy.StageRcpt, rcpt("a@x.test"), greylist("pass"), score(4)),
			outcome{action: cont, added: 1, total: 5, reasons: []string{"after_grey:1"}}},
		{"after a pass the reject threshold still applies", facts(policy.StageRcpt, rcpt("a@x.test"), greylist("autoallowed"), score(9)),
			outcome{action: policy.ActionReject, rule: "threshold:reject", added: 1, total: 10,
				reasons: []string{"after_grey:1", "threshold:reject"}, reply: "550 5.7.1 Rejected as spam"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := view(e.Evaluate(tc.facts)); !equal(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// TestEvaluateLazy: EvaluateLazy asks for a pending check just before the
// first rule or threshold that reads it, once, and never when an earlier
// rule ends the stage.
func TestEvaluateLazy(t *testing.T) {
	e, err := policy.Load("testdata/lazy")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		f       *policy.Facts
		pending policy.NeedSet
		rdns    string // what the load finds; "" for none
		loads   int
		action  policy.Action
		reasons []string
	}{
		{"refused by the DNSBL first", facts(policy.StageConnect, zone("bl.test", checks.Listed, "", "127.0.0.2")),
			policy.NeedSet{IPRev: true}, "", 0, policy.ActionReject, []string{"listed"}},
		{"accepted first", facts(policy.StageConnect, ip("192.0.2.9")),
			policy.NeedSet{IPRev: true}, "", 0, policy.ActionAccept, []string{"allow_net"}},
		{"read by two rules, asked once", facts(policy.StageConnect),
			policy.NeedSet{IPRev: true}, "", 1, policy.ActionContinue, []string{"no_rdns:2", "no_name:1"}},
		{"asked and found", facts(policy.StageConnect),
			policy.NeedSet{IPRev: true}, "mx.example", 1, policy.ActionContinue, nil},
		{"not pending: never asked", facts(policy.StageConnect, rdns("")),
			policy.NeedSet{SPF: true}, "", 0, policy.ActionContinue, []string{"no_rdns:2", "no_name:1"}},
		{"read by a threshold", facts(policy.StageRcpt, rcpt("a@example.com")),
			policy.NeedSet{IPRev: true}, "", 1, policy.ActionReject, []string{"rcpt_mark:5", "threshold:reject"}},
		{"threshold not reached: not asked", facts(policy.StageRcpt, rcpt("a@example.com"), score(-10)),
			policy.NeedSet{IPRev: true}, "", 0, policy.ActionContinue, []string{"rcpt_mark:5"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			loads := 0
			out := e.EvaluateLazy(tc.f, tc.pending, func(n policy.NeedSet) {
				loads++
				if n != (policy.NeedSet{IPRev: true}) {
					t.Errorf("asked for %v", n)
				}
				rdns(tc.rdns)(tc.f)
			})
			if loads != tc.loads {
				t.Errorf("asked %d times, want %d", loads, tc.loads)
			}
			if out.Action != tc.action || !slices.Equal(reasons(out), tc.reasons) {
				t.Errorf("got %s %v, want %s %v", out.Action, reasons(out), tc.action, tc.reasons)
			}
			if len(out.Errors) > 0 {
				t.Errorf("errors: %v", out.Errors)
			}
		})
	}
}
