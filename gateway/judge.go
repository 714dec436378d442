package gateway

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mxgate/gatewayd/checks"
	"github.com/mxgate/gatewayd/greylist"
	"github.com/mxgate/gatewayd/policy"
)

// Checks bundles the checks the Judge runs; a nil member is switched off.
type Checks struct {
	Resolver *checks.Resolver
	DNSBL    *checks.DNSBL
	SPF      *checks.SPF
	DKIM     *checks.DKIM
	DMARC    *checks.DMARC
	IPRev    bool // forward-confirmed reverse DNS of the client
	Greylist *greylist.Greylister
	// Wait bounds how long a stage waits for a check started earlier
	// (the checks have their own DNS deadlines; this is the backstop).
	Wait time.Duration
}

// Evaluator turns the facts of a stage into an outcome: the rule engine
// (*policy.Engine), or DefaultPolicy when no rules are configured.
type Evaluator interface {
	// Evaluate judges f.Stage.
	Evaluate(f *policy.Facts) policy.Outcome
	// Needs names the checks whose results the stage's rules read; the
	// Judge waits for those before evaluating. Checks a stage does not
	// need keep running and are awaited where they are needed, or at end
	// of DATA for the log and our Authentication-Results.
	Needs(stage policy.Stage) policy.NeedSet
}

// LazyEvaluator is an Evaluator that can evaluate before some check
// results are there, asking for them only when a rule that reads them is
// reached (policy.Engine does). The Judge uses it for the reverse DNS
// lookup at connect.
type LazyEvaluator interface {
	EvaluateLazy(f *policy.Facts, pending policy.NeedSet, load func(policy.NeedSet)) policy.Outcome
}

// Judge is the Hook that runs the checks at the right stage and asks the
// policy for the verdict. Checks return what they saw; only the policy
// decides; the Judge carries results between the two and into the log and
// our Authentication-Results field.
//
// Lookups start as early as their input is known (DNSBL and reverse DNS at
// connect, the HELO domain list at HELO, SPF and the sender domain list at
// MAIL) and are awaited only at the stage that needs them.
type Judge struct {
	Checks Checks
	// Policy returns the evaluator to use; it is asked at connect and at
	// each MAIL, so a reload takes effect between transactions.
	Policy func() Evaluator
	Logger *slog.Logger
	// Hostname names us in Received-SPF.
	Hostname string
	// DryRun leaves the greylist store untouched: a greylist verdict is
	// reported, not applied (explain).
	DryRun bool
	// Rules, when set, counts the rules that decided and the rules that
	// failed at run time.
	Rules *RuleMetrics
}

// judgeState is the Judge's per-session memory, kept in State.
type judgeState struct {
	ev      Evaluator
	dnsbl   *checks.Pending
	heloBL  *checks.Pending
	mailBL  *checks.Pending
	iprev   chan checks.IPRevResult
	spf     chan checks.SPFResult
	facts   policy.Facts
	trusted bool // an accept at connect/helo: skip the rest for this client
	txTrust bool // an accept at mail/rcpt: skip the rest for this transaction

	// spfFor is what the SPF check of this transaction asks (HELO name
	// and sender); spfLast the answer to the session's last one, reused
	// when the next transaction asks the same: a client sending many
	// messages on one connection asks SPF the same question each time,
	// within seconds, and the evaluation was 3% of such a message's CPU.
	// A temporary error is not kept.
	spfFor  [2]string
	spfLast *spfMemo

	// The points so far: connect's, the last HELO's (a HELO again, as
	// after STARTTLS, replaces them), and this transaction's (mail and
	// data; rcpt points count for that recipient only). scored keeps the
	// reasons that gave them, in the same three runs (nConn, nHelo, the
	// rest), for a threshold's decision line to name.
	connScore, heloScore, txScore float64
	scored                        []policy.Reason
	nConn, nHelo                  int32
	txID                          string
}

