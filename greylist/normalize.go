package greylist

import (
	"net/netip"
	"strconv"
	"strings"
)

// NullSender is the normalised form of the null reverse path "<>" used by
// bounces and other delivery status notifications (RFC 5321 section 4.5.5).
// It is a value of its own: all bounces from one network to one recipient
// share one triplet.
const NullSender = "<>"

// maxPartLen bounds a normalised sender or recipient. RFC 5321 section
// 4.5.3.1.3 limits a path to 256 octets; longer input is cut so that keys
// stay small whatever a client sends.
const maxPartLen = 256

// bounceWords lead local parts of per-message bounce addresses
// ("bounces-123-abc@", "bounce-mc.us5_123.456-user=example.com@"): when the
// first token of a local part is one of them, the rest is variable.
var bounceWords = map[string]bool{
	"bounce": true, "bounces": true, "bnc": true, "return": true,
	"returns": true, "verp": true, "retour": true, "bo": true,
}

// NormalizeSender returns the envelope sender as it is used in the triplet,
// so that a retry of the same message matches its first attempt even when
// the sender's software puts a per-attempt value in the address:
//
//   - angle brackets and blanks are removed and everything is lower-cased;
//     an empty path is NullSender;
//   - a source route ("@relay:user@domain") is dropped;
//   - SRS addresses (SRS0=hash=tt=domain=user@forwarder, and SRS1) become
//     "srs=domain=user@forwarder", without the hash and timestamp;
//   - BATV addresses (prvs=tag=user@domain, msprvs1=, btv1=, and the
//     user=prvs=tag form) lose the tag;
//   - a "+extension" is removed from the local part (user+tag@ → user@);
//   - a local part led by a bounce word (bounce, bounces, bnc, return,
//     verp, ...) keeps only that word: "bounces-123-abc@" → "bounces-#@";
//   - a local part made only of hex tokens, 16 hex digits or more in all
//     (a UUID or similar message id), becomes "#";
//   - in the remaining tokens of the local part (split at - _ . =), runs of
//     digits become "#", and tokens that look like identifiers (four or
//     more hex digits with at least one decimal digit, or ten or more
//     letters and digits mixed) become "#"; consecutive "#" tokens collapse
//     into one.
//
// Two addresses that differ only in such variable parts share a triplet;
// that widens a pass slightly, never narrows it.
func NormalizeSender(s string) string {
	local, domain, null := senderParts(s)
	if null {
		return NullSender
	}
	out := normLocal(local, 0) + "@" + domain
	if len(out) > maxPartLen {
		out = out[:maxPartLen]
	}
	return out
}

// senderParts splits an envelope sender into its lower-cased local part
// and normalised domain, before any cut at maxPartLen: the domain the
// allow lists compare is the sender's whole domain, never what a cut left
// of it. null reports the null reverse path.
func senderParts(s string) (local, domain string, null bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.TrimSuffix(strings.TrimPrefix(s, "<"), ">")
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "@") {
		// Source route: "@a,@b:user@domain".
		if i := strings.IndexByte(s, ':'); i >= 0 {
			s = s[i+1:]
		}
	}
	if s == "" {
		return "", "", true
	}
	local = s
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		local, domain = s[:i], normDomain(s[i+1:])
	}
	return local, domain, false
}

// NormalizeRecipient returns the recipient as used in the triplet: without
// angle brackets or blanks, lower-cased, without a trailing dot on the
// domain. Recipients are ours, so their extensions are kept: user+a and
// user+b are different mailboxes to greylist.
func NormalizeRecipient(s string) string {
	s = recipientFull(s)
	if len(s) > maxPartLen {
		s = s[:maxPartLen]
	}
	return s
}

// recipientFull is NormalizeRecipient before the cut at maxPartLen: what
// allow_recipients compares, so that the cut of a long local part at an
// accepted domain ("x…x@example.com" of "x…x@example.com.au") is never
// taken for an allowed recipient.
func recipientFull(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(s, "<"), ">"))
	if strings.HasPrefix(s, "@") {
		// Source route: "@a,@b:user@domain" (RFC 5321 section 4.1.2).
		if i := strings.IndexByte(s, ':'); i >= 0 {
			s = s[i+1:]
		}
	}
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		s = s[:i+1] + normDomain(s[i+1:])
	}
	return s
}

// normDomain lower-cases a domain and drops a trailing dot and blanks.
func normDomain(d string) string {
	d = strings.ToLower(strings.TrimSpace(d))
	d = strings.TrimSuffix(d, ".")
	return strings.Trim(d, "[]")
}

func normLocal(local string, depth int) string {
	if local == "" || strings.HasPrefix(local, `"`) {
		return local // quoted local parts are kept as they are
	}
	if depth < 2 {
		if out, ok := srsLocal(local, depth); ok {
			return out
		}
	}
	local = batvLocal(local)
	if i := strings.IndexByte(local, '+'); i > 0 {
		local = local[:i]
	}
	return variableTokens(local)
}

