package gateway

// How points and reasons travel through a session and reach the decision
// line, how a second HELO, a greylist pass, a rule's 421 and the sender's
// domain lists are judged.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/gatewayd/checks"
	"github.com/mxgate/gatewayd/policy"
)

// startRules runs a gateway judged by the given rule file, with every
// check on against testdata/checks.zone, the domain zone dbl.test, and
// greylisting in memory on a fake clock, the loopback clients included.
func startRules(t *testing.T, rules string) *judgeEnv {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	eng, err := policy.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return startJudgedWith(t, "", true, eng, func(s *judgeSetup) {
		s.zones = []checks.ZoneConfig{{Zone: "zen.test"}, {Zone: "dbl.test", Kind: "domain"}}
		s.greylist.AllowCIDRs = nil
	})
}

// lastLine returns the last decision line of stage, decoded.
func (e *judgeEnv) lastLine(t *testing.T, stage string) map[string]any {
	t.Helper()
	var last map[string]any
	for _, l := range e.g.log.lines() {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["stage"] == stage {
			last = m
		}
	}
	if last == nil {
		t.Fatalf("no %s decision line in:\n%s", stage, e.g.log.String())
	}
	return last
}

// ruleNames lists the rules of a decision line's reasons, in order.
func ruleNames(line map[string]any) []string {
	var out []string
	rs, _ := line["reasons"].([]any)
	for _, r := range rs {
		if m, ok := r.(map[string]any); ok {
			out = append(out, m["rule"].(string))
		}
	}
	return out
}

// TestScoreTotalInDecisionLine: a threshold decided at RCPT on points from
// connect and mail: its line gives the total and names the rules that gave
// the points, though they matched at earlier stages.
func TestScoreTotalInDecisionLine(t *testing.T) {
	e := startRules(t, `rules:
  - {name: conn6, stage: connect, action: score, score: 6}
  - {name: mail5, stage: mail, action: score, score: 5}
thresholds:
  reject: {score: 10}
`)
	dialog(t, e.g.addr, "< 220\n> EHLO mail.client.test\n< 250\n> MAIL FROM:<a@sender.test>\n< 250\n> RCPT TO:<bob@example.com>\n< 550\n> QUIT\n< 221")
	line := e.lastLine(t, "rcpt")
	if line["score"] != 11.0 {
		t.Errorf("score %v, want the total 11", line["score"])
	}
	if got := strings.Join(ruleNames(line), ","); got != "conn6,mail5,threshold:reject" {
		t.Errorf("reasons %s, want conn6,mail5,threshold:reject", got)
	}
}

// TestHeloScoreReplaced: a second EHLO (as after STARTTLS) replaces the
// first one's points; it does not add to them.
func TestHeloScoreReplaced(t *testing.T) {
	e := startRules(t, `rules:
  - {name: helo_localhost, stage: helo, if: 'helo == "localhost"', action: score, score: 2}
thresholds:
  reject: {score: 3}
`)
	dialog(t, e.g.addr, `< 220
> EHLO localhost
< 250
> EHLO localhost
< 250
> MAIL FROM:<a@sender.test>
< 250
> RCPT TO:<bob@example.com>
< 250
> QUIT
< 221`)
	if got := e.lastLine(t, "rcpt")["score"]; got != 2.0 {
		t.Errorf("score after two EHLO localhost: %v, want 2", got)
	}
	// A better name the second time takes the points away.
	dialog(t, e.g.addr, "< 220\n> EHLO localhost\n< 250\n> EHLO mail.client.test\n< 250\n> MAIL FROM:<a@sender.test>\n< 250\n> RCPT TO:<carol@example.com>\n< 250\n> QUIT\n< 221")
	if got, ok := e.lastLine(t, "rcpt")["score"]; ok {
		t.Errorf("score after EHLO mail.client.test: %v, want none", got)
	}
}

// TestGreylistPassReasonsOnce: after a greylist pass the recipient is
// judged again; the rules before the greylist rule are listed once, and
// the score is theirs once.
func TestGreylistPassReasonsOnce(t *testing.T) {
	e := startRules(t, `rules:
  - {name: rcpt_pts, stage: rcpt, action: score, score: 2}
  - {name: grey, stage: rcpt, action: greylist}
`)
	greylistThen(t, e, "250")
	line := e.lastLine(t, "rcpt")
	if got := strings.Join(ruleNames(line), ","); got != "rcpt_pts,grey,greylist" {
		t.Errorf("reasons %s, want rcpt_pts,grey,greylist", got)
	}
	if line["score"] != 2.0 {
		t.Errorf("score %v, want 2", line["score"])
	}
}

