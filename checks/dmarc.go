package checks

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/mail"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dmarc"
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
	DMARCPermError DMARCStatus = "permerror" // no usable author domain (From)
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
// the combined result is the worst (fail > temperror > permerror > none >
// pass), and FromAddresses tells the policy there were several, so it can
// also reject such a message outright. A message without a From field, or
// whose From holds no parsable address, is permerror.
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

// dmarcSeverity orders results for several author domains.
func dmarcSeverity(r DMARCResult) int {
	switch r.Result {
	case DMARCFail:
		return 50 + map[string]int{"none": 0, "quarantine": 1, "reject": 2}[r.Applied]
	case DMARCTempError:
		return 40
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

	// Identifier alignment, RFC 7489 section 3.1. Only a pass counts.
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
	return r
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
// relaxed mode. fromOrg is orgDomain(from).
func aligned(authDomain, from, fromOrg string, mode dmarc.AlignmentMode) bool {
	a := strings.ToLower(strings.TrimSuffix(authDomain, "."))
	if a == "" {
		return false
	}
	if mode == dmarc.AlignmentStrict || a == from {
		return a == from
	}
	return orgDomain(a) == fromOrg
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

// FromDomains returns the distinct author domains of a header block (the
// domains of the addresses of its From fields, lower case) and how many
// addresses there were in all. It fails when there is no From field, or
// a From field holds no address or cannot be parsed: those messages have
// no usable author domain (RFC 7489 section 6.6.1).
//
// The From fields are those net/textproto's ReadMIMEHeader gives under
// "From", read up to the first line it cannot parse. fromFieldValues
// finds them in the raw bytes for a header it would read to its end (the
// common case, without its reader and map); any other header goes through
// ReadMIMEHeader itself (fromValuesMIME), for the same partial fields and
// errors.
func FromDomains(header []byte) ([]string, int, error) {
	var buf [2]string
	froms, ok := fromFieldValues(header, buf[:0])
	if !ok {
		var err error
		if froms, err = fromValuesMIME(header); err != nil {
			return nil, 0, err
		}
	}
	return domainsOfFroms(froms)
}

// domainsOfFroms returns the distinct domains of the addresses in the From
// values, and how many addresses there are.
func domainsOfFroms(froms []string) ([]string, int, error) {
	if len(froms) == 0 {
		return nil, 0, errors.New("dmarc: no From header field")
	}
	var domains []string
	n := 0
	for _, f := range froms {
		addrs, err := mail.ParseAddressList(f)
		if err != nil {
			return nil, n, fmt.Errorf("dmarc: From header field %q: %w", f, err)
		}
		if len(addrs) == 0 {
			return nil, n, errors.New("dmarc: no address in From")
		}
		for _, a := range addrs {
			n++
			at := strings.LastIndexByte(a.Address, '@')
			dom := strings.ToLower(strings.TrimSuffix(a.Address[at+1:], "."))
			if at < 0 || dom == "" {
				return nil, n, fmt.Errorf("dmarc: From address %q has no domain", a.Address)
			}
			if !slices.Contains(domains, dom) {
				domains = append(domains, dom)
			}
		}
	}
	return domains, n, nil
}

// fromValuesMIME returns the From values of a header block read with
// net/textproto's ReadMIMEHeader, the block first ended with an empty line
// if it lacks one. A block it stops reading at a malformed line gives the
// fields before that line; an error only when there are none.
func fromValuesMIME(header []byte) ([]string, error) {
	h := header
	if !bytes.HasSuffix(h, []byte("\r\n\r\n")) && !bytes.HasSuffix(h, []byte("\n\n")) {
		t := bytes.TrimRight(h, "\r\n")
		// A full slice expression: append must not write into header.
		h = append(t[:len(t):len(t)], "\r\n\r\n"...)
	}
	mh, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(h))).ReadMIMEHeader()
	if err != nil && len(mh) == 0 {
		return nil, fmt.Errorf("dmarc: unparsable header: %w", err)
	}
	return mh.Values("From"), nil
}

// fromFieldValues appends to dst the values of the From fields of a header
// block exactly as fromValuesMIME would return them, and reports true,
// when ReadMIMEHeader would read the block to its end without an error;
// otherwise it reports false and the caller must use fromValuesMIME.
//
// What it reproduces of ReadMIMEHeader: the block ends at its first empty
// line (or at its end, trailing CRs and LFs dropped); lines end at LF, a
// CR before the LF dropped; a line starting with SP or HTAB continues the
// field, joined with one space, each line trimmed of SP and HTAB at both
// ends and the value of them at its start; the name is what precedes the
// first colon of the field's first line and is "From" when it is "from"
// in any ASCII case. ReadMIMEHeader stops with an error at a first line
// starting with SP or HTAB, a field line without a colon, an empty name
// or one with a byte outside token characters and SP, and a value with a
// control character (other than HTAB) or DEL: at those this returns false.
func fromFieldValues(header []byte, dst []string) ([]string, bool) {
	h := header
	if !bytes.HasSuffix(h, []byte("\r\n\r\n")) && !bytes.HasSuffix(h, []byte("\n\n")) {
		// Read as if followed by CRLF CRLF.
		h = bytes.TrimRight(h, "\r\n")
	}
	if len(h) > 0 && (h[0] == ' ' || h[0] == '\t') {
		return nil, false
	}
	// nextLine returns the next line without its line ending; ok is false
	// at the end of h, which stands for the empty line that ends it.
	nextLine := func() (line []byte, ok bool) {
		if len(h) == 0 {
			return nil, false
		}
		if i := bytes.IndexByte(h, '\n'); i >= 0 {
			line, h = h[:i], h[i+1:]
			return bytes.TrimSuffix(line, []byte("\r")), true
		}
		line, h = h, nil
		return line, true
	}
	line, ok := nextLine()
	for ok && len(line) > 0 {
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return nil, false
		}
		name := line[:colon]
		for _, c := range name {
			if !validFieldNameByte(c) && c != ' ' {
				return nil, false
			}
		}
		isFrom := len(name) == 4 && name[0]|0x20 == 'f' && name[1]|0x20 == 'r' &&
			name[2]|0x20 == 'o' && name[3]|0x20 == 'm'
		first := trimRightSPHT(line[colon+1:]) // the line starts with no SP or HTAB
		if !validFieldValue(first) {
			return nil, false
		}
		var folded []byte // the value with its continuation lines, if any
		for line, ok = nextLine(); ok && len(line) > 0 && (line[0] == ' ' || line[0] == '\t'); line, ok = nextLine() {
			if !validFieldValue(line) {
				return nil, false
			}
			if isFrom {
				if folded == nil {
					folded = append(folded, first...)
				}
				folded = append(append(folded, ' '), trimSPHT(line)...)
			}
		}
		if isFrom {
			if folded != nil {
				dst = append(dst, string(trimLeftSPHT(folded)))
			} else {
				dst = append(dst, string(trimLeftSPHT(first)))
			}
		}
	}
	return dst, true
}

// trimSPHT trims SP and HTAB from both ends of b.
func trimSPHT(b []byte) []byte {
	return trimLeftSPHT(trimRightSPHT(b))
}

// trimRightSPHT trims SP and HTAB from the end of b.
func trimRightSPHT(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// trimLeftSPHT trims SP and HTAB from the start of b.
func trimLeftSPHT(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}

// validFieldValue reports whether every byte of b may be in a field value
// for net/textproto: HTAB, SP, visible ASCII and any byte from 0x80.
//
// It looks at eight bytes at a time, and at each byte only of a word
// that holds a byte below SP or a DEL (the tests are exact: a borrow
// only starts at such a byte).
func validFieldValue(b []byte) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for len(b) >= 8 {
		x := binary.LittleEndian.Uint64(b)
		del := x ^ 0x7f*ones
		if ((x-' '*ones)&^x|(del-ones)&^del)&highs != 0 && !validValueBytes(b[:8]) {
			return false
		}
		b = b[8:]
	}
	return validValueBytes(b)
}

func validValueBytes(b []byte) bool {
	for _, c := range b {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// validFieldNameByte reports whether c is a token character (RFC 9110
// section 5.6.2), as net/textproto accepts in a field name.
func validFieldNameByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