// srsLocal rewrites SRS0 and SRS1 local parts (the Sender Rewriting Scheme)
// to "srs=domain=user", dropping the hash and timestamp that change each
// time the forwarder rewrites the address.
//
//	SRS0=HHH=TT=domain=user
//	SRS1=HHH=forwarder==HHH=TT=domain=user
func srsLocal(local string, depth int) (string, bool) {
	if len(local) < 5 || !strings.HasPrefix(local, "srs") || !isSep(local[4]) {
		return "", false
	}
	rest := local[5:]
	switch local[3] {
	case '0':
	case '1':
		i := strings.Index(rest, "==")
		if i < 0 {
			return "", false
		}
		rest = rest[i+2:]
	default:
		return "", false
	}
	parts := strings.SplitN(rest, "=", 4)
	if len(parts) != 4 || parts[2] == "" || parts[3] == "" {
		return "", false
	}
	return "srs=" + normDomain(parts[2]) + "=" + normLocal(parts[3], depth+1), true
}

func isSep(c byte) bool { return c == '=' || c == '+' || c == '-' }

// batvLocal removes a BATV tag: prvs=tag=user, msprvs1=tag=user,
// btv1=tag=user, or user=prvs=tag.
func batvLocal(local string) string {
	for _, p := range []string{"prvs=", "msprvs1=", "btv1="} {
		if strings.HasPrefix(local, p) {
			rest := local[len(p):]
			if i := strings.IndexByte(rest, '='); i >= 0 && i+1 < len(rest) {
				return rest[i+1:]
			}
		}
	}
	if i := strings.Index(local, "=prvs="); i > 0 && !strings.Contains(local[i+6:], "=") {
		return local[:i]
	}
	return local
}

// variableTokens applies the bounce-word and identifier rules.
func variableTokens(local string) string {
	type tok struct {
		text string
		sep  byte // separator after the token, 0 at the end
	}
	var toks []tok
	start := 0
	for i := 0; i <= len(local); i++ {
		if i == len(local) || strings.IndexByte("-_.=", local[i]) >= 0 {
			var sep byte
			if i < len(local) {
				sep = local[i]
			}
			toks = append(toks, tok{local[start:i], sep})
			start = i + 1
		}
	}
	if len(toks) > 1 && bounceWords[toks[0].text] {
		return toks[0].text + string(toks[0].sep) + "#"
	}
	// A local part made only of hex tokens, 16 digits or more, is a
	// message id (UUIDs and the like): all of it is variable.
	hexDigits := 0
	for _, t := range toks {
		if strings.Trim(t.text, "0123456789abcdef") != "" {
			hexDigits = -1
			break
		}
		hexDigits += len(t.text)
	}
	if hexDigits >= 16 {
		return "#"
	}
	var out []tok
	for _, t := range toks {
		if isIdentifier(t.text) {
			t.text = "#"
		} else {
			t.text = digitsToHash(t.text)
		}
		if n := len(out); n > 0 && t.text == "#" && out[n-1].text == "#" {
			// "#-#" collapses into "#": the number of variable tokens
			// may vary too.
			out[n-1].sep = t.sep
			continue
		}
		out = append(out, t)
	}
	var b strings.Builder
	for _, t := range out {
		b.WriteString(t.text)
		if t.sep != 0 {
			b.WriteByte(t.sep)
		}
	}
	return b.String()
}

// isIdentifier reports whether a token looks machine-made: four or more
// hex digits with at least one decimal digit, or ten or more ASCII letters
// and digits mixed.
func isIdentifier(t string) bool {
	if len(t) < 4 {
		return false
	}
	hex, digits, letters := true, 0, 0
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c >= 'a' && c <= 'f':
			letters++
		case c >= 'g' && c <= 'z':
			letters++
			hex = false
		default:
			return false
		}
	}
	if digits == 0 {
		return false
	}
	if hex {
		return true
	}
	return len(t) >= 10 && letters > 0
}

// digitsToHash replaces each run of decimal digits by one "#".
func digitsToHash(t string) string {
	if strings.IndexFunc(t, func(r rune) bool { return r >= '0' && r <= '9' }) < 0 {
		return t
	}
	var b strings.Builder
	in := false
	for i := 0; i < len(t); i++ {
		c := t[i]
		if c >= '0' && c <= '9' {
			if !in {
				b.WriteByte('#')
			}
			in = true
			continue
		}
		in = false
		b.WriteByte(c)
	}
	return b.String()
}

// ClientNetwork returns the network a client address is grouped into:
// v4bits for IPv4 (and IPv4-mapped IPv6), v6bits for IPv6.
func ClientNetwork(ip netip.Addr, v4bits, v6bits int) netip.Prefix {
	ip = ip.Unmap().WithZone("")
	bits := v6bits
	if ip.Is4() {
		bits = v4bits
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return netip.PrefixFrom(ip, ip.BitLen())
	}
	return p
}

// ParseNetwork reads what an operator types to name a client network: an
// address ("192.0.2.7", grouped like a client) or a CIDR whose prefix is
// at least as long as the grouping ("192.0.2.0/24", "192.0.2.7/32"), and
// returns the greylist network it falls in.
func ParseNetwork(s string, v4bits, v6bits int) (netip.Prefix, error) {
	p, err := parsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	bits := v6bits
	if p.Addr().Is4() {
		bits = v4bits
	}
	if p.Bits() < bits {
		return netip.Prefix{}, &networkTooWideError{p, bits}
	}
	return ClientNetwork(p.Addr(), v4bits, v6bits), nil
}

type networkTooWideError struct {
	p    netip.Prefix
	bits int
}

func (e *networkTooWideError) Error() string {
	return "network " + e.p.String() + " is wider than the greylist grouping /" +
		strconv.Itoa(e.bits) + "; name one network of that size, or use greylist.allow_cidrs"
}
