package checks

import (
	"bytes"
	"strings"
	"unicode"
	"unicode/utf8"
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
	writeAuthResults(&b, authservID, in, false)
	return b.String()
}

// AuthenticationResultsField returns the whole Authentication-Results
// field, CRLF included, folded (RFC 5322 section 2.2.3): each result on a
// line of its own, and a property on the next line where the line would
// pass 78 octets. Its value unfolds to AuthenticationResults'. Without
// folding, a message with a few failed DKIM signatures (the sender
// chooses how many) made the field longer than the 998 octets a line may
// have (RFC 5322 section 2.1.1); a value is at most maxARValue octets, so
// no line is.
func AuthenticationResultsField(authservID string, in AuthResultsInput) string {
	var b strings.Builder
	b.Grow(384)
	b.WriteString("Authentication-Results: ")
	writeAuthResults(&b, authservID, in, true)
	b.WriteString("\r\n")
	return b.String()
}

// foldAt is the line length past which a folded field breaks its line
// (RFC 5322 section 2.1.1's "SHOULD be no more than 78").
const foldAt = 78

func writeAuthResults(b *strings.Builder, authservID string, in AuthResultsInput, fold bool) {
	b.WriteString(cleanValue(authservID))
	n := 0
	lineStart := 0 // where the current line begins in b, when folding
	sep := func(s string, next int) {
		if fold && b.Len()-lineStart+len(s)+next > foldAt {
			b.WriteString("\r\n\t")
			lineStart = b.Len() - 1
			s = strings.TrimPrefix(s, " ")
		}
		b.WriteString(s)
	}
	result := func(method, value string, props ...string) {
		n++
		if fold {
			b.WriteString(";\r\n\t")
			lineStart = b.Len() - 1
		} else {
			b.WriteString("; ")
		}
		b.WriteString(method)
		b.WriteByte('=')
		b.WriteString(value)
		var scratch [160]byte
		for i := 0; i+1 < len(props); i += 2 {
			v := cleanValue(props[i+1])
			if v == "" {
				continue
			}
			pv := append(scratch[:0], props[i]...)
			pv = append(pv, '=')
			if props[i] == "reason" {
				pv = appendARValue(pv, v)
			} else {
				pv = appendARPvalue(pv, v)
			}
			sep(" ", len(pv))
			b.Write(pv)
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
}

// appendARValue appends a value (RFC 2045 token or quoted-string) as
// authres.Format does: quoted, with its quotes escaped, when it holds a
// space, a control character or a tspecial.
func appendARValue(b []byte, s string) []byte {
	quote := false
	for _, r := range s {
		if r <= ' ' || strings.ContainsRune(`()<>@,;:\"/[]?=`, r) {
			quote = true
			break
		}
	}
	if !quote {
		return append(b, s...)
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}

// appendARPvalue appends a property value as authres.Format does: as it is
// when it looks like an address or a domain (letters, digits and the
// punctuation of addresses), else as a value.
func appendARPvalue(b []byte, s string) []byte {
	for _, r := range s {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune("#$%&'*+,./-@[]\\^_`{|}~", r) {
			return appendARValue(b, s)
		}
	}
	return append(b, s...)
}

// cleanValue drops control characters and backslashes (authres.Format
// quotes but does not escape them) and cuts the value to maxARValue
// octets, on a character boundary.
func cleanValue(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r == '\\' {
			return -1
		}
		return r
	}, s)
	if len(s) > maxARValue {
		cut := maxARValue
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}

// maxARValue bounds a value in our Authentication-Results field: an
// address is at most 256 octets (RFC 5321 section 4.5.3.1.3), and a
// reason longer than that says nothing more.
const maxARValue = 320

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