// total is the session's points, f.Score at stage.
func (js *judgeState) total(stage policy.Stage) float64 {
	if stage == policy.StageHelo {
		return js.connScore // this HELO's replace the last one's
	}
	return js.connScore + js.heloScore + js.txScore
}

// keepScored records the reasons of stage that gave points.
func (js *judgeState) keepScored(stage policy.Stage, rs []policy.Reason) {
	switch stage {
	case policy.StageHelo:
		js.scored = js.scored[:js.nConn] // a HELO ends any transaction too
		js.nHelo = 0
	case policy.StageRcpt:
		return
	}
	for _, r := range rs {
		if r.Score == 0 {
			continue
		}
		js.scored = append(js.scored, r)
		switch stage {
		case policy.StageConnect:
			js.nConn++
		case policy.StageHelo:
			js.nHelo++
		}
	}
}

// spfMemo is an SPF answer, the question it answers and when.
type spfMemo struct {
	key [2]string
	r   checks.SPFResult
	at  time.Time
}

// spfMemoFor is how long a session reuses an SPF answer: long enough for
// a sender's batch on one connection, short beside the records' TTLs.
const spfMemoFor = time.Minute

func (j *Judge) state(st *State) *judgeState {
	if st.judge == nil {
		st.judge = &judgeState{}
	}
	return st.judge
}

func (j *Judge) wait() time.Duration {
	if j.Checks.Wait > 0 {
		return j.Checks.Wait
	}
	return 10 * time.Second
}

// Decide implements Hook.
func (j *Judge) Decide(ctx context.Context, stage policy.Stage, st *State) policy.Verdict {
	v, carried := j.decide(ctx, stage, st)
	if j.Rules != nil && len(v.Reasons) > 0 {
		j.Rules.matched(stage, v.Reasons)
	}
	if len(carried) > 0 {
		v.Reasons = append(carried, v.Reasons...)
	}
	return v
}

