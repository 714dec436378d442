package gateway

import (
	"errors"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/mxgate/gatewayd/checks"
	"golang.org/x/net/idna"
)

// This file parses the arguments of SMTP commands (RFC 5321 section 4.1.2).
// go-smtp keeps its path parser unexported, and net/mail parses RFC 5322
// header addresses, whose grammar differs from the envelope's (no display
// names or comments, but source routes and address literals), so the
// envelope grammar is written here, small and fuzzed.

// Address is a parsed envelope mailbox. A null reverse-path ("<>") has an
// empty Local and Domain.
type Address struct {
	Local  string // local part, quoted-pairs decoded
	Domain string // lower-case; IDNs as A-labels (punycode)
	// Route is a source route (RFC 5321 section 4.1.1.3, "@a,@b:") that
	// was given and is ignored, as the RFC asks.
	Route string
}

// IsNull reports the null reverse-path.
func (a Address) IsNull() bool { return a.Local == "" && a.Domain == "" }

// String renders the address as it goes to the internal MTA: quoted again
// when the local part needs it.
func (a Address) String() string {
	if a.IsNull() {
		return ""
	}
	return quoteLocal(a.Local) + "@" + a.Domain
}

// UTF8 reports whether the address holds non-ASCII octets.
func (a Address) UTF8() bool {
	for i := 0; i < len(a.Local); i++ {
		if a.Local[i] >= 0x80 {
			return true
		}
	}
	return false
}

// isASCII reports whether s holds only US-ASCII octets.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

var (
	errPathSyntax   = errors.New("address syntax")
	errParamSyntax  = errors.New("parameter syntax")
	errDomainSyntax = errors.New("domain syntax")
)

// splitCommand returns the upper-case verb and the argument of a command
// line.
func splitCommand(line string) (verb, arg string) {
	verb, arg, _ = strings.Cut(line, " ")
	return strings.ToUpper(verb), arg
}

// cutPrefixFold cuts a case-insensitive prefix (like "FROM:").
func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

// parsePathArg parses "<path> params" as in "MAIL FROM:<path> params". The
// space some clients put after the colon is tolerated.
func parsePathArg(arg string, allowNull bool) (Address, string, error) {
	arg = strings.TrimLeft(arg, " ")
	if !strings.HasPrefix(arg, "<") {
		return Address{}, "", errPathSyntax
	}
	end := closingBracket(arg)
	if end < 0 {
		return Address{}, "", errPathSyntax
	}
	path := arg[1:end]
	rest := arg[end+1:]
	if rest != "" && rest[0] != ' ' {
		return Address{}, "", errPathSyntax
	}
	if path == "" {
		if !allowNull {
			return Address{}, "", errPathSyntax
		}
		return Address{}, strings.TrimSpace(rest), nil
	}
	a, err := parseMailbox(path)
	return a, strings.TrimSpace(rest), err
}

// closingBracket finds the '>' that ends the path, skipping quoted strings.
func closingBracket(s string) int {
	inQuote := false
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case inQuote && c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == '>':
			return i
		}
	}
	return -1
}

// parseMailbox parses [A-d-l ":"] Mailbox.
func parseMailbox(path string) (Address, error) {
	var a Address
	if strings.HasPrefix(path, "@") {
		i := strings.IndexByte(path, ':')
		if i < 0 {
			return a, errPathSyntax
		}
		for _, hop := range strings.Split(path[:i], ",") {
			if !strings.HasPrefix(hop, "@") || !validDomain(hop[1:]) {
				return a, errPathSyntax
			}
		}
		a.Route = path[:i]
		path = path[i+1:]
	}
	if !utf8.ValidString(path) {
		return a, errPathSyntax
	}
	var local string
	var rest string
	if strings.HasPrefix(path, `"`) {
		var b strings.Builder
		i := 1
		closed := false
		for ; i < len(path); i++ {
			c := path[i]
			if c == '\\' {
				if i+1 >= len(path) || path[i+1] < 32 || path[i+1] == 127 {
					return a, errPathSyntax
				}
				i++
				b.WriteByte(path[i])
				continue
			}
			if c == '"' {
				closed = true
				i++
				break
			}
			if c < 32 || c == 127 {
				return a, errPathSyntax
			}
			b.WriteByte(c)
		}
		if !closed {
			return a, errPathSyntax
		}
		local = b.String()
		rest = path[i:]
		if !strings.HasPrefix(rest, "@") {
			return a, errPathSyntax
		}
		rest = rest[1:]
	} else {
		i := strings.LastIndexByte(path, '@')
		if i < 0 {
			return a, errPathSyntax
		}
		local, rest = path[:i], path[i+1:]
		if !validDotString(local) {
			return a, errPathSyntax
		}
	}
	if local == "" || len(local) > 64*4 {
		return a, errPathSyntax
	}
	dom, err := normalizeDomain(rest)
	if err != nil {
		return a, err
	}
	a.Local = local
	a.Domain = dom
	return a, nil
}