// TestExplainGreylistJudgesTheRetry: a dry run (explain) does not stop at
// the greylist rule: the retry is judged by the rules after it, as the
// daemon judges it.
func TestExplainGreylistJudgesTheRetry(t *testing.T) {
	e := startRules(t, `rules:
  - {name: grey, stage: rcpt, action: greylist}
  - {name: no_bad, stage: rcpt, if: 'rcpt == "bad@example.com"', action: reject}
`)
	e.j.DryRun = true
	dialog(t, e.g.addr, "< 220\n> EHLO mail.client.test\n< 250\n> MAIL FROM:<a@sender.test>\n< 250\n> RCPT TO:<bad@example.com>\n< 550\n> RCPT TO:<bob@example.com>\n< 250\n> QUIT\n< 221")
	if got := strings.Join(ruleNames(e.lastLine(t, "rcpt")), ","); got != "grey,greylist" {
		t.Errorf("reasons of the accepted recipient %s, want grey,greylist", got)
	}
}

// TestRule421Closes: a rule's 421 at any stage closes the connection after
// the reply (RFC 5321 section 3.8); pipelined commands are not answered.
func TestRule421Closes(t *testing.T) {
	e := startRules(t, `rules:
  - {name: bye, stage: rcpt, if: 'rcpt == "a@example.com"', action: defer, reply: "421 4.7.0 closing"}
`)
	dialog(t, e.g.addr, `< 220
> EHLO mail.client.test
< 250
> MAIL FROM:<a@sender.test>
< 250
>> "RCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n"
< 421 4.7.0 closing
<EOF`)
	sessionsEnded(t, e.g.srv)
}

// TestSenderDomainListAtRcpt: a rule at rcpt reading the MAIL FROM
// domain's listing sees it (the lookup starts at MAIL), and the next
// transaction does not inherit it.
func TestSenderDomainListAtRcpt(t *testing.T) {
	e := startRules(t, `rules:
  - name: listed_sender
    stage: rcpt
    if: 'domainbl["dbl.test"]["mail_from"].listed'
    action: reject
    reply: "550 5.7.1 sender domain listed"
`)
	e.dns.AddRR(t, "listed.example.dbl.test. 300 IN A 127.0.1.2")
	dialog(t, e.g.addr, `< 220
> EHLO mail.client.test
< 250
> MAIL FROM:<a@listed.example>
< 250
> RCPT TO:<bob@example.com>
< 550 5.7.1 sender domain listed
> RSET
< 250
> MAIL FROM:<>
< 250
> RCPT TO:<bob@example.com>
< 250
> QUIT
< 221`)
}

// TestThresholdAfterGreylistNamesItsRules: a reject threshold reached on
// the second look after a greylist pass names the rules that gave the
// points, as any threshold's line does.
func TestThresholdAfterGreylistNamesItsRules(t *testing.T) {
	e := startRules(t, `rules:
  - {name: conn6, stage: connect, action: score, score: 6}
  - {name: grey, stage: rcpt, action: greylist}
thresholds:
  reject: {score: 5}
`)
	greylistThen(t, e, "550")
	if got := strings.Join(ruleNames(e.lastLine(t, "rcpt")), ","); got != "conn6,grey,greylist,threshold:reject" {
		t.Errorf("reasons %s, want conn6,grey,greylist,threshold:reject", got)
	}
}

// TestHeloAgainForgetsItsListing: a HELO again replaces the last name's
// domain listing, also with a name that is not looked up.
func TestHeloAgainForgetsItsListing(t *testing.T) {
	e := startRules(t, `rules:
  - name: listed_helo
    stage: mail
    if: 'domainbl["dbl.test"]["helo"].listed'
    action: reject
    reply: "550 5.7.1 helo domain listed"
`)
	e.dns.AddRR(t, "listed.example.dbl.test. 300 IN A 127.0.1.2")
	dialog(t, e.g.addr, `< 220
> EHLO listed.example
< 250
> MAIL FROM:<a@sender.test>
< 550 5.7.1 helo domain listed
> EHLO [127.0.0.1]
< 250
> MAIL FROM:<a@sender.test>
< 250
> RCPT TO:<bob@example.com>
< 250
> QUIT
< 221`)
	// The line of the next decision no longer shows the old listing.
	checks, _ := e.lastLine(t, "rcpt")["checks"].(map[string]any)
	if _, ok := checks["domainbl_helo"]; ok {
		t.Errorf("the rcpt line still shows the first HELO's listing: %v", checks)
	}
}

// greylistThen sends one recipient twice, the delay passing between: the
// first try is greylisted, the second answered want.
func greylistThen(t *testing.T, e *judgeEnv, want string) {
	t.Helper()
	try := "< 220\n> EHLO mail.client.test\n< 250\n> MAIL FROM:<a@sender.test>\n< 250\n> RCPT TO:<bob@example.com>\n< %s\n> QUIT\n< 221"
	dialog(t, e.g.addr, strings.Replace(try, "%s", "451", 1))
	e.clock.Advance(10 * time.Minute)
	dialog(t, e.g.addr, strings.Replace(try, "%s", want, 1))
}
