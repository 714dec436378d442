package checks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"blitiri.com.ar/go/spf"
)

// SPFStatus is an SPF result as RFC 7208 section 2.6 names it.
type SPFStatus string

// SPF results (RFC 7208 section 2.6).
const (
	SPFNone      SPFStatus = "none"
	SPFNeutral   SPFStatus = "neutral"
	SPFPass      SPFStatus = "pass"
	SPFFail      SPFStatus = "fail"
	SPFSoftFail  SPFStatus = "softfail"
	SPFTempError SPFStatus = "temperror"
	SPFPermError SPFStatus = "permerror"
)

// SPF identities (RFC 7208 section 2.3, 2.4).
const (
	IdentityMailFrom = "mailfrom"
	IdentityHelo     = "helo"
)

// SPFResult is the outcome of one check_host() evaluation.
type SPFResult struct {
	Result   SPFStatus  `json:"result,omitempty"`
	Domain   string     `json:"domain,omitempty"`   // the domain whose policy was evaluated
	Identity string     `json:"identity,omitempty"` // IdentityMailFrom, or IdentityHelo for a null reverse-path
	Sender   string     `json:"sender,omitempty"`   // the <sender> of check_host(): MAIL FROM, or postmaster@<helo>
	Helo     string     `json:"helo,omitempty"`     // the HELO/EHLO name as given
	IP       netip.Addr `json:"ip,omitempty"`       // the client IP
	// Mechanism tells what matched ("matched ip", "matched all", ...), when
	// the library says.
	Mechanism string `json:"mechanism,omitempty"`
	// Err is the error behind temperror, permerror and none.
	Err string `json:"err,omitempty"`
}

// SPF checks the client IP against the SPF policy of the MAIL FROM domain,
// or of the HELO name when the reverse-path is null (RFC 7208 section 2.4),
// with blitiri.com.ar/go/spf asking through our Resolver. The library
// enforces the limits of RFC 7208 section 4.6.4: 10 DNS-querying terms and
// 2 void lookups.
type SPF struct {
	res     *Resolver
	timeout time.Duration
}

// NewSPF returns the SPF check (cfg defaults applied).
func NewSPF(cfg SPFConfig, res *Resolver) *SPF {
	cfg.setDefaults()
	return &SPF{res: res, timeout: cfg.Timeout}
}

// Check evaluates SPF for a client at ip that said HELO helo and MAIL
// FROM:<mailFrom> (mailFrom "" for the null reverse-path).
func (s *SPF) Check(ctx context.Context, ip netip.Addr, helo, mailFrom string) SPFResult {
	r := spfSubject(ip, helo, mailFrom)
	at := strings.LastIndexByte(r.Sender, '@')
	local, domain := r.Sender[:at], r.Sender[at+1:]

	// RFC 7208 section 4.3: a malformed or single-label domain (or an
	// address literal) gives "none" without any lookup.
	if why := badSPFDomain(r.Domain); why != "" {
		r.Result, r.Err = SPFNone, why
		return r
	}
	if !ip.IsValid() {
		r.Result, r.Err = SPFPermError, "invalid client IP"
		return r
	}

	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	heloArg := helo
	if r.Identity == IdentityHelo {
		heloArg = r.Domain
	}
	ip = ip.Unmap()
	res, err := spf.CheckHostWithSender(net.IP(ip.AsSlice()), heloArg, librarySender(local, domain),
		spf.WithContext(ctx), spf.WithResolver(&spfResolver{Resolver: s.res, ipv6: ip.Is6()}))
	if errors.Is(err, errExistsNoDomain) {
		// The library's result for an exists term that expands to
		// nothing, had it not been marked (see spfResolver).
		res, err = spf.PermError, spf.ErrInvalidDomain
	}
	r.Result = SPFStatus(res)
	if err != nil {
		switch {
		case isSPFMatch(err):
			r.Mechanism = err.Error()
		case r.Result == SPFPass || r.Result == SPFFail || r.Result == SPFSoftFail || r.Result == SPFNeutral:
			// A non-match error along the way (e.g. a void lookup).
			r.Mechanism = err.Error()
		default:
			r.Err = fmt.Errorf("spf: %w", err).Error()
		}
	}
	return r
}

// SPFUnfinished is the result of a Check with these arguments that did not
// finish in time for its caller: temperror, for the identity, sender and
// domain Check evaluates. The domain matters: DMARC aligns it with the
// From domain, and an SPF temperror for an aligned domain defers the
// message where one without a domain counted as an unaligned failure, and
// a p=reject made a slow SPF evaluation a 550.
func SPFUnfinished(ip netip.Addr, helo, mailFrom, why string) SPFResult {
	r := spfSubject(ip, helo, mailFrom)
	r.Result, r.Err = SPFTempError, why
	return r
}