// validDotString checks Dot-string = Atom *("." Atom), with UTF-8 allowed as
// atext (RFC 6531 section 3.3).
func validDotString(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 {
			continue
		}
		if !isAtext(c) && c != '.' {
			return false
		}
	}
	return true
}

func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// normalizeDomain validates a domain or address literal and returns it in
// lower case, IDNs converted to A-labels.
func normalizeDomain(d string) (string, error) {
	if strings.HasPrefix(d, "[") {
		if !validAddressLiteral(d) {
			return "", errDomainSyntax
		}
		return strings.ToLower(d), nil
	}
	if !validDomain(d) {
		return "", errDomainSyntax
	}
	if l := strings.ToLower(d); checks.LDHName(l) {
		return l, nil
	}
	ascii, err := idna.Lookup.ToASCII(d)
	// The mapping can take labels away or make new ones: U+3002 and other
	// full stops become ".", U+00AD and other ignorables disappear. The
	// result is checked again, or "a@example.com\u3002" would be
	// example.com. (with the root dot the ASCII form is refused for),
	// "a@\u00ad" an empty domain and "a@x\u3002\u3002y" x..y.
	if err != nil || !validDomain(ascii) {
		return "", errDomainSyntax
	}
	return strings.ToLower(ascii), nil
}

// validAddressLiteral reports an IPv4 or IPv6 address literal (RFC 5321
// section 4.1.3: "[192.0.2.1]", "[IPv6:2001:db8::1]"). What else the
// brackets held went on as written, into the MAIL command to the internal
// MTA: spaces, quotes and ">" with it, so that "<a@[x\"> NOTIFY=NEVER \"]>"
// (one path to our quote-aware parser) gave that MTA a parameter. The
// General-address-literal has no registered tag, so none is taken.
func validAddressLiteral(d string) bool {
	in, ok := strings.CutPrefix(d, "[")
	if in, ok = strings.CutSuffix(in, "]"); !ok {
		return false
	}
	if len(in) >= 5 && strings.EqualFold(in[:5], "IPv6:") {
		a, err := netip.ParseAddr(in[5:])
		return err == nil && a.Is6() && a.Zone() == ""
	}
	a, err := netip.ParseAddr(in)
	return err == nil && a.Is4()
}

func validDomain(d string) bool {
	if d == "" || len(d) > 255*4 {
		return false
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if c >= 0x80 || c == '-' || c == '_' ||
				'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
				continue
			}
			return false
		}
	}
	return true
}

// quoteLocal quotes a local part when it is not a valid Dot-string.
func quoteLocal(l string) string {
	if validDotString(l) {
		return l
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(l); i++ {
		if l[i] == '"' || l[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(l[i])
	}
	b.WriteByte('"')
	return b.String()
}

// param is one ESMTP parameter (RFC 5321 section 4.1.2, esmtp-param).
type param struct{ key, value string }

// parseParams parses space-separated "KEY[=VALUE]" parameters.
func parseParams(s string) ([]param, error) {
	var out []param
	for _, f := range strings.Fields(s) {
		k, v, hasValue := strings.Cut(f, "=")
		if k == "" || (hasValue && v == "") {
			return nil, errParamSyntax
		}
		for i := 0; i < len(k); i++ {
			c := k[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return nil, errParamSyntax
			}
		}
		for i := 0; i < len(v); i++ {
			if v[i] < 33 || v[i] == '=' || v[i] == 127 {
				if !(v[i] >= 0x80) { // UTF-8 values are allowed with SMTPUTF8
					return nil, errParamSyntax
				}
			}
		}
		out = append(out, param{strings.ToUpper(k), v})
	}
	return out, nil
}

// parseSize parses the SIZE parameter's value.
// parseSize parses a SIZE value: digits only (RFC 1870 size-value); one
// too large for int64 is the largest size, which any limit refuses with
// 552 rather than a syntax error.
func parseSize(v string) (int64, bool) {
	if v == "" || strings.Trim(v, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if errors.Is(err, strconv.ErrRange) {
		return math.MaxInt64, true
	}
	return n, err == nil
}

// hasRoutingChars reports a local part that could route mail elsewhere at
// a downstream MTA: a second "@" (hidden in a quoted string), the "%" hack,
// or a UUCP bang path, also written as a character that compatibility
// normalisation (NFKC, which an SMTPUTF8 MTA may apply to a local part)
// turns into one of them.
func hasRoutingChars(local string) bool {
	return strings.ContainsAny(local, "@%!"+routingLookalikes)
}

// routingLookalikes are the characters whose NFKC form holds "@", "%" or
// "!": fullwidth, small and vertical forms, and the double punctuation
// marks.
const routingLookalikes = "\uff20\ufe6b\uff05\ufe6a\uff01\ufe57\ufe15\u203c\u2048\u2049"
