package gateway

import (
	"bytes"
	"crypto/tls"
	"strings"
	"time"

	"github.com/mxgate/gatewayd/policy"
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
	// Valid UTF-8 only (RFC 6532), cut at a character boundary.
	s = policy.Truncate(strings.ToValidUTF8(s, "_"), 255)
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