// decide judges stage. carried are the earlier stages' reasons that gave
// points, when a threshold decided: the decision line names them (they
// are not counted again as rules matched).
func (j *Judge) decide(ctx context.Context, stage policy.Stage, st *State) (v policy.Verdict, carried []policy.Reason) {
	js := j.state(st)
	// One evaluator per transaction: a reload takes effect at the next
	// MAIL (or session), never half-way through a transaction.
	if js.ev == nil || stage == policy.StageConnect || stage == policy.StageMail {
		js.ev = j.Policy()
	}
	ev := js.ev
	need := ev.Needs(stage)
	var lazyEv LazyEvaluator // set when a check is looked up only if a rule reads it
	if need.DNSBL && stage != policy.StageConnect {
		j.awaitDNSBL(ctx, js, st)
	}
	if st.QueueID != js.txID {
		js.txID, js.txScore, js.txTrust = st.QueueID, 0, false
		js.scored = js.scored[:js.nConn+js.nHelo]
		js.facts.SPF, js.facts.DKIM, js.facts.DMARC, js.facts.Greylist = nil, nil, nil, ""
		for _, m := range js.facts.DomainBL {
			// The sender's domains were the last transaction's.
			delete(m, "mail_from")
			delete(m, "from")
		}
		// The header was a slice of the transaction's hold buffer, which
		// went back to a pool with the transaction.
		js.facts.Header, js.facts.Size = nil, 0
		js.spf, js.mailBL = nil, nil
	}
	f := &js.facts
	f.Stage = stage
	ip := st.Client.Addr()
	switch stage {
	case policy.StageConnect:
		f.ClientIP, f.ClientPort = ip, int(st.Client.Port())
		if b := j.Checks.DNSBL; b != nil {
			js.dnsbl = b.StartIP(context.WithoutCancel(ctx), ip)
		}
		if need.IPRev && j.Checks.IPRev && j.Checks.Resolver != nil {
			if le, ok := ev.(LazyEvaluator); ok {
				// Looked up when the first rule reading it is reached:
				// a client that an earlier rule refuses (its DNSBL
				// listing, with the shipped rules) costs no reverse DNS
				// lookup, as with postscreen before smtpd.
				lazyEv = le
			} else {
				// Needed now: look it up here (the DNSBL lookups started
				// above run meanwhile), no goroutine.
				j.lookupIPRev(ctx, js, st, ip)
			}
		}
		if need.DNSBL {
			j.awaitDNSBL(ctx, js, st)
		}
	case policy.StageHelo:
		f.Helo = st.Helo
		f.TLS = st.TLS != nil
		if st.TLS != nil {
			f.TLSVersion = strings.ReplaceAll(tls.VersionName(st.TLS.Version), " ", "")
		}
		// A HELO again names the client anew: the last name's listings
		// go, also when the new one is not looked up (a literal).
		for _, m := range f.DomainBL {
			delete(m, "helo")
		}
		delete(st.Results, "domainbl_helo")
		if b := j.Checks.DNSBL; b != nil && !js.trusted {
			js.heloBL = b.StartDomain(context.WithoutCancel(ctx), st.Helo)
		}
	case policy.StageMail:
		f.MailFrom = st.From.String()
		f.MailFromDomain = st.From.Domain
		f.NullSender = st.From.IsNull()
		f.Rcpt, f.RcptDomain, f.Rcpts = "", "", nil
		f.Header, f.Size = nil, 0
		if !js.trusted {
			if s := j.Checks.SPF; s != nil {
				// The goroutine sends on this transaction's own channel: a
				// transaction dropped before its answer came (RSET, a
				// refused recipient) must not hand it to the next one,
				// and the send never blocks.
				ch := make(chan checks.SPFResult, 1)
				js.spf = ch
				helo, from := st.Helo, f.MailFrom
				js.spfFor = [2]string{helo, from}
				if c := js.spfLast; c != nil && c.key == js.spfFor && time.Since(c.at) < spfMemoFor {
					// The session's previous transaction asked the same.
					ch <- c.r
				} else {
					checks.Go(func() { ch <- s.Check(context.WithoutCancel(ctx), ip, helo, from) })
				}
			}
			if b := j.Checks.DNSBL; b != nil && !f.NullSender {
				js.mailBL = b.StartDomain(context.WithoutCancel(ctx), st.From.Domain)
			}
		}
	case policy.StageRcpt:
		f.Rcpt = st.Rcpt.String()
		f.RcptDomain = st.Rcpt.Domain
		f.Rcpts = addrStrings(st.Rcpts)
		f.Greylist = ""
		if need.IPRev || need.Greylist {
			j.awaitIPRev(ctx, js, st)
		}
	case policy.StageData:
		f.Rcpts = addrStrings(st.Rcpts)
		f.Header, f.Size = st.Header, st.Size
		if !js.trusted && !js.txTrust {
			j.dataChecks(ctx, js, st)
		}
		j.awaitIPRev(ctx, js, st)
	}
	if stage == policy.StageHelo || stage == policy.StageMail {
		if need.DomainBL {
			j.domainBL(ctx, js.heloBL, f, "helo", st)
			js.heloBL = nil
		}
		if need.IPRev {
			j.awaitIPRev(ctx, js, st)
		}
	}
	if (stage == policy.StageMail || stage == policy.StageRcpt) && need.DomainBL {
		// Started at MAIL: a rule at mail or rcpt may read it.
		j.domainBL(ctx, js.mailBL, f, "mail_from", st)
		js.mailBL = nil
	}
	if (stage == policy.StageMail || stage == policy.StageRcpt) && (need.SPF || need.DMARC) {
		j.awaitSPF(js, st)
	}
	if js.trusted || (js.txTrust && stage != policy.StageConnect && stage != policy.StageHelo) {
		return policy.Continue, nil
	}
	f.Score = js.total(stage)
	var out policy.Outcome
	if lazyEv != nil {
		out = lazyEv.EvaluateLazy(f, policy.NeedSet{IPRev: true}, func(n policy.NeedSet) {
			if n.IPRev {
				j.lookupIPRev(ctx, js, st, ip)
			}
		})
	} else {
		out = ev.Evaluate(f)
	}
	v = out.Verdict
	if len(out.Errors) > 0 {
		j.Logger.Warn("rule failed at run time", "stage", stage, "errors", out.Errors, "session", st.SessionID)
		if j.Rules != nil {
			j.Rules.Errors.WithLabelValues(string(stage)).Add(float64(len(out.Errors)))
		}
	}
	prior := js.scored
	switch stage {
	case policy.StageConnect:
		js.connScore += v.Score
	case policy.StageHelo:
		js.heloScore = v.Score
		prior = js.scored[:js.nConn]
	case policy.StageMail, policy.StageData:
		js.txScore += v.Score
		// rcpt points count for that recipient only.
	}
	js.keepScored(stage, v.Reasons)
	if v.Action == policy.ActionAccept {
		switch out.Scope {
		case policy.ScopeSession:
			js.trusted = true
		case policy.ScopeTransaction:
			js.txTrust = true
		}
		// ScopeRecipient: this recipient passes RCPT; DATA is still judged.
	}
	if stage == policy.StageConnect && v.Action != policy.ActionReject && v.Action != policy.ActionDefer {
		// Started only now (when no connect rule read it): a client
		// refused at connect never costs a reverse lookup.
		j.startIPRev(ctx, js, ip)
	}
	if v.Action == policy.ActionGreylist && stage == policy.StageRcpt {
		v = j.greylist(ctx, js, st, ev, out)
	}
	if thresholdDecided(v.Reasons) { // after a greylist pass's second look too
		carried = slices.Clone(prior)
	}
	if stage == policy.StageData && f.SPF != nil {
		v.Headers = append(v.Headers, policy.Header{Name: "Received-SPF", Value: f.SPF.ReceivedSPF(j.Hostname)})
	}
	// The decision line's score is the total, not the stage's share.
	total := js.connScore + js.heloScore + js.txScore
	if stage == policy.StageRcpt {
		total += v.Score
	}
	v.Score = total
	return v, carried
}

