package checks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net"
	"net/mail"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"
)

// DMARCStatus is a DMARC result as RFC 8601 section 2.7.5 (via RFC 7489
// section 11.2) names it.
type DMARCStatus string

// DMARC results.
const (
	DMARCNone      DMARCStatus = "none"      // no policy: DMARC not applied
	DMARCPass      DMARCStatus = "pass"      // an aligned SPF or DKIM pass
	DMARCFail      DMARCStatus = "fail"      // a policy, and no aligned pass
	DMARCTempError DMARCStatus = "temperror" // the policy could not be fetched now
	// DMARCPermError: the message has no usable author domain (From), so
	// DMARC cannot protect the domain its reader is shown. RFC 7489
	// section 6.6.1 says such messages are typically rejected, and the
	// shipped rules and DefaultPolicy refuse them. It never comes from a
	// DNS answer (a failed lookup is temperror; a bad record is none), so
	// refusing it can never turn a DNS problem into a 5xx.
	DMARCPermError DMARCStatus = "permerror"
)

// DMARCResult is the outcome of the DMARC check of one message.
type DMARCResult struct {
	Result DMARCStatus `json:"result,omitempty"`
	// Domain is the author domain (RFC5322.From) evaluated; with several
	// From addresses, the one whose result was kept.
	Domain    string `json:"domain,omitempty"`
	OrgDomain string `json:"org_domain,omitempty"` // its organizational domain (public suffix list)
	// RecordDomain is where the policy record was found ("" if none):
	// Domain, or OrgDomain when inherited.
	RecordDomain string `json:"record_domain,omitempty"`
	Record       string `json:"record,omitempty"` // the record as published
	// Policy is the published policy that applies to Domain: p=, or sp=
	// when inherited from the organizational domain for a subdomain.
	Policy string `json:"policy,omitempty"`
	// Applied is what the policy asks for this message after pct
	// sampling: "none", "quarantine" or "reject" for a fail; "" when the
	// result is not fail (DMARC asks nothing).
	Applied string `json:"applied,omitempty"`
	Pct     int    `json:"pct,omitempty"`     // pct= (100 when absent)
	Sampled bool   `json:"sampled,omitempty"` // the message fell within pct
	// SPFAlignment and DKIMAlignment are "relaxed" or "strict" (aspf=,
	// adkim=).
	SPFAlignment      string `json:"spf_alignment,omitempty"`
	DKIMAlignment     string `json:"dkim_alignment,omitempty"`
	SPFAligned        bool   `json:"spf_aligned,omitempty"`         // SPF passed for an aligned domain
	DKIMAligned       bool   `json:"dkim_aligned,omitempty"`        // a DKIM signature passed for an aligned d=
	AlignedDKIMDomain string `json:"aligned_dkim_domain,omitempty"` // the d= of that signature
	// FromAddresses is how many addresses the From header fields held in
	// all; more than one is allowed by RFC 5322 but rare, and often abuse.
	FromAddresses int    `json:"from_addresses,omitempty"`
	Reason        string `json:"reason,omitempty"` // why the result is what it is, when not plain
}

// DMARCInput is what the DMARC check looks at.
type DMARCInput struct {
	// Header is the raw header block of the message (CRLF lines, folded
	// fields as received); the author domain is taken from its From
	// fields.
	Header []byte
	SPF    SPFResult
	DKIM   DKIMResult
}

// DMARC applies DMARC (RFC 7489) to a message, given its SPF and DKIM
// results.
//
// go-msgauth/dmarc parses the record; the rest is ours because the library
// only fetches "_dmarc.<domain>" (and takes the first record it can parse,
// where RFC 7489 section 6.6.3 wants "more than one record means no
// policy"): organizational-domain fallback, alignment, p/sp selection,
// pct sampling and the author-domain rules. Its parser is also stricter
// than RFC 7489 section 6.3 (an invalid optional tag fails the whole
// record; tag values are case-sensitive), so records are cleaned first
// (cleanDMARCRecord).
//
// We implement RFC 7489, the published standard, deliberately. RFC 9989
// (DMARCbis) differs where noted:
//   - the organizational domain comes from a DNS tree walk, not the public
//     suffix list (here: publicsuffix.EffectiveTLDPlusOne);
//   - pct= is removed and t=y (testing) takes its place: here pct= applies,
//     with "reject" sampled out becoming "quarantine" and "quarantine"
//     becoming "none" (RFC 7489 section 6.6.4), and t= is ignored;
//   - np= (policy for non-existent subdomains) and psd= are new: here they
//     are ignored, sp= (or p=) applies to every subdomain.
//
// Several From addresses: RFC 7489 section 6.6.1 says to check each author
// domain and apply the strictest policy among those that fail. We do so:
// the combined result is the worst (fail with reject > temperror > fail
// with quarantine > fail with none > permerror > none > pass; see
// dmarcSeverity), and FromAddresses tells the policy there were several, so it can
// also reject such a message outright. A message without a From field, or
// whose From holds no parsable address or a domain that is not a valid
// domain name, or more than MaxAuthorDomains author domains, is permerror.
type DMARC struct {
	res     *Resolver
	timeout time.Duration
	sample  func(pct int) bool
	records textCache[parsedDMARC] // records parsed, by their text
}

