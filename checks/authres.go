package checks

import (
	"bytes"
	"strings"
	"unicode"
)

// AuthResultsInput holds the results to report; nil ones are left out.
type AuthResultsInput struct {
	IPRev *IPRevResult
	SPF   *SPFResult
	DKIM  *DKIMResult
	DMARC *DMARCResult
}

// AuthenticationResults returns the value of an Authentication-Results
// header field (RFC 8601 section 2.2) for the given results, without the
// field name and line ending, in go-msgauth/authres's format:
//
//   - iprev: policy.iprev=<client IP> (RFC 8601 section 3);
//   - spf: smtp.mailfrom=<sender>, or smtp.helo=<helo> for the HELO
//     identity (RFC 7208 section 9.2);
//   - dkim, one per signature: header.d, header.i, header.s, header.a and
//     header.b, the prefix of the signature that tells it apart (RFC 6008);
//   - dmarc: header.from, policy.dmarc=<the policy to apply, after pct>
//     and policy.published-domain-policy=<p= or sp=> (the IANA properties
//     of DMARC; RFC 7489 section 11.2 registers header.from).
//
// Every value is cleaned of control characters, so nothing a client sent
// can break the header.
//
// It writes what authres.Format writes (its tests compare the two) without
// going through it: Format takes each result's properties as a map and
// sorts them (about 3% of a relayed message's CPU in the make bench
// profile), where ours are few and known, and written here in Format's
// order: reason, then the others by name.
func AuthenticationResults(authservID string, in AuthResultsInput) string {
	var b strings.Builder
	b.Grow(320)
	b.WriteString(cleanValue(authservID))
	n := 0
	result := func(method, value string, props ...string) {
		n++
		b.WriteString("; ")
		b.WriteString(method)
		b.WriteByte('=')
		b.WriteString(value)
		for i := 0; i+1 < len(props); i += 2 {
			v := cleanValue(props[i+1])
			if v == "" {
				continue
			}
			b.WriteByte(' ')
			b.WriteString(props[i])
			b.WriteByte('=')
			if props[i] == "reason" {
				writeARValue(&b, v)
			} else {
				writeARPvalue(&b, v)
			}
		}
	}
	if r := in.IPRev; r != nil {
		result("iprev", r.Result, "reason", r.Reason, "policy.iprev", r.IP.String())
	}
	if r := in.SPF; r != nil {
		if r.Identity == IdentityHelo {
			result("spf", string(r.Result), "reason", r.Err, "smtp.helo", r.Helo)
		} else {
			result("spf", string(r.Result), "reason", r.Err, "smtp.mailfrom", r.Sender)
		}
	}
	if r := in.DKIM; r != nil {
		if len(r.Signatures) == 0 {
			result("dkim", "none", "reason", r.Err)
		}
		for _, s := range r.Signatures {
			result("dkim", string(s.Result), "reason", s.Reason, "header.a", s.Algorithm, "header.b", s.BPrefix,
				"header.d", s.Domain, "header.i", s.Identifier, "header.s", s.Selector)
		}
	}
	if r := in.DMARC; r != nil {
		result("dmarc", string(r.Result), "reason", r.Reason, "header.from", r.Domain,
			"policy.dmarc", r.Applied, "policy.published-domain-policy", r.Policy)
	}
	if n == 0 {
		b.WriteString("; none")
	}
	return b.String()
}

// writeARValue writes a value (RFC 2045 token or quoted-string) as
// authres.Format does: quoted, with its quotes escaped, when it holds a
// space, a control character or a tspecial.
func writeARValue(b *strings.Builder, s string) {
	quote := false
	for _, r := range s {
		if r <= ' ' || strings.ContainsRune(`()<>@,;:\"/[]?=`, r) {
			quote = true
			break
		}
	}
	if !quote {
		b.WriteString(s)
		return
	}
	b.WriteByte('"')
	b.WriteString(strings.ReplaceAll(s, `"`, `\"`))
	b.WriteByte('"')
}

// writeARPvalue writes a property value as authres.Format does: as it is
// when it looks like an address or a domain (letters, digits and the
// punctuation of addresses), else as a value.
func writeARPvalue(b *strings.Builder, s string) {
	for _, r := range s {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune("#$%&'*+,./-@[]\\^_`{|}~", r) {
			writeARValue(b, s)
			return
		}
	}
	b.WriteString(s)
}

// cleanValue drops control characters and backslashes (authres.Format
// quotes but does not escape them).
func cleanValue(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r == '\\' {
			return -1
		}
		return r
	}, s)
}

// StripAuthResults returns the header block with every
// Authentication-Results field whose authserv-id is ours removed (RFC 8601
// section 5: a message arriving with our authserv-id forged must not keep
// it). The comparison ignores case. Everything else, including folding,
// line endings and the empty line that ends the block, is kept byte for
// byte. header is not modified; when there is nothing to remove, header
// itself is returned (no copy).
func StripAuthResults(header []byte, authservID string) []byte {
	var out []byte // nil until a field is removed
	rest := header
	for len(rest) > 0 {
		end := fieldEnd(rest)
		field := rest[:end]
		rest = rest[end:]
		if isBlankLine(field) {
			if out == nil {
				return header
			}
			out = append(out, field...)
			out = append(out, rest...)
			break
		}
		// The name is compared in place; only an Authentication-Results
		// value is made a string.
		if colon := bytes.IndexByte(field, ':'); colon >= 0 &&
			bytes.EqualFold(bytes.TrimRight(field[:colon], " \t"), []byte("Authentication-Results")) &&
			strings.EqualFold(authservIDOf(string(field[colon+1:])), authservID) {
			if out == nil {
				start := len(header) - len(rest) - len(field)
				out = append(make([]byte, 0, len(header)), header[:start]...)
			}
			continue
		}
		if out != nil {
			out = append(out, field...)
		}
	}
	if out == nil {
		return header
	}
	return out
}

// authservIDOf returns the authserv-id at the start of an
// Authentication-Results value (RFC 8601 section 2.2): after optional CFWS,
// a token or a quoted-string (unquoted). It returns "" if there is none.
func authservIDOf(v string) string {
	i := skipCFWS(v, 0)
	if i >= len(v) {
		return ""
	}
	if v[i] == '"' {
		var b strings.Builder
		for i++; i < len(v); i++ {
			switch v[i] {
			case '\\':
				if i+1 < len(v) {
					i++
					b.WriteByte(v[i])
				}
			case '"':
				return b.String()
			case '\r', '\n':
			default:
				b.WriteByte(v[i])
			}
		}
		return b.String()
	}
	j := i
	for j < len(v) && !strings.ContainsRune(" \t\r\n;()", rune(v[j])) {
		j++
	}
	return v[i:j]
}

// skipCFWS skips white space, line breaks and (nested) comments.
func skipCFWS(v string, i int) int {
	depth := 0
	for i < len(v) {
		c := v[i]
		switch {
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case c == '\\' && depth > 0:
			i++
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
		case depth > 0:
		default:
			return i
		}
		i++
	}
	return i
}