// thresholdDecided reports whether a score threshold (a reason named
// "threshold:NAME") is among rs.
func thresholdDecided(rs []policy.Reason) bool {
	for _, r := range rs {
		if strings.HasPrefix(r.Rule, "threshold:") {
			return true
		}
	}
	return false
}

func addrStrings(as []Address) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

func (j *Judge) awaitDNSBL(ctx context.Context, js *judgeState, st *State) {
	if js.dnsbl == nil {
		return
	}
	res, final := j.zoneResults(ctx, js.dnsbl)
	if final {
		// Every zone answered: later stages keep these results and need
		// not wait (nor log them) again.
		js.dnsbl = nil
	}
	js.facts.DNSBL = make(map[string]checks.ZoneResult, len(res))
	for _, r := range res {
		js.facts.DNSBL[r.Zone] = r
	}
	if len(res) > 0 {
		st.SetResult("dnsbl", compactZones(res))
	}
}

// The check results as the decision log shows them ("checks"): typed, so
// that encoding a line reflects over cached struct layouts, not maps.
type (
	zoneLog struct {
		Zone    string   `json:"zone"`
		Status  string   `json:"status"`
		Subject string   `json:"subject"`
		Codes   []string `json:"codes,omitempty"`
		Reason  string   `json:"reason,omitempty"`
		Error   string   `json:"error,omitempty"`
	}
	iprevLog struct {
		Result string `json:"result"`
		Name   string `json:"name"`
	}
	spfLog struct {
		Result   string `json:"result"`
		Domain   string `json:"domain"`
		Identity string `json:"identity"`
	}
	dkimLog struct {
		D      string `json:"d"`
		S      string `json:"s"`
		Result string `json:"result"`
		Reason string `json:"reason,omitempty"`
	}
	dmarcLog struct {
		Result  string `json:"result"`
		Domain  string `json:"domain"`
		Policy  string `json:"policy"`
		Applied string `json:"applied"`
	}
	greylistLog struct {
		Action   string `json:"action"`
		Reason   string `json:"reason,omitempty"`
		Network  string `json:"network,omitempty"`
		FailOpen bool   `json:"fail_open,omitempty"`
		Cached   bool   `json:"cached,omitempty"`
		Error    string `json:"error,omitempty"`
	}
)

