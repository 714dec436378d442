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
// Resolver, but LookupIPAddr asks the client's address family alone.
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
// call tells the mechanisms apart. For an IPv4 client A serves both. For an
// IPv6 client, once a record read in this check has an exists term (the
// library reads every record, included or redirected to, before it
// evaluates the record's terms), LookupIPAddr asks both types and fails if
// either fails for now (Resolver.LookupIP): at worst a temperror where the
// other type's failure did not matter, never a match or a miss decided on
// an incomplete answer.
//
// One more consequence, the RFC's: for an IPv6 client an "a" host without
// AAAA records is a void lookup (RFC 7208 section 4.6.4), as it was not
// when its A records answered the merged lookup.
//
// The library calls it from the goroutine of SPF.Check only.
type spfResolver struct {
	*Resolver
	ipv6   bool // the client is IPv6
	exists bool // a record read so far has an exists term
}

// LookupTXT is Resolver.LookupTXT, noting exists terms.
func (r *spfResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	txts, err := r.Resolver.LookupTXT(ctx, name)
	for _, t := range txts {
		if strings.Contains(lowerDNSName(t), "exists:") {
			r.exists = true
		}
	}
	return txts, err
}

// LookupIPAddr asks the address family of the client (see spfResolver).
// An IP literal is returned as it is, as by Resolver.LookupIPAddr.
func (r *spfResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	switch a, err := netip.ParseAddr(host); {
	case err == nil:
		return ipAddrs([]netip.Addr{a}, nil)
	case !r.ipv6:
		return ipAddrs(r.Resolver.LookupA(ctx, host))
	case !r.exists:
		return ipAddrs(r.Resolver.LookupAAAA(ctx, host))
	default:
		return ipAddrs(r.Resolver.LookupIP(ctx, host))
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