// parsedDMARC is what parseDMARCRecord makes of a record's text. The
// record is shared by every message that gets it: read only.
type parsedDMARC struct {
	rec  *dmarc.Record
	note string
	err  error
}

// DMARCOption changes how NewDMARC builds the check.
type DMARCOption func(*DMARC)

// WithSampler replaces the pct sampling: sample(pct) reports whether a
// failing message is subject to the policy (it is called only for pct
// strictly between 0 and 100). Tests inject a deterministic one.
func WithSampler(sample func(pct int) bool) DMARCOption {
	return func(d *DMARC) { d.sample = sample }
}

// NewDMARC returns the DMARC check (cfg defaults applied).
func NewDMARC(cfg DMARCConfig, res *Resolver, opts ...DMARCOption) *DMARC {
	cfg.setDefaults()
	d := &DMARC{res: res, timeout: cfg.Timeout,
		sample: func(pct int) bool { return rand.IntN(100) < pct }}
	for _, o := range opts {
		o(d)
	}
	return d
}

// Check evaluates DMARC for the message.
func (d *DMARC) Check(ctx context.Context, in DMARCInput) DMARCResult {
	domains, n, err := FromDomains(in.Header)
	if err != nil {
		return DMARCResult{Result: DMARCPermError, FromAddresses: n, Reason: err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	var worst DMARCResult
	for i, dom := range domains {
		r := d.checkDomain(ctx, dom, in)
		if i == 0 || dmarcSeverity(r) > dmarcSeverity(worst) {
			worst = r
		}
	}
	worst.FromAddresses = n
	if n > 1 {
		reason := fmt.Sprintf("%d From addresses: each author domain checked, the strictest result kept", n)
		if worst.Reason != "" {
			reason += "; " + worst.Reason
		}
		worst.Reason = reason
	}
	return worst
}

// dmarcSeverity orders results for several author domains, by what the
// policy does with them: a reject refuses; a temperror defers, which must
// not give way to a quarantine or to a fail that asks nothing (p=none),
// or listing a second, p=none domain in From would get a message past a
// domain that could not be checked; then the rest.
func dmarcSeverity(r DMARCResult) int {
	switch r.Result {
	case DMARCFail:
		return map[string]int{"none": 50, "quarantine": 60, "reject": 80}[r.Applied]
	case DMARCTempError:
		return 70
	case DMARCPermError:
		return 30
	case DMARCNone:
		return 20
	}
	return 10
}

// checkDomain evaluates one author domain.
func (d *DMARC) checkDomain(ctx context.Context, from string, in DMARCInput) DMARCResult {
	r := DMARCResult{Domain: from, OrgDomain: orgDomain(from)}

	// Policy discovery, RFC 7489 section 6.6.3.
	recs, err := d.fetch(ctx, from)
	recDomain := from
	if err == nil && len(recs) == 0 && r.OrgDomain != from {
		recs, err = d.fetch(ctx, r.OrgDomain)
		recDomain = r.OrgDomain
	}
	switch {
	case err != nil:
		r.Result, r.Reason = DMARCTempError, err.Error()
		return r
	case len(recs) == 0:
		r.Result, r.Reason = DMARCNone, "no DMARC record"
		return r
	case len(recs) > 1:
		r.Result = DMARCNone
		r.Reason = fmt.Sprintf("%d DMARC records at _dmarc.%s: no policy (RFC 7489 section 6.6.3)", len(recs), recDomain)
		return r
	}
	p := d.records.get(recs[0], func(txt string) parsedDMARC {
		rec, note, err := parseDMARCRecord(txt)
		return parsedDMARC{rec, note, err}
	})
	rec, note, err := p.rec, p.note, p.err
	if err != nil {
		r.Result, r.Reason = DMARCNone, err.Error()
		return r
	}
	r.RecordDomain, r.Record, r.Reason = recDomain, recs[0], note

	r.Policy = string(rec.Policy)
	if recDomain != from && rec.SubdomainPolicy != "" {
		r.Policy = string(rec.SubdomainPolicy)
	}
	r.Pct = 100
	if rec.Percent != nil {
		r.Pct = *rec.Percent
	}
	r.SPFAlignment, r.DKIMAlignment = alignmentName(rec.SPFAlignment), alignmentName(rec.DKIMAlignment)

	// Identifier alignment, RFC 7489 section 3.1. Only a pass counts for a
	// pass (a temperror may keep a fail from being final, below).
	if in.SPF.Result == SPFPass && aligned(in.SPF.Domain, from, r.OrgDomain, rec.SPFAlignment) {
		r.SPFAligned = true
	}
	for _, s := range in.DKIM.Signatures {
		if s.Result == DKIMPass && aligned(s.Domain, from, r.OrgDomain, rec.DKIMAlignment) {
			r.DKIMAligned, r.AlignedDKIMDomain = true, s.Domain
			break
		}
	}
	if r.SPFAligned || r.DKIMAligned {
		r.Result = DMARCPass
		return r
	}
	r.Result = DMARCFail

	// Sampling, RFC 7489 section 6.6.4.
	switch {
	case r.Pct >= 100:
		r.Sampled = true
	case r.Pct <= 0:
		r.Sampled = false
	default:
		r.Sampled = d.sample(r.Pct)
	}
	r.Applied = r.Policy
	if !r.Sampled {
		switch r.Policy {
		case string(dmarc.PolicyReject):
			r.Applied = string(dmarc.PolicyQuarantine)
		case string(dmarc.PolicyQuarantine):
			r.Applied = string(dmarc.PolicyNone)
		}
	}

	// An aligned identity whose check failed for now (SPF temperror, a
	// DKIM key lookup temperror) might have passed: a fail would turn the
	// sender's passing DNS trouble into a permanent refusal (p=reject,
	// 550) or a quarantine. Then DMARC cannot be decided now: temperror,
	// which the policy defers. When the policy asks nothing (p=none, or
	// sampled down to none) the fail stands, with the reason: deferring
	// would only delay mail that is delivered either way.
	if why := alignedTempError(in, from, r.OrgDomain, rec); why != "" {
		if r.Applied == string(dmarc.PolicyNone) {
			r.Reason = joinReason(r.Reason, why+"; the policy asks nothing, so the fail stands")
			return r
		}
		r.Result, r.Applied, r.Sampled = DMARCTempError, "", false
		r.Reason = joinReason(r.Reason, why+": DMARC cannot be decided now")
	}
	return r
}

// alignedTempError says which aligned SPF or DKIM identity of the message
// could not be checked for now, or "" when none.
func alignedTempError(in DMARCInput, from, fromOrg string, rec *dmarc.Record) string {
	if in.SPF.Result == SPFTempError && aligned(in.SPF.Domain, from, fromOrg, rec.SPFAlignment) {
		return "SPF temperror for aligned " + in.SPF.Domain
	}
	for _, s := range in.DKIM.Signatures {
		if s.Result == DKIMTempError && aligned(s.Domain, from, fromOrg, rec.DKIMAlignment) {
			return "DKIM temperror for aligned d=" + s.Domain
		}
	}
	return ""
}

// joinReason appends more to a result's reason.
func joinReason(reason, more string) string {
	if reason == "" {
		return more
	}
	return reason + "; " + more
}

// fetch returns the DMARC records (those starting with v=DMARC1) at
// _dmarc.<domain>; none for NXDOMAIN and NODATA.
func (d *DMARC) fetch(ctx context.Context, domain string) ([]string, error) {
	txts, err := d.res.LookupTXT(ctx, "_dmarc."+domain)
	if err != nil {
		if de, ok := err.(*net.DNSError); ok && de.IsNotFound {
			return nil, nil
		}
		return nil, fmt.Errorf("dmarc: %w", err)
	}
	var recs []string
	for _, t := range txts {
		if isDMARCRecord(t) {
			recs = append(recs, t)
		}
	}
	return recs, nil
}

// isDMARCRecord reports whether a TXT record starts as a DMARC record does
// (RFC 7489 section 6.4: "v" *WSP "=" *WSP "DMARC1", the version is
// case-sensitive), followed by optional white space and ";" or the end:
// the regular expression ^[ \t]*v[ \t]*=[ \t]*DMARC1[ \t]*(;|$).
func isDMARCRecord(t string) bool {
	wsp := func() {
		for len(t) > 0 && (t[0] == ' ' || t[0] == '\t') {
			t = t[1:]
		}
	}
	for _, tok := range []string{"v", "=", "DMARC1"} {
		wsp()
		if !strings.HasPrefix(t, tok) {
			return false
		}
		t = t[len(tok):]
	}
	wsp()
	return t == "" || t[0] == ';'
}

func alignmentName(m dmarc.AlignmentMode) string {
	if m == dmarc.AlignmentStrict {
		return "strict"
	}
	return "relaxed"
}

// aligned compares an authenticated domain with the author domain (RFC 7489
// section 3.1): equal in strict mode, same organizational domain in
// relaxed mode. from is an A-label name (FromDomains) and fromOrg is
// orgDomain(from); an authenticated domain written with U-labels (a DKIM
// d= of an internationalised signer) is compared as its A-labels.
func aligned(authDomain, from, fromOrg string, mode dmarc.AlignmentMode) bool {
	a := strings.ToLower(strings.TrimSuffix(authDomain, "."))
	if !isASCII(a) {
		var err error
		if a, err = idna.Lookup.ToASCII(a); err != nil {
			return false
		}
	}
	if a == "" {
		return false
	}
	if mode == dmarc.AlignmentStrict || a == from {
		return a == from
	}
	return orgDomain(a) == fromOrg
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// orgDomain returns the organizational domain of d (RFC 7489 section
// 3.2): the public suffix plus one label; d itself when d is a public
// suffix or not a valid name.
func orgDomain(d string) string {
	o, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		return d
	}
	return o
}

// parseDMARCRecord cleans and parses one record. It returns a note when
// the record needed cleaning, and an error when the record must be
// treated as nonexistent (RFC 7489 section 6.6.3 step 6).
func parseDMARCRecord(txt string) (*dmarc.Record, string, error) {
	clean, note, err := cleanDMARCRecord(txt)
	if err != nil {
		return nil, "", err
	}
	rec, err := dmarc.Parse(clean)
	if err != nil {
		// cleanDMARCRecord only keeps what dmarc.Parse accepts.
		return nil, "", fmt.Errorf("dmarc: %w", err)
	}
	return rec, note, nil
}

// cleanDMARCRecord rewrites a DMARC record so go-msgauth's strict parser
// accepts what RFC 7489 section 6.3 asks us to accept: tag values of
// policies, alignment modes, fo= and rf= are case-insensitive (RFC 5234
// strings); a term without "=" or an invalid optional tag is ignored
// ("syntax errors in the remainder of the record SHOULD be discarded");
// unknown tags are ignored. A record without a valid p= (or with an
// invalid sp=) is read as p=none if it has a valid rua=, and is otherwise
// an error: treated as nonexistent (section 6.6.3 step 6).
func cleanDMARCRecord(txt string) (string, string, error) {
	type tag struct{ k, v string }
	var tags []tag
	var dropped []string
	seen := map[string]bool{}
	for i, part := range strings.Split(txt, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if i == 0 {
			if !ok || k != "v" || v != "DMARC1" {
				return "", "", errors.New("dmarc: record does not start with v=DMARC1")
			}
			continue
		}
		if !ok || k == "" {
			dropped = append(dropped, fmt.Sprintf("%q", part))
			continue
		}
		if seen[k] {
			dropped = append(dropped, fmt.Sprintf("repeated %s=", k))
			continue
		}
		seen[k] = true
		switch k {
		case "p", "sp", "adkim", "aspf", "fo", "rf":
			v = strings.ToLower(v)
		}
		tags = append(tags, tag{k, v})
	}
	get := func(k string) (string, bool) {
		for _, t := range tags {
			if t.k == k {
				return t.v, true
			}
		}
		return "", false
	}
	validPolicy := func(v string) bool { return v == "none" || v == "quarantine" || v == "reject" }

	p, hasP := get("p")
	sp, hasSP := get("sp")
	var out strings.Builder
	out.WriteString("v=DMARC1")
	if !hasP || !validPolicy(p) || (hasSP && !validPolicy(sp)) {
		rua, _ := get("rua")
		if !hasValidURI(rua) {
			return "", "", errors.New("dmarc: record has no valid p= (or an invalid sp=) and no rua=: treated as nonexistent")
		}
		out.WriteString("; p=none")
		dropped = append(dropped, "p= and sp= read as p=none (RFC 7489 section 6.6.3)")
		hasSP = false
	} else {
		out.WriteString("; p=" + p)
	}
	for _, t := range tags {
		switch t.k {
		case "p":
			continue
		case "sp":
			if !hasSP {
				continue
			}
		case "adkim", "aspf", "fo", "pct", "rf", "ri":
			if _, err := dmarc.Parse("v=DMARC1; p=none; " + t.k + "=" + t.v); err != nil {
				dropped = append(dropped, fmt.Sprintf("invalid %s=%s ignored", t.k, t.v))
				continue
			}
		case "rua", "ruf":
		default:
			// Unknown tags (t=, np=, psd= of RFC 9989, ...) are ignored.
			continue
		}
		out.WriteString("; " + t.k + "=" + t.v)
	}
	note := ""
	if len(dropped) > 0 {
		note = "record cleaned: " + strings.Join(dropped, ", ")
	}
	return out.String(), note, nil
}

// hasValidURI reports whether a rua= list holds at least one URI with a
// scheme.
func hasValidURI(list string) bool {
	for u := range strings.SplitSeq(list, ",") {
		u = strings.TrimSpace(u)
		if i := strings.LastIndexByte(u, '!'); i > 0 {
			u = u[:i] // size limit, RFC 7489 section 6.2
		}
		if pu, err := url.Parse(u); err == nil && pu.Scheme != "" && (pu.Opaque != "" || pu.Host != "") {
			return true
		}
	}
	return false
}

// MaxAuthorDomains bounds the distinct author domains DMARC checks for one
// message. Each costs up to two DNS lookups, in sequence; a From listing
// 500 domains cost 1000 queries. Mail with more than a handful of author
// domains is not seen in practice, so beyond the bound the message has no
// usable author domain (permerror, refused by the rules) rather than a
// partly checked one: checking only the first few would let a spoofed
// domain hide behind them. Like dkim.max_signatures' default, 5; not a
// setting, as the bound protects the gateway rather than tuning a policy.
const MaxAuthorDomains = 5

// FromDomains returns the distinct author domains of a header block (the
// domains of the addresses of its From fields, as lower-case A-labels)
// and how many addresses there were in all. It fails when there is no
// From field, or a From field holds no address or cannot be parsed, or a
// domain is not a valid (internationalised) domain name, or there are
// more than MaxAuthorDomains domains (the count then stops where reading
// did): those messages have no usable author domain (RFC 7489 section
// 6.6.1).
//
// A-labels because the policy is published and looked up under them, and
// the SPF and DKIM domains it is aligned with are A-labels too (RFC 8616
// section 4): "ceo@bücher.example" must find _dmarc.xn--bcher-kva.example
// and align with d=xn--bcher-kva.example. Compared as written, an
// internationalised From escaped its domain's policy.
//
// The From fields are found as HeaderFields finds fields, as the DKIM
// verifier and the rules' header() do: a line that is not a field (no
// colon, a control character, a bad name) is skipped, not the end of the
// header, and the name is matched without the white space before its
// colon ("From :", RFC 5322 section 4.5.3). net/textproto, used before,
// stopped at the first line it refused and did not see "From :": a From
// field hidden behind such a line went unchecked while a reader of the
// message may show it, and a p=reject domain could be spoofed that way.
//
// Every From field counts, and every address in each: RFC 5322 allows one
// From field, but a second one, visible or not, gets its author domains
// checked like the first (DMARC.Check keeps the strictest result).
func FromDomains(header []byte) ([]string, int, error) {
	var domains []string
	n, fields := 0, 0
	for raw := range rawFields(header) {
		colon := bytes.IndexByte(raw, ':')
		if colon <= 0 || raw[0] == ' ' || raw[0] == '\t' ||
			!bytes.EqualFold(bytes.TrimRight(raw[:colon], " \t"), []byte("From")) {
			continue
		}
		fields++
		v := strings.TrimSpace(unfold(raw[colon+1:]))
		// Raw 8-bit text in a display name that is not UTF-8 (Latin-1
		// from old software) would fail the parse the same way: such
		// bytes become U+FFFD, harmless in a name or a local part and
		// never valid in a domain.
		addrs, err := fromParser.ParseList(strings.ToValidUTF8(v, "\uFFFD"))
		var fdoms []string
		if err == nil {
			fdoms, err = addrDomains(addrs)
		}
		if err != nil {
			// Not RFC 5322, but common from broken software: "Smith,
			// John <j@example.com>" (an unquoted comma), an address in
			// quotes ("<'j@example.com'>", which parses with a quote in
			// its domain). Every domain after an "@" in the field is an
			// author domain: a reader may be shown any of them, so each
			// is checked and the strictest result decides, which no
			// spoofed domain escapes.
			addrs = looseAddresses(v)
			if addrs == nil {
				return nil, n, fmt.Errorf("dmarc: From header field %s: %w", shortQuote(v), err)
			}
			if fdoms, err = addrDomains(addrs); err != nil {
				return nil, n, err
			}
		}
		n += len(addrs)
		for _, dom := range fdoms {
			if !slices.Contains(domains, dom) {
				if len(domains) == MaxAuthorDomains {
					return nil, n, fmt.Errorf("dmarc: more than %d author domains in From: not checked", MaxAuthorDomains)
				}
				domains = append(domains, dom)
			}
		}
	}
	if fields == 0 {
		return nil, 0, errors.New("dmarc: no From header field")
	}
	return domains, n, nil
}

// addrDomains returns the domains of addrs as A-labels, or an error
// naming the first address that has none.
func addrDomains(addrs []*mail.Address) ([]string, error) {
	if len(addrs) == 0 {
		return nil, errors.New("dmarc: no address in From header field")
	}
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		at := strings.LastIndexByte(a.Address, '@')
		if at < 0 || at == len(a.Address)-1 {
			return nil, fmt.Errorf("dmarc: From address %s has no domain", shortQuote(a.Address))
		}
		// A trailing dot (an absolute name) names the same domain.
		dom, err := asciiDomain(strings.TrimSuffix(a.Address[at+1:], "."))
		if err != nil {
			return nil, fmt.Errorf("dmarc: From address %s: %w", shortQuote(a.Address), err)
		}
		out = append(out, dom)
	}
	return out, nil
}

// looseAddresses reads a From field value that does not parse: one
// address for each "@", its domain the run of octets that can be part of
// a domain name after it, trailing dots cut. Comments are dropped and
// white space around "@" and "." closed up first, as RFC 5322's obsolete
// syntax reads "ceo@(x)paypal .com": paypal.com, the name a reader may be
// shown, must be the one checked. Only the domains matter to DMARC. nil
// when there is no "@", or one with no domain after it: nothing to check
// for it, and a spoofer must not be able to hide a domain that way.
//
// The field is also read as it stands, comments kept, and the domains of
// both readings are checked: a "(" in a quoted display name, or one that
// is not a comment to some reader, must not hide an address.
func looseAddresses(v string) []*mail.Address {
	out, ok := atDomains(closeUp(dropComments(v)), nil, true)
	if !ok {
		return nil
	}
	out, _ = atDomains(closeUp(v), out, false)
	return out
}

// atDomains appends to out an address for each "@" of v followed by a
// domain. strict: false when an "@" has no domain after it. Otherwise
// (the second reading) a domain already in out, or one a comment cuts,
// is not added again.
func atDomains(v string, out []*mail.Address, strict bool) ([]*mail.Address, bool) {
	for i := 0; i < len(v); i++ {
		if v[i] != '@' {
			continue
		}
		j := i + 1
		for j < len(v) && domainOctet(v[j]) {
			j++
		}
		d := strings.TrimRight(v[i+1:j], ".")
		i = j - 1
		switch {
		case d == "" && strict:
			return nil, false
		case strict:
			out = append(out, &mail.Address{Address: "@" + d})
		case d == "" || j < len(v) && v[j] == '(':
			// Nothing, or a domain a comment continues: the reading
			// without comments has it whole.
		case !slices.ContainsFunc(out, func(a *mail.Address) bool { return a.Address == "@"+d }):
			out = append(out, &mail.Address{Address: "@" + d})
		}
	}
	return out, true
}

// domainOctet reports whether c can be part of a domain name as written
// in a From field: letters, digits, "-", ".", "_", and the octets of
// UTF-8 (an internationalised name).
func domainOctet(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c >= 0x80
}

// dropComments removes RFC 5322 comments, nested, with their quoted
// pairs ("\)"), and replaces each with a space; an unclosed one runs to
// the end. A "(" inside a quoted string starts no comment.
func dropComments(v string) string {
	if strings.IndexByte(v, '(') < 0 {
		return v
	}
	var b strings.Builder
	depth := 0
	quoted := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case depth == 0 && quoted:
			b.WriteByte(c)
			if c == '\\' && i+1 < len(v) {
				i++
				b.WriteByte(v[i])
			} else if c == '"' {
				quoted = false
			}
		case depth == 0 && c == '"':
			quoted = true
			b.WriteByte(c)
		case depth > 0 && c == '\\':
			i++
		case c == '(':
			depth++
		case depth > 0 && c == ')':
			depth--
			if depth == 0 {
				b.WriteByte(' ')
			}
		case depth == 0:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// closeUp removes white space (folding included) next to "@" and ".".
func closeUp(v string) string {
	ws := func(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if ws(c) {
			j := i
			for j < len(v) && ws(v[j]) {
				j++
			}
			prev := b.Len() > 0 && (b.String()[b.Len()-1] == '@' || b.String()[b.Len()-1] == '.')
			next := j < len(v) && (v[j] == '@' || v[j] == '.')
			if !prev && !next {
				b.WriteByte(' ')
			}
			i = j - 1
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// asciiDomain returns d as a lower-case A-label domain name (UTS #46
// lookup processing, which also maps case and width), or an error when it
// is not a domain name: an IDNA error, an empty label, a label over 63
// octets or a name over 253 (an address literal fails here too: it names
// no domain to hold a policy).
func asciiDomain(d string) (string, error) {
	a := lowerDNSName(d)
	if !LDHName(a) {
		// Not a plain letters-digits-hyphen name (or one with an
		// A-label, whose punycode must be checked): UTS #46. Lookup
		// would also refuse plain names it need not, "ab--cd" among
		// them.
		var err error
		if a, err = idna.Lookup.ToASCII(d); err != nil {
			return "", fmt.Errorf("domain %s: %w", shortQuote(d), err)
		}
	}
	if len(a) > 253 {
		return "", fmt.Errorf("domain %s: longer than 253 octets", shortQuote(d))
	}
	for l := range strings.SplitSeq(a, ".") {
		if l == "" || len(l) > 63 {
			return "", fmt.Errorf("domain %s: empty label or label longer than 63 octets", shortQuote(d))
		}
	}
	return a, nil
}

// LDHName reports whether d (lower case) is letters, digits, hyphens and
// dots only, with no label beginning or ending with a hyphen and none an
// A-label ("xn--"): a host name that needs no IDNA processing. (UTS #46
// Lookup refuses some such names it need not, "ab--cd" among them.)
func LDHName(d string) bool {
	if d == "" {
		return false
	}
	for l := range strings.SplitSeq(d, ".") {
		if l == "" || l[0] == '-' || l[len(l)-1] == '-' || strings.HasPrefix(l, "xn--") {
			return false
		}
		for i := 0; i < len(l); i++ {
			if c := l[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// fromParser reads From fields. Only the addresses matter to DMARC, not
// the display names, so an encoded word in a charset the standard library
// does not know (=?windows-1252?...?=, common in legitimate mail) is
// passed through undecoded instead of failing the whole field, which made
// DMARC permerror: such a message escaped its domain's p=reject.
var fromParser = mail.AddressParser{WordDecoder: &mime.WordDecoder{
	CharsetReader: func(_ string, r io.Reader) (io.Reader, error) { return r, nil },
}}

// shortQuote quotes s for an error message, cut to its first 64 bytes: a
// From field can be as long as the header, and the error becomes the
// result's reason, logged and written into Authentication-Results.
func shortQuote(s string) string {
	const max = 64
	if len(s) <= max {
		return strconv.Quote(s)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "..."
}