// compactZones keeps the log line short: only zones that said something.
func compactZones(res []checks.ZoneResult) []zoneLog {
	out := []zoneLog{}
	for _, r := range res {
		if r.Status == checks.NotListed {
			continue
		}
		z := zoneLog{Zone: r.Zone, Status: string(r.Status), Subject: r.Subject, Codes: r.Codes, Error: r.Error}
		if r.Listed {
			z.Reason = r.Reason
		}
		out = append(out, z)
	}
	return out
}

// lookupIPRev looks the client's reverse DNS up now, in this goroutine.
func (j *Judge) lookupIPRev(ctx context.Context, js *judgeState, st *State, ip netip.Addr) {
	js.iprev = make(chan checks.IPRevResult, 1)
	js.iprev <- checks.IPRev(ctx, j.Checks.Resolver, ip)
	j.awaitIPRev(ctx, js, st)
}

func (j *Judge) startIPRev(ctx context.Context, js *judgeState, ip netip.Addr) {
	if !j.Checks.IPRev || j.Checks.Resolver == nil || js.iprev != nil || js.facts.IPRev != nil {
		return
	}
	js.iprev = make(chan checks.IPRevResult, 1)
	ch := js.iprev
	checks.Go(func() { ch <- checks.IPRev(context.WithoutCancel(ctx), j.Checks.Resolver, ip) })
}

func (j *Judge) awaitIPRev(ctx context.Context, js *judgeState, st *State) {
	if js.iprev == nil {
		return
	}
	r, ok, timedOut := awaitResult(ctx, js.iprev, j.wait())
	if timedOut {
		js.iprev = nil
	}
	if !ok {
		return
	}
	js.iprev = nil
	js.facts.IPRev = &r
	if r.Result == "pass" {
		js.facts.ClientName = r.Name
		st.ReverseName = r.Name
	}
	st.Auth.IPRev = &r
	st.SetResult("iprev", iprevLog{Result: r.Result, Name: r.Name})
}

// zoneResults waits for DNSBL lookups, at most j.wait() and while ctx
// lasts; final says every zone answered. Lookups already done (answered
// from the DNS cache) are taken without a timer.
func (j *Judge) zoneResults(ctx context.Context, p *checks.Pending) (res []checks.ZoneResult, final bool) {
	select {
	case <-p.Done():
		return p.Wait(ctx), true
	default:
	}
	wctx, cancel := context.WithTimeout(ctx, j.wait())
	defer cancel()
	return p.Wait(wctx), false
}

// awaitResult receives a check's result, waiting at most wait and while
// ctx lasts; a result already there is taken without starting a timer.
func awaitResult[T any](ctx context.Context, ch <-chan T, wait time.Duration) (r T, ok, timedOut bool) {
	select {
	case r = <-ch:
		return r, true, false
	default:
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case r = <-ch:
		return r, true, false
	case <-t.C:
		return r, false, true
	case <-ctx.Done():
		return r, false, false
	}
}

func (j *Judge) domainBL(ctx context.Context, p *checks.Pending, f *policy.Facts, what string, st *State) {
	if p == nil {
		return
	}
	res, _ := j.zoneResults(ctx, p)
	if len(res) == 0 {
		return // no domain zones, or nothing to look up
	}
	if f.DomainBL == nil {
		f.DomainBL = map[string]map[string]checks.ZoneResult{}
	}
	for _, r := range res {
		if f.DomainBL[r.Zone] == nil {
			f.DomainBL[r.Zone] = map[string]checks.ZoneResult{}
		}
		f.DomainBL[r.Zone][what] = r
	}
	if c := compactZones(res); len(c) > 0 {
		st.SetResult("domainbl_"+what, c)
	}
}