// spfSubject returns what Check evaluates, before any lookup: the identity
// (MAIL FROM, or HELO for a null or domainless reverse-path), the sender
// of check_host() (always with an "@") and its domain.
func spfSubject(ip netip.Addr, helo, mailFrom string) SPFResult {
	r := SPFResult{Helo: helo, IP: ip, Identity: IdentityMailFrom}
	local, domain := "postmaster", helo
	if at := strings.LastIndexByte(mailFrom, '@'); at >= 0 {
		// The domain follows the last "@": a quoted local part may hold
		// one too ("a@b"@example.com, RFC 5321 section 4.1.2).
		local, domain = mailFrom[:at], mailFrom[at+1:]
	} else {
		// RFC 7208 section 2.4: a null reverse-path, or one without a
		// domain, is checked with the HELO identity and "postmaster" as
		// local part.
		r.Identity = IdentityHelo
	}
	if local == "" {
		// RFC 7208 section 4.3.
		local = "postmaster"
	}
	r.Sender = local + "@" + domain
	r.Domain = lowerDNSName(strings.TrimSuffix(domain, "."))
	return r
}

// librarySender returns the <sender> to give the library for local@domain.
// The library takes the domain to evaluate after the first "@" of
// <sender>, and the %{l} macro before it, so a local part holding "@" (only
// a quoted one can) would have it evaluate another domain. No sender gives
// the library both the right domain and the exact local part, so the "@"s
// of the local part are written "%40", their percent-encoding (RFC 3986
// section 2.1): the domain and %{o} are right, and %{l} and %{s} expand to
// a name as particular to this sender as the exact one would be, which
// no policy is likely to list either. A fixed stand-in such as
// "postmaster" would instead give every such sender the authorisation of a
// real mailbox. Received-SPF and Authentication-Results show the sender as
// given.
func librarySender(local, domain string) string {
	return strings.ReplaceAll(local, "@", "%40") + "@" + domain
}

// spfResolver is the resolver SPF gives the library for one check: our
// Resolver, but LookupIPAddr asks one address family, the one the
// mechanism asking needs.
//
// The library asks LookupIPAddr for the "a", "mx" and "ptr" mechanisms,
// which RFC 7208 sections 5.3-5.5 evaluate with an A or an AAAA lookup as
// the client is IPv4 or IPv6. Asking both and merging them hid a timeout of
// the client's type when the other type answered: the mechanism did not
// match, and "-all" gave fail where the result is temperror. Asking one
// type also halves the queries.
//
// The library asks LookupIPAddr for "exists" too, which RFC 7208 section
// 5.7 evaluates with an A lookup whatever the client, and nothing in the
// call tells the mechanisms apart: not the context, not the method, and
// not the name, which may be the name an "a" term or an MX host asks. For
// an IPv4 client A serves both. For an IPv6 client, LookupTXT ends the
// domain-spec of every exists term of the SPF records it returns with
// existsMark (see markExists). The library expands the macros of the
// domain-spec and copies the mark, which holds none, after the expansion,
// so the name of an exists lookup, and no other, ends with the mark:
// LookupIPAddr removes it and asks A alone. An exists target with AAAA
// records and no A record is a void lookup and does not match (the
// library took an IPv4-mapped AAAA for a match), and a failure of its AAAA
// lookup is no matter; "a", "mx" and "ptr" ask AAAA alone, on any name.
//
// Two things follow from asking the name after the mark is copied. The
// library checks a domain-spec that expands to nothing (such as %{l-} of
// the sender "-@example.com") before it counts the lookup, and the mark
// makes it not empty: LookupIPAddr fails such a lookup with
// errExistsNoDomain, which ends the evaluation, and Check reports the
// permerror the library gives, with its error, spf.ErrInvalidDomain; only
// when the term is past the limit of 10 lookups does the library report
// the limit instead. And a name from elsewhere would be taken for an
// exists lookup if it ended with the mark: names from DNS answers never
// do (miekg/dns writes control characters \DDD), nor those from the
// sender and HELO name (the SMTP parser refuses control characters), so
// only a domain's own record could, and an A lookup never gives an IPv6
// client a match.
//
// One more consequence, the RFC's: for an IPv6 client an "a" host without
// AAAA records is a void lookup (RFC 7208 section 4.6.4), as it was not
// when its A records answered the merged lookup.
//
// The library calls it from the goroutine of SPF.Check only.
type spfResolver struct {
	*Resolver
	ipv6 bool // the client is IPv6
}

// existsMark ends the domain-spec of the exists terms given to the
// library for an IPv6 client (see spfResolver). It holds no "%", which
// starts a macro, no "}", which ends one, no "/" and no space, and is
// valid UTF-8: the library copies it as it is.
const existsMark = "\x00exists"

// errExistsNoDomain is the error of an exists lookup whose domain-spec
// expanded to nothing (see spfResolver).
var errExistsNoDomain = errors.New("exists domain-spec expands to nothing")

// LookupTXT is Resolver.LookupTXT, with exists terms marked for an IPv6
// client.
func (r *spfResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	txts, err := r.Resolver.LookupTXT(ctx, name)
	if r.ipv6 {
		for i, t := range txts {
			txts[i] = markExists(t)
		}
	}
	return txts, err
}

