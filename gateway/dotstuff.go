package gateway

import (
	"bufio"
	"bytes"
)

// dotWriter writes a message as the content of SMTP DATA (RFC 5321
// section 4.5.2): a "." at the start of a line is doubled, a bare LF is
// written as CRLF, and Close ends the content with CRLF "." CRLF. For
// content without a bare CR its output is net/textproto's DotWriter's,
// octet for octet (FuzzDotWriter holds it to that); a bare CR is written
// as it is (textproto takes the second CR of "\r\r\n" for data and writes
// "\r\r\r\n").
//
// Why not net/textproto's: that one runs a state machine and a
// bufio.WriteByte per octet, about 5% of the gateway's CPU per relayed
// message under make bench (an internal MTA without CHUNKING, as
// smtp-sink). Ours finds lines with IndexByte and writes the content in
// runs that end only where it must add an octet.
type dotWriter struct {
	w     *bufio.Writer
	begin bool // at the start of a line (or of the content)
	cr    bool // the last octet written was a CR
	any   bool // an octet was written
}

func newDotWriter(w *bufio.Writer) *dotWriter { return &dotWriter{w: w, begin: true} }

func (d *dotWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	d.any = true
	// Octets go out in runs as long as the content allows: a run ends
	// only where an octet must be added (a "." before a line's leading
	// dot, a CR before a bare LF), so a long run reaches the connection
	// in one write (bufio.Writer writes a run larger than its buffer
	// directly).
	start := 0 // the first octet of p not written yet
	var err error
	put := func(b []byte, extra string) {
		if err == nil && len(b) > 0 {
			_, err = d.w.Write(b)
		}
		if err == nil {
			_, err = d.w.WriteString(extra)
		}
	}
	if d.begin && p[0] == '.' {
		put(nil, ".")
	}
	for i := 0; err == nil; {
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			break
		}
		j += i
		if !(j > 0 && p[j-1] == '\r' || j == 0 && d.cr) {
			// A bare LF: CRLF in its place.
			put(p[start:j], "\r\n")
			start = j + 1
		}
		if j+1 < len(p) && p[j+1] == '.' {
			put(p[start:j+1], ".")
			start = j + 1
		}
		i = j + 1
	}
	if err == nil && start < len(p) {
		_, err = d.w.Write(p[start:])
	}
	if err != nil {
		return 0, err
	}
	last := p[len(p)-1]
	d.begin, d.cr = last == '\n', last == '\r'
	return len(p), nil
}

// Close ends the content: the last line's CRLF when it has none, then the
// "." line. It does not flush.
func (d *dotWriter) Close() error {
	var end string
	switch {
	case !d.any || !d.begin && !d.cr:
		end = "\r\n.\r\n"
	case d.cr:
		end = "\n.\r\n"
	default:
		end = ".\r\n"
	}
	_, err := d.w.WriteString(end)
	return err
}