// dataChecks runs what needs the message: SPF (started at MAIL) is
// awaited, DKIM verifies the held message, DMARC combines both with the
// From domain, which is also looked up in the domain lists.
func (j *Judge) dataChecks(ctx context.Context, js *judgeState, st *State) {
	f := &js.facts
	j.domainBL(ctx, js.heloBL, f, "helo", st)
	j.domainBL(ctx, js.mailBL, f, "mail_from", st)
	j.awaitSPF(js, st)
	if d := j.Checks.DKIM; d != nil && st.Message != nil {
		r := d.Verify(ctx, st.Message())
		f.DKIM = &r
		st.Auth.DKIM = &r
		sigs := []dkimLog{}
		for _, s := range r.Signatures {
			sigs = append(sigs, dkimLog{D: s.Domain, S: s.Selector, Result: string(s.Result), Reason: s.Reason})
		}
		st.SetResult("dkim", sigs)
	}
	if d := j.Checks.DMARC; d != nil {
		in := checks.DMARCInput{Header: st.Header}
		if f.SPF != nil {
			in.SPF = *f.SPF
		}
		if f.DKIM != nil {
			in.DKIM = *f.DKIM
		}
		r := d.Check(ctx, in)
		f.DMARC = &r
		st.Auth.DMARC = &r
		st.SetResult("dmarc", dmarcLog{Result: string(r.Result), Domain: r.Domain, Policy: r.Policy, Applied: r.Applied})
		if b := j.Checks.DNSBL; b != nil && r.Domain != "" {
			j.domainBL(ctx, b.StartDomain(ctx, r.Domain), f, "from", st)
		}
	}
}

// awaitSPF waits for the SPF check started at MAIL, once.
func (j *Judge) awaitSPF(js *judgeState, st *State) {
	if js.spf == nil {
		return
	}
	f := &js.facts
	if r, ok, _ := awaitResult(context.Background(), js.spf, j.wait()); ok {
		f.SPF = &r
		if r.Result != checks.SPFTempError {
			js.spfLast = &spfMemo{key: js.spfFor, r: r, at: time.Now()}
		}
	} else {
		// For the domain it was checking: DMARC must see an aligned
		// temperror (and defer), not an SPF result of no domain (an
		// unaligned fail, a 550 under p=reject).
		r := checks.SPFUnfinished(st.Client.Addr(), js.spfFor[0], js.spfFor[1], "SPF check did not finish in time")
		f.SPF = &r
	}
	js.spf = nil
	st.Auth.SPF = f.SPF
	st.SetResult("spf", spfLog{Result: string(f.SPF.Result), Domain: f.SPF.Domain, Identity: f.SPF.Identity})
}

