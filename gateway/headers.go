package gateway

import (
	"bytes"
	"crypto/tls"
	"strings"
	"time"
)

// maxHeaderSection bounds the header section of a message, which the gateway
// reads whole to filter and to hand to the checks.
const maxHeaderSection = 1 << 20

// splitHeader finds the end of the header section in msg: the offset of the
// body (after the empty line), and the header fields without that line. A
// message with no empty line is all header.
func splitHeader(msg []byte) (hdr []byte, bodyOff int, ok bool) {
	if bytes.HasPrefix(msg, []byte("\r\n")) {
		return nil, 2, true
	}
	i := bytes.Index(msg, []byte("\r\n\r\n"))
	if i < 0 {
		return msg, len(msg), false
	}
	return msg[:i+2], i + 4, true
}

// headerFields calls fn for each header field of hdr (CRLF lines, folded
// continuation lines included); fn gets the field name and the raw field
// (all its lines, with their CRLFs).
func headerFields(hdr []byte, fn func(name string, raw []byte)) {
	for len(hdr) > 0 {
		end := 0
		for {
			i := bytes.IndexByte(hdr[end:], '\n')
			if i < 0 {
				end = len(hdr)
				break
			}
			end += i + 1
			if end >= len(hdr) || (hdr[end] != ' ' && hdr[end] != '\t') {
				break
			}
		}
		field := hdr[:end]
		name := ""
		if c := bytes.IndexByte(field, ':'); c > 0 {
			name = string(bytes.TrimRight(field[:c], " \t"))
		}
		fn(name, field)
		hdr = hdr[end:]
	}
}

// stripOurAuthResults removes every Authentication-Results field whose
// authserv-id is ours (RFC 8601 section 5: a border MTA must remove such
// fields, which could only be forged). It returns hdr itself when nothing was
// removed.
func stripOurAuthResults(hdr []byte, authservID string) []byte {
	if !bytes.Contains(bytes.ToLower(hdr), []byte("authentication-results")) {
		return hdr
	}
	var out []byte
	removed := false
	headerFields(hdr, func(name string, raw []byte) {
		if strings.EqualFold(name, "Authentication-Results") && strings.EqualFold(authservIDOf(raw), authservID) {
			removed = true
			return
		}
		out = append(out, raw...)
	})
	if !removed {
		return hdr
	}
	return out
}

// authservIDOf extracts the authserv-id of a raw Authentication-Results
// field: the first token of its value, comments (CFWS) skipped.
func authservIDOf(raw []byte) string {
	i := bytes.IndexByte(raw, ':')
	if i < 0 {
		return ""
	}
	v := raw[i+1:]
	depth := 0
	var tok []byte
	for _, c := range v {
		switch {
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth > 0:
		case c == ';' || ((c == ' ' || c == '\t' || c == '\r' || c == '\n') && len(tok) > 0):
			return strings.TrimSpace(string(tok))
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
		default:
			tok = append(tok, c)
		}
	}
	return string(tok)
}

// receivedInfo is what the Received field records.
type receivedInfo struct {
	Helo     string
	RDNS     string
	IP       string
	Host     string
	Proto    string
	QueueID  string
	Rcpt     string // only when there is exactly one recipient
	TLS      *tls.ConnectionState
	When     time.Time
	Software string
}

// receivedField builds the Received trace field (RFC 5321 section 4.4,
// protocol names from RFC 3848 and RFC 6531), folded, ending in CRLF.
func receivedField(ri receivedInfo) string {
	var b strings.Builder
	b.Grow(256)
	b.WriteString("Received: from ")
	b.WriteString(safeToken(ri.Helo, "unknown"))
	b.WriteString(" (")
	if ri.RDNS != "" {
		b.WriteString(safeToken(ri.RDNS, "unknown"))
		b.WriteByte(' ')
	}
	b.WriteByte('[')
	b.WriteString(ri.IP)
	b.WriteString("])\r\n\tby ")
	b.WriteString(ri.Host)
	b.WriteString(" (")
	b.WriteString(ri.Software)
	b.WriteString(") with ")
	b.WriteString(ri.Proto)
	b.WriteString(" id ")
	b.WriteString(ri.QueueID)
	if ri.TLS != nil {
		b.WriteString("\r\n\t(version=")
		b.WriteString(strings.ReplaceAll(tls.VersionName(ri.TLS.Version), " ", ""))
		b.WriteString(" cipher=")
		b.WriteString(tls.CipherSuiteName(ri.TLS.CipherSuite))
		b.WriteByte(')')
	}
	if ri.Rcpt != "" {
		b.WriteString("\r\n\tfor <")
		b.WriteString(safeToken(ri.Rcpt, ""))
		b.WriteByte('>')
	}
	b.WriteString(";\r\n\t")
	b.WriteString(ri.When.Format(time.RFC1123Z))
	b.WriteString("\r\n")
	return b.String()
}

// safeToken keeps a client-supplied word safe to put in a header: printable
// US-ASCII without parentheses, brackets or spaces (UTF-8 passes through,
// RFC 6532); anything else becomes '_'.
func safeToken(s, empty string) string {
	if s == "" {
		return empty
	}
	if len(s) > 255 {
		s = s[:255]
	}
	ok := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 127 || c == '(' || c == ')' || c == '\\' || c == ';' {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if c <= ' ' || c == 127 || c == '(' || c == ')' || c == '\\' || c == ';' {
			b[i] = '_'
		}
	}
	return string(b)
}

// tlsSummary is the TLS version and cipher, for the log.
func tlsSummary(cs *tls.ConnectionState) string {
	return strings.ReplaceAll(tls.VersionName(cs.Version), " ", "") + " " + tls.CipherSuiteName(cs.CipherSuite)
}
