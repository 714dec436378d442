package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// Errors of the line and data readers. They are protocol faults of the
// client, answered with an SMTP reply; any other error is a transport error.
var (
	errLineTooLong = errors.New("line too long")
	errBareLine    = errors.New("bare CR or LF in command line")
)

// readCommandLine reads one command line and returns it without its CRLF.
// A line longer than max octets is consumed up to its LF and reported as
// errLineTooLong. A line that ends in a bare LF, or that holds a CR anywhere
// but right before its LF, is consumed and reported as errBareLine: RFC 5321
// section 2.3.8 forbids bare CR and LF, and refusing them in commands as in
// data leaves no room for a different reading of line ends here and at the
// internal MTA. The returned slice is valid until the next read.
func readCommandLine(r *bufio.Reader, max int, scratch *[]byte) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if err == nil {
		if len(line) > max {
			return nil, errLineTooLong
		}
		return checkLineEnd(line)
	}
	if err != bufio.ErrBufferFull {
		return nil, err
	}
	// The line is longer than the reader's buffer: gather it, up to max.
	buf := append((*scratch)[:0], line...)
	tooLong := false
	for {
		line, err = r.ReadSlice('\n')
		if !tooLong {
			buf = append(buf, line...)
			if len(buf) > max {
				tooLong = true
				buf = buf[:0]
			}
		}
		if err == nil {
			break
		}
		if err != bufio.ErrBufferFull {
			return nil, err
		}
	}
	*scratch = buf[:0]
	if tooLong {
		return nil, errLineTooLong
	}
	return checkLineEnd(buf)
}

func checkLineEnd(line []byte) ([]byte, error) {
	n := len(line)
	if n < 2 || line[n-2] != '\r' {
		return nil, errBareLine
	}
	line = line[:n-2]
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, errBareLine
	}
	return line, nil
}

// dataReader reads an SMTP DATA section (RFC 5321 section 4.1.1.4) up to and
// including its end marker, undoes dot-stuffing (section 4.5.2), and writes
// the content to w.
//
// Only CR LF "." CR LF ends the data (or "." CR LF as the first line). Every
// other end-of-data look-alike of the SMTP smuggling family (LF "." LF,
// CR "." CR, LF "." CR LF, CR LF "." LF, NUL before the dot, ...) is content:
// a line starts only after CR LF, so a bare LF or bare CR never opens a line
// on which a dot could end the data. Bare CR, bare LF and NUL are recorded so
// that the session refuses the message after the real end marker; the bytes
// after a look-alike are thus never read as commands, and no message holding
// them is ever relayed.
//
// We write this state machine ourselves rather than use net/textproto's
// DotReader (which turns bare LF into line ends) or go-smtp's data reader
// (which passes bare CR and LF through without telling): the gateway must
// know exactly which octets it saw to refuse smuggling attempts.
type dataReader struct {
	r     *bufio.Reader
	w     io.Writer
	max   int64 // content octets allowed; beyond, content is discarded
	state int
	size  int64 // content octets seen (after unstuffing)

	bareCR, bareLF, nul bool
	tooBig              bool
}

const (
	dsBOL   = iota // at the start of a line (after CR LF, or first octet)
	dsDot          // read "." at the start of a line
	dsDotCR        // read "." CR at the start of a line
	dsData         // inside a line
	dsCR           // read CR inside a line
	dsDone         // read the end marker
)

var crOnly = []byte{'\r'}

// run reads until the end marker or an error. A write error to w stops
// writing but not reading: the sender's data must be consumed to its end.
func (d *dataReader) run() (werr error, rerr error) {
	for d.state != dsDone {
		if _, err := d.r.Peek(1); err != nil {
			return werr, err
		}
		buf, _ := d.r.Peek(d.r.Buffered())
		n, err := d.scan(buf)
		if err != nil && werr == nil {
			werr = err
		}
		d.r.Discard(n)
	}
	return werr, nil
}

// scan runs the state machine over buf and returns how many octets it
// consumed (all of buf, or up to the end marker).
func (d *dataReader) scan(buf []byte) (int, error) {
	var werr error
	runStart := 0
	emit := func(b []byte) {
		if len(b) == 0 {
			return
		}
		d.size += int64(len(b))
		if d.tooBig {
			return
		}
		if d.max > 0 && d.size > d.max {
			d.tooBig = true
			return
		}
		if werr == nil {
			if _, err := d.w.Write(b); err != nil {
				werr = err
			}
		}
	}
	i := 0
	for i < len(buf) {
		c := buf[i]
		switch d.state {
		case dsData:
			// Fast path: skip to the next octet that matters.
			j := indexCRLFNul(buf[i:], !d.bareLF, !d.nul)
			if j < 0 {
				i = len(buf)
				continue
			}
			i += j
			c = buf[i]
			switch c {
			case '\r':
				d.state = dsCR
			case '\n':
				d.bareLF = true
			case 0:
				d.nul = true
			}
			i++
			continue
		case dsBOL:
			switch c {
			case '.':
				emit(buf[runStart:i])
				runStart = i + 1 // the dot is stuffing or part of the end marker
				d.state = dsDot
			case '\r':
				d.state = dsCR
			case '\n':
				d.bareLF = true
				d.state = dsData
			case 0:
				d.nul = true
				d.state = dsData
			default:
				d.state = dsData
			}
			i++
		case dsDot:
			switch c {
			case '\r':
				runStart = i + 1 // withhold the CR until we know what follows
				d.state = dsDotCR
				i++
			default:
				// The dot was stuffing; c is content read as inside a line.
				d.state = dsData
				if c == '\n' {
					d.bareLF = true
					i++
				} else if c == 0 {
					d.nul = true
					i++
				}
				// '.' and other octets: the dsData fast path handles them.
			}
		case dsDotCR:
			if c == '\n' {
				d.state = dsDone
				return i + 1, werr
			}
			// A bare CR after a stuffed dot: emit the withheld CR.
			d.bareCR = true
			emit(crOnly)
			runStart = i
			d.state = dsData
			if c == '\r' {
				d.state = dsCR
				i++
			}
		case dsCR:
			switch c {
			case '\n':
				d.state = dsBOL
			case '\r':
				d.bareCR = true // the previous CR; stay in dsCR
			default:
				d.bareCR = true
				if c == 0 {
					d.nul = true
				}
				d.state = dsData
			}
			i++
		}
	}
	emit(buf[runStart:])
	return len(buf), werr
}

// indexCRLFNul is bytes.IndexAny(b, "\r\n\x00") done as up to three
// bytes.IndexByte, each over what the one before left: those run on
// vector instructions, IndexAny's set test an octet at a time (the DATA
// reader's scan was 2% of a relayed message's CPU). LF and NUL are looked
// for only while they still matter (lf, nul: the message has none yet;
// one is enough to refuse it): each call scans the rest for CR, so
// looking again for octets that come often would make the scan of a
// hostile message (all NUL, all LF) quadratic.
func indexCRLFNul(b []byte, lf, nul bool) int {
	j := bytes.IndexByte(b, '\r')
	seg := b
	if j >= 0 {
		seg = b[:j]
	}
	if lf {
		if k := bytes.IndexByte(seg, '\n'); k >= 0 {
			seg, j = seg[:k], k
		}
	}
	if nul {
		if k := bytes.IndexByte(seg, 0); k >= 0 {
			j = k
		}
	}
	return j
}