// greylist applies a greylist verdict: the greylister says whether this
// attempt passes (the verdict becomes continue) or is deferred.
//
// A pass sets Facts.Greylist and evaluates the stage again, so that the
// rules after the greylist rule (and the reject threshold) still judge the
// recipient; the engine skips greylist rules once the state is known.
func (j *Judge) greylist(ctx context.Context, js *judgeState, st *State, ev Evaluator, out policy.Outcome) policy.Verdict {
	v := out.Verdict
	g := j.Checks.Greylist
	if j.DryRun && g != nil {
		// The allow lists are the configuration's, not the store's: a
		// client, sender or recipient they cover passes as in the
		// daemon, and rules reading greylist see what they would.
		t := greylist.Triplet{IP: st.Client.Addr(), Sender: st.From.String(), Recipient: st.Rcpt.String(), ClientName: js.facts.ClientName}
		if d, ok, err := g.StaticCheck(t); err == nil && ok {
			st.SetResult("greylist", greylistLog{Action: d.Action.String(), Reason: string(d.Reason), Network: d.Network})
			js.facts.Greylist = "pass"
			if d.Action == greylist.Allowed {
				js.facts.Greylist = "allowed"
			}
			return j.regrey(ev, js, v.Reasons, policy.Reason{Rule: "greylist", Detail: js.facts.Greylist})
		}
		// The store is not asked. A first attempt would be deferred; what
		// explain shows is the retry's fate, judged by the rules after
		// the greylist rule, as the daemon judges it.
		st.SetResult("greylist", greylistLog{Action: "not consulted (dry run)"})
		js.facts.Greylist = "pass"
		return j.regrey(ev, js, v.Reasons, policy.Reason{Rule: "greylist",
			Detail: "dry run: the store was not asked; a first attempt would be deferred, its retry is judged here as a pass"})
	}
	if g == nil {
		// Greylisting is not configured: a greylist rule cannot defer.
		v.Action = policy.ActionContinue
		return v
	}
	d, err := g.Check(ctx, greylist.Triplet{IP: st.Client.Addr(), Sender: st.From.String(), Recipient: st.Rcpt.String(), ClientName: js.facts.ClientName})
	res := greylistLog{Action: d.Action.String(), Reason: string(d.Reason), Network: d.Network, FailOpen: d.FailOpen, Cached: d.Cached}
	if err == nil {
		err = d.Err
	}
	if err != nil {
		res.Error = err.Error()
		j.Logger.Warn("greylist store failed", "err", err, "fail_open", d.FailOpen)
	}
	st.SetResult("greylist", res)
	switch d.Action {
	case greylist.Defer:
		js.facts.Greylist = "defer"
		wait := max(time.Until(d.RetryAt).Round(time.Second), time.Second)
		if v.Reply.IsZero() || out.DefaultReply {
			v.Reply = policy.Reply{Code: 451, Enhanced: "4.7.1", Text: "Greylisted, please try again in " + strconv.Itoa(int(wait.Seconds())) + " seconds"}
		}
		v.Reasons = append(v.Reasons, policy.Reason{Rule: "greylist", Detail: string(d.Reason)})
		return v
	case greylist.Allowed:
		js.facts.Greylist = "allowed"
	case greylist.AutoAllowed:
		js.facts.Greylist = "autoallowed"
	default:
		js.facts.Greylist = "pass"
		if d.FailOpen {
			js.facts.Greylist = "failopen"
		}
	}
	return j.regrey(ev, js, v.Reasons, policy.Reason{Rule: "greylist", Detail: js.facts.Greylist})
}

// regrey judges the recipient again once the greylist state is known.
// Its reasons are the second evaluation's, with first's (the rules up to
// the greylist rule) and gr in their place: the rules before the greylist
// rule match again and must not be listed twice.
func (j *Judge) regrey(ev Evaluator, js *judgeState, first []policy.Reason, gr policy.Reason) policy.Verdict {
	again := ev.Evaluate(&js.facts)
	k := 0 // the leading reasons both evaluations gave
	for k < len(first) && k < len(again.Reasons) && first[k] == again.Reasons[k] {
		k++
	}
	rs := make([]policy.Reason, 0, len(first)+1+len(again.Reasons)-k)
	rs = append(append(append(rs, first...), gr), again.Reasons[k:]...)
	again.Reasons = rs
	if again.Action == policy.ActionGreylist {
		again.Action = policy.ActionContinue // an evaluator that ignores the known state
		again.Reply = policy.Reply{}
	}
	return again.Verdict
}

// DefaultPolicy is the fixed enforcement used when no rule files are
// configured: a client listed on a block list is refused at connect with
// the zone's reason; every recipient is greylisted unless the client is on
// an allow list (DNSWL zone, or the greylist allow lists); DMARC fail with an
// applied reject is refused, an applied quarantine is marked with a header
// and relayed, a DMARC permerror (no usable author domain in From, which
// would otherwise let a spoofer past every p=reject) is refused, and a
// DMARC temperror is deferred (never a 5xx for a DNS failure). SPF alone
// only informs.
var DefaultPolicy Evaluator = defaultEvaluator{}