// markExists ends the domain-spec of each exists term of txt with
// existsMark, if txt is an SPF record. It reads txt as the library does:
// a record starts with "v=spf1 " in any case, its terms are separated by
// single spaces, a term may start with a qualifier, and one that then
// starts with "exists:" in any case is an exists term. A term with an
// empty domain-spec is left as it is: the library fails it before any
// lookup.
func markExists(txt string) string {
	if !strings.HasPrefix(strings.ToLower(txt), "v=spf1 ") {
		return txt
	}
	terms := strings.Split(txt, " ")
	marked := false
	for i, t := range terms {
		m := t
		if m != "" && strings.IndexByte("+-~?", m[0]) >= 0 {
			m = m[1:]
		}
		if len(m) > len("exists:") && strings.HasPrefix(strings.ToLower(m), "exists:") {
			terms[i] = t + existsMark
			marked = true
		}
	}
	if !marked {
		return txt
	}
	return strings.Join(terms, " ")
}

// LookupIPAddr asks the address family the mechanism needs (see
// spfResolver). An IP literal is returned as it is, as by
// Resolver.LookupIPAddr.
func (r *spfResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	exists := false
	if r.ipv6 {
		host, exists = strings.CutSuffix(host, existsMark)
		if exists && host == "" {
			return nil, errExistsNoDomain
		}
	}
	switch a, err := netip.ParseAddr(host); {
	case err == nil:
		return ipAddrs([]netip.Addr{a}, nil)
	case !r.ipv6 || exists:
		return ipAddrs(r.Resolver.LookupA(ctx, host))
	default:
		return ipAddrs(r.Resolver.LookupAAAA(ctx, host))
	}
}

func isSPFMatch(err error) bool {
	for _, m := range []error{spf.ErrMatchedAll, spf.ErrMatchedA, spf.ErrMatchedIP,
		spf.ErrMatchedMX, spf.ErrMatchedPTR, spf.ErrMatchedExists} {
		if errors.Is(err, m) {
			return true
		}
	}
	return false
}

// badSPFDomain says why d cannot be an SPF domain (RFC 7208 section 4.3),
// or "" if it can.
func badSPFDomain(d string) string {
	switch {
	case d == "":
		return "no domain"
	case strings.HasPrefix(d, "["):
		return "address literal"
	case !strings.Contains(d, "."):
		return "not a multi-label domain name"
	case len(d) > 253:
		return "domain name too long"
	}
	for l := range strings.SplitSeq(d, ".") {
		if l == "" {
			return "empty label"
		}
		if len(l) > 63 {
			return "label longer than 63 characters"
		}
	}
	return ""
}

// ReceivedSPF returns the value of a Received-SPF header field for r (RFC
// 7208 section 9.1), without the field name and line ending; receiver is
// our host name. Values from the client are quoted, and control
// characters removed.
func (r SPFResult) ReceivedSPF(receiver string) string {
	who := "domain of " + r.Sender
	if r.Identity == IdentityHelo {
		who = "domain of " + r.Domain
	}
	ip := r.IP.String()
	var comment string
	switch r.Result {
	case SPFPass:
		comment = who + " designates " + ip + " as permitted sender"
	case SPFFail:
		comment = who + " does not designate " + ip + " as permitted sender"
	case SPFSoftFail:
		comment = "transitioning " + who + " does not designate " + ip + " as permitted sender"
	case SPFNeutral:
		comment = ip + " is neither permitted nor denied by " + who
	case SPFNone:
		comment = who + " does not provide an SPF record"
	case SPFTempError:
		comment = "error in processing during lookup of " + who
	default:
		comment = "permanent error in processing " + who
	}
	var b strings.Builder
	b.Grow(256)
	b.WriteString(string(r.Result))
	b.WriteString(" (")
	b.WriteString(commentText(receiver + ": " + comment))
	b.WriteString(")")
	kv := func(k, v string) {
		b.WriteString(" ")
		b.WriteString(k)
		b.WriteString("=")
		b.WriteString(kvValue(v))
		b.WriteString(";")
	}
	kv("client-ip", ip)
	if r.Identity == IdentityMailFrom {
		kv("envelope-from", r.Sender)
	} else {
		kv("envelope-from", "")
	}
	kv("helo", r.Helo)
	if r.Err != "" && (r.Result == SPFPermError || r.Result == SPFTempError) {
		kv("problem", r.Err)
	}
	kv("identity", r.Identity)
	kv("receiver", receiver)
	return b.String()
}

// commentText makes s safe inside a header comment: no control
// characters, and parentheses and backslashes quoted.
func commentText(s string) string {
	var b strings.Builder
	for _, c := range s {
		switch {
		case c < ' ' || c == 0x7f:
			continue
		case c == '(' || c == ')' || c == '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// kvValue writes v as a dot-atom when it is one, else as a quoted-string
// (RFC 5322 section 3.2.3, 3.2.4), without control characters.
func kvValue(v string) string {
	if isDotAtom(v) {
		return v
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range v {
		switch {
		case c < ' ' || c == 0x7f:
			continue
		case c == '"' || c == '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	b.WriteByte('"')
	return b.String()
}

func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte("!#$%&'*+-/=?^_`{|}~.", c) >= 0 {
			continue
		}
		return false
	}
	return true
}