type defaultEvaluator struct{}

func (defaultEvaluator) Evaluate(f *policy.Facts) policy.Outcome {
	v := defaultPolicy(f.Stage, f)
	return policy.Outcome{Verdict: v, Total: f.Score + v.Score}
}

func (defaultEvaluator) Needs(stage policy.Stage) policy.NeedSet {
	switch stage {
	case policy.StageConnect:
		return policy.NeedSet{DNSBL: true}
	case policy.StageRcpt:
		return policy.NeedSet{DNSBL: true, Greylist: true}
	case policy.StageData:
		return policy.NeedSet{SPF: true, DKIM: true, DMARC: true}
	}
	return policy.NeedSet{}
}

func defaultPolicy(stage policy.Stage, f *policy.Facts) policy.Verdict {
	switch stage {
	case policy.StageConnect:
		for _, r := range f.DNSBL {
			if r.Listed && r.Type == checks.TypeBlock {
				reason := r.Reason
				if reason == "" {
					reason = "listed at " + r.Zone
				}
				return policy.Verdict{Action: policy.ActionReject,
					Reply:   policy.Reply{Code: 554, Enhanced: "5.7.1", Text: fmt.Sprintf("Service unavailable; client [%s] blocked using %s: %s", f.ClientIP, r.Zone, oneLine(reason))},
					Reasons: []policy.Reason{{Rule: "dnsbl_" + r.Zone, Score: r.Weight, Detail: strings.Join(r.Codes, ",")}}}
			}
		}
	case policy.StageRcpt:
		for _, r := range f.DNSBL {
			if r.Listed && r.Type == checks.TypeAllow {
				return policy.Verdict{Action: policy.ActionContinue, Reasons: []policy.Reason{{Rule: "dnswl_" + r.Zone, Score: r.Weight}}}
			}
		}
		return policy.Verdict{Action: policy.ActionGreylist}
	case policy.StageData:
		d := f.DMARC
		if d == nil {
			return policy.Continue
		}
		switch {
		case d.Result == checks.DMARCTempError:
			return policy.Verdict{Action: policy.ActionDefer,
				Reply:   policy.Reply{Code: 451, Enhanced: "4.7.5", Text: "DMARC policy of " + d.Domain + " could not be checked, try again later"},
				Reasons: []policy.Reason{{Rule: "dmarc_temperror"}}}
		case d.Result == checks.DMARCFail && d.Applied == "reject":
			return policy.Verdict{Action: policy.ActionReject,
				Reply:   policy.Reply{Code: 550, Enhanced: "5.7.1", Text: "Message rejected by the DMARC policy of " + d.Domain},
				Reasons: []policy.Reason{{Rule: "dmarc_reject"}}}
		case d.Result == checks.DMARCPermError:
			return policy.Verdict{Action: policy.ActionReject,
				Reply:   policy.Reply{Code: 550, Enhanced: "5.7.1", Text: "Message rejected: its From header field has no author domain that DMARC can check"},
				Reasons: []policy.Reason{{Rule: "dmarc_permerror"}}}
		case d.Result == checks.DMARCFail && d.Applied == "quarantine":
			return policy.Verdict{Action: policy.ActionContinue,
				Headers: []policy.Header{{Name: "X-Gatewayd-Quarantine", Value: "DMARC policy of " + d.Domain + " asks for quarantine"}},
				Reasons: []policy.Reason{{Rule: "dmarc_quarantine"}}}
		}
	}
	return policy.Continue
}

// oneLine makes text from outside (a TXT record, an internal MTA's reply)
// one line for a reply of ours: control characters become spaces.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 127 {
			return ' '
		}
		return r
	}, s)
}
