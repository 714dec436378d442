package checks

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// DKIMStatus is a DKIM result as RFC 8601 section 2.7.1 names it.
type DKIMStatus string

// DKIM results (RFC 8601 section 2.7.1).
const (
	DKIMNone      DKIMStatus = "none"      // no signature
	DKIMPass      DKIMStatus = "pass"      // the signature verified
	DKIMFail      DKIMStatus = "fail"      // it did not verify (body hash, signature)
	DKIMNeutral   DKIMStatus = "neutral"   // not verified (over the configured bound)
	DKIMTempError DKIMStatus = "temperror" // key lookup failed for now (timeout, SERVFAIL)
	DKIMPermError DKIMStatus = "permerror" // bad signature, no key, revoked key, expired
)

// DKIMSignature is the result of one DKIM-Signature field.
type DKIMSignature struct {
	Domain     string     `json:"domain,omitempty"`     // d= (SDID)
	Selector   string     `json:"selector,omitempty"`   // s=
	Algorithm  string     `json:"algorithm,omitempty"`  // a=, e.g. "rsa-sha256", "ed25519-sha256"
	Identifier string     `json:"identifier,omitempty"` // i= (AUID), "@"+d= when absent
	Result     DKIMStatus `json:"result,omitempty"`
	Reason     string     `json:"reason,omitempty"` // why it is not pass
	// BPrefix is the start of b=, enough to tell the message's signatures
	// apart (at least 8 characters), for header.b (RFC 6008).
	BPrefix string `json:"b_prefix,omitempty"`
}

// DKIMResult is the outcome of verifying a message: one entry per
// DKIM-Signature field, in header order.
type DKIMResult struct {
	Signatures []DKIMSignature `json:"signatures,omitempty"`
	// Err is set when the message itself could not be read.
	Err string `json:"err,omitempty"`
}

// Pass reports whether at least one signature verified.
func (r DKIMResult) Pass() bool {
	for _, s := range r.Signatures {
		if s.Result == DKIMPass {
			return true
		}
	}
	return false
}

// DKIM verifies DKIM signatures (RFC 6376, with the RSA and Ed25519
// algorithms of RFC 8301 and RFC 8463) with our verifier (dkimverify.go,
// which says why it is not go-msgauth's); the key lookups go through our
// Resolver, and parsed keys are kept by their record's text.
type DKIM struct {
	res     *Resolver
	max     int
	timeout time.Duration
	keys    textCache[*dkimKey]
	now     func() time.Time // the clock of the x= expiry check
}

// NewDKIM returns the DKIM check (cfg defaults applied).
func NewDKIM(cfg DKIMConfig, res *Resolver) *DKIM {
	cfg.setDefaults()
	return &DKIM{res: res, max: cfg.MaxSignatures, timeout: cfg.Timeout, now: time.Now}
}

// Verify reads the message (header and body, CRLF line endings) once from
// msg and verifies its signatures, up to the configured bound. Only the
// header is held in memory; the body is streamed through the hashes.
//
// The header is found in the pooled read buffer without being copied out
// of it and is hashed there; a header longer than the buffer is copied
// out instead (readHeaderBlock). A message that ends without the empty
// line after its header has an empty body.
func (d *DKIM) Verify(ctx context.Context, msg io.Reader) DKIMResult {
	br := dkimReaders.Get().(*bufio.Reader)
	br.Reset(msg)
	defer func() {
		br.Reset(nil)
		dkimReaders.Put(br)
	}()
	hdr, err := peekHeaderBlock(br)
	peeked := true
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		if hdr, err = readHeaderBlock(br); err != nil {
			return DKIMResult{Err: fmt.Sprintf("dkim: %v", err)}
		}
		peeked = false
	case err != nil && err != io.EOF:
		return DKIMResult{Err: fmt.Sprintf("dkim: %v", err)}
	}
	sigs := dkimSignatures(hdr)
	if len(sigs) == 0 {
		return DKIMResult{}
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	outs, err := d.verifyFields(ctx, hdr, &afterHeader{br: br, skip: len(hdr) * btoi(peeked)}, d.max)
	if err != nil {
		// The message could not be read: nothing was verified.
		for i := range sigs {
			sigs[i].Result, sigs[i].Reason = DKIMTempError, "dkim: "+err.Error()
		}
		return DKIMResult{Signatures: boundSigs(sigs, d.max), Err: "dkim: " + err.Error()}
	}
	for i := range sigs {
		if i >= len(outs) {
			sigs[i].Result = DKIMNeutral
			sigs[i].Reason = fmt.Sprintf("not verified: only the first %d signatures are", d.max)
			continue
		}
		// What was verified is reported (d= with all white space gone).
		if o := outs[i]; o.domain != "" {
			sigs[i].Domain = strings.ToLower(o.domain)
		}
		if o := outs[i]; o.identifier != "" {
			sigs[i].Identifier = o.identifier
		}
		switch e := outs[i].err; {
		case e == nil:
			sigs[i].Result = DKIMPass
		case e.kind == dkimTemporary:
			sigs[i].Result, sigs[i].Reason = DKIMTempError, e.Error()
		case e.kind == dkimPermanent:
			sigs[i].Result, sigs[i].Reason = DKIMPermError, e.Error()
		default:
			sigs[i].Result, sigs[i].Reason = DKIMFail, e.Error()
		}
	}
	return DKIMResult{Signatures: boundSigs(sigs, d.max)}
}

// boundSigs reports the signatures past the bound as one: the first of
// them, its reason saying how many were not verified. A sender chooses how
// many DKIM-Signature fields it sends, and each listed would be a result
// in our Authentication-Results field and in the decision line.
func boundSigs(sigs []DKIMSignature, max int) []DKIMSignature {
	if max < 0 || len(sigs) <= max+1 {
		return sigs
	}
	sigs[max].Reason += fmt.Sprintf(" (%d signatures past the bound, not verified)", len(sigs)-max)
	return sigs[:max+1]
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// afterHeader reads the body: what follows the header still in br's
// buffer (skip octets of it), then the rest. Its WriteTo streams from the
// pooled reader's buffer, so copying the body allocates no buffer.
type afterHeader struct {
	br   *bufio.Reader
	skip int
}

func (a *afterHeader) discard() error {
	if a.skip > 0 {
		_, err := a.br.Discard(a.skip)
		a.skip = 0
		return err
	}
	return nil
}

func (a *afterHeader) Read(p []byte) (int, error) {
	if err := a.discard(); err != nil {
		return 0, err
	}
	return a.br.Read(p)
}

func (a *afterHeader) WriteTo(w io.Writer) (int64, error) {
	if err := a.discard(); err != nil {
		return 0, err
	}
	return a.br.WriteTo(w)
}

// dkimReaders are the 64 KiB read buffers of Verify, reused: a gateway
// verifies every message, and a fresh buffer each time was a third of all
// the bytes it allocated (make bench profile). The header is hashed where
// it lies in the buffer; the body reaches the hashes as
// bufio.Reader.WriteTo hands it over: a message held in memory (a
// bytes.Reader) in one write after what is buffered, one held in a file
// in writes of the buffer's size.
var dkimReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}

// dkimSignatures returns the DKIM-Signature fields of a header block,
// found as HeaderFields finds fields (only those are unfolded), in header
// order, with the tags we report parsed and the b= prefixes shortened.
func dkimSignatures(hdr []byte) []DKIMSignature {
	var sigs []DKIMSignature
	var bs []string // b= of each signature, white space not yet removed
	for raw := range rawFields(hdr) {
		colon := bytes.IndexByte(raw, ':')
		if colon <= 0 || raw[0] == ' ' || raw[0] == '\t' ||
			!bytes.EqualFold(bytes.TrimRight(raw[:colon], " \t"), []byte("DKIM-Signature")) {
			continue
		}
		var s DKIMSignature
		var b string
		var seen [5]bool // d s a i b: the first of a repeated tag counts
		eachTag(unfold(raw[colon+1:]), func(k, v string) {
			i := strings.Index("dsaib", k)
			if len(k) != 1 || i < 0 || seen[i] {
				return
			}
			seen[i] = true
			switch k {
			case "d":
				s.Domain = strings.ToLower(stripTagSpace(v))
			case "s":
				s.Selector = stripTagSpace(v)
			case "a":
				s.Algorithm = strings.ToLower(stripTagSpace(v))
			case "i":
				s.Identifier = stripTagSpace(v)
			case "b":
				b = v
			}
		})
		if s.Identifier == "" && s.Domain != "" {
			s.Identifier = "@" + s.Domain
		}
		sigs = append(sigs, s)
		bs = append(bs, b)
	}
	if len(sigs) == 1 {
		// One signature: its prefix is its first 8 characters.
		sigs[0].BPrefix = stripTagSpacePrefix(bs[0], 8)
		return sigs
	}
	for i, b := range bs {
		sigs[i].BPrefix = stripTagSpace(b)
	}
	shortenBPrefixes(sigs)
	return sigs
}

// shortenBPrefixes cuts each b= to 8 characters, or more where two
// signatures of the message would otherwise share a prefix (RFC 6008
// section 4).
//
// A value's longest common prefix with any other is its longest with a
// neighbour in sorted order, so this takes one sort and one pass (many
// signature fields cost no more than their length).
func shortenBPrefixes(sigs []DKIMSignature) {
	distinct := make([]string, len(sigs))
	for i := range sigs {
		distinct[i] = sigs[i].BPrefix
	}
	slices.Sort(distinct)
	distinct = slices.Compact(distinct)
	keep := make(map[string]int, len(distinct))
	for k, v := range distinct {
		n := 8
		if k > 0 {
			n = max(n, commonPrefix(distinct[k-1], v)+1)
		}
		if k+1 < len(distinct) {
			n = max(n, commonPrefix(v, distinct[k+1])+1)
		}
		keep[v] = min(n, len(v))
	}
	for i := range sigs {
		sigs[i].BPrefix = sigs[i].BPrefix[:keep[sigs[i].BPrefix]]
	}
}

func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// peekHeaderBlock returns what readHeaderBlock would, without consuming it:
// a slice of br's buffer, valid until br is next read, and the whole
// message is still there to read from br. Read errors are those
// readHeaderBlock would return; one that comes after the header is left
// for the next read from br. When the header does not fit in the buffer,
// it returns bufio.ErrBufferFull, nothing consumed.
func peekHeaderBlock(br *bufio.Reader) ([]byte, error) {
	scanned := 0 // the complete lines looked at
	for {
		buf, _ := br.Peek(br.Buffered())
		for {
			i := bytes.IndexByte(buf[scanned:], '\n')
			if i < 0 {
				break
			}
			line := buf[scanned : scanned+i+1]
			scanned += i + 1
			if isBlankLine(line) {
				return buf[:scanned], nil
			}
		}
		if len(buf) == br.Size() {
			return nil, bufio.ErrBufferFull
		}
		// One more read into the buffer. An error comes back only once
		// nothing more was read: the header ends with the message (io.EOF)
		// or cannot be read.
		if all, err := br.Peek(len(buf) + 1); err != nil {
			if err == io.EOF {
				return all, err
			}
			return nil, err
		}
	}
}

// readHeaderBlock reads the header of a message up to and including the
// empty line that ends it (or to the end of the input for a message
// without a body).
func readHeaderBlock(br *bufio.Reader) ([]byte, error) {
	var hdr []byte
	midLine := false // the last piece read ended inside a line
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A very long line: keep reading it.
			hdr = append(hdr, line...)
			midLine = true
			continue
		}
		hdr = append(hdr, line...)
		if err == io.EOF {
			return hdr, nil
		}
		if err != nil {
			return nil, err
		}
		// Only a whole line can be the empty line: the end of a line
		// longer than the buffer is not (it would end the header early,
		// and what follows would be hashed as body though the reader of
		// the message sees header fields).
		if !midLine && isBlankLine(line) {
			return hdr, nil
		}
		midLine = false
	}
}

// HeaderField is one field of a header block, unfolded.
type HeaderField struct {
	Name  string // as written, without surrounding white space
	Value string // after the colon, continuation lines joined, CRLFs removed
	Raw   []byte // the field's bytes, continuation lines and line endings included
}

// HeaderFields splits a raw header block into fields (RFC 5322 section
// 2.2, folding per section 2.2.3). Lines before the first field and lines
// without a colon are skipped; the empty line ends the block. The
// stripping of forged Authentication-Results (through fieldEnd) and the
// rules' header() read fields through it; DKIM (dkimSignatures) and DMARC
// (FromDomains) find their fields the same way, so that no reader of the
// message sees a field they skip.
func HeaderFields(hdr []byte) []HeaderField {
	var out []HeaderField
	for raw := range rawFields(hdr) {
		colon := bytes.IndexByte(raw, ':')
		if colon <= 0 || raw[0] == ' ' || raw[0] == '\t' {
			continue
		}
		// One string holds the name, the colon and the unfolded value.
		name := bytes.TrimRight(raw[:colon], " \t")
		var sb strings.Builder
		sb.Grow(len(name) + 1 + len(raw) - colon - 1)
		sb.Write(name)
		sb.WriteByte(':')
		writeUnfolded(&sb, raw[colon+1:])
		nv := sb.String()
		out = append(out, HeaderField{Name: nv[:len(name)], Value: nv[len(name)+1:], Raw: raw})
	}
	return out
}

// HeaderValues returns the unfolded, trimmed values of the first max
// fields named name (case-insensitive, as strings.ToLower compares), in
// order: HeaderFields' values of those fields, without making a string of
// every other field.
func HeaderValues(hdr []byte, name string, max int) []string {
	var out []string
	lower := ""
	ascii := isASCII(name)
	for raw := range rawFields(hdr) {
		colon := bytes.IndexByte(raw, ':')
		if colon <= 0 || raw[0] == ' ' || raw[0] == '\t' {
			continue
		}
		n := bytes.TrimRight(raw[:colon], " \t")
		if ascii && asciiBytes(n) {
			if !asciiEqualFold(n, name) {
				continue
			}
		} else {
			if lower == "" {
				lower = strings.ToLower(name)
			}
			if strings.ToLower(string(n)) != lower {
				continue
			}
		}
		if len(out) == max {
			break
		}
		var sb strings.Builder
		sb.Grow(len(raw) - colon - 1)
		writeUnfolded(&sb, raw[colon+1:])
		out = append(out, strings.TrimSpace(sb.String()))
	}
	return out
}

// asciiBytes reports whether b is all ASCII.
func asciiBytes(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// asciiEqualFold reports whether the ASCII b and s are equal but for the
// case of letters.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// rawFields yields the fields of a header block, each with its
// continuation lines and line endings, up to the empty line that ends the
// block. Lines before the first field come as fields of their own.
func rawFields(hdr []byte) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for len(hdr) > 0 {
			end := fieldEnd(hdr)
			raw := hdr[:end]
			hdr = hdr[end:]
			if isBlankLine(raw) || !yield(raw) {
				return
			}
		}
	}
}

// fieldEnd returns the length of the field at the start of hdr: its first
// line and every continuation line (starting with SP or HTAB).
func fieldEnd(hdr []byte) int {
	nl := bytes.IndexByte(hdr, '\n')
	if nl < 0 {
		return len(hdr)
	}
	i := nl + 1
	if isBlankLine(hdr[:i]) {
		return i
	}
	for i < len(hdr) && (hdr[i] == ' ' || hdr[i] == '\t') {
		nl = bytes.IndexByte(hdr[i:], '\n')
		if nl < 0 {
			return len(hdr)
		}
		i += nl + 1
	}
	return i
}

func isBlankLine(l []byte) bool {
	return string(l) == "\r\n" || string(l) == "\n"
}

// parseTagList parses a DKIM tag-list (RFC 6376 section 3.2): "tag=value"
// separated by ";", white space around tags and values ignored, and all
// white space removed from values (the tags we read, d= s= a= b= i=, have
// no meaningful white space). A repeated tag keeps its first value; a part
// without "=" is skipped. dkimSignatures reads the same way, without the
// map.
func parseTagList(s string) map[string]string {
	tags := map[string]string{}
	eachTag(s, func(k, v string) {
		if _, dup := tags[k]; !dup {
			tags[k] = stripTagSpace(v)
		}
	})
	return tags
}

// eachTag calls fn with each tag of a tag-list and its value as written
// (see parseTagList), in order, repeated tags included.
func eachTag(s string, fn func(k, v string)) {
	for part := range strings.SplitSeq(s, ";") {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		if k = strings.TrimSpace(k); k != "" {
			fn(k, v)
		}
	}
}

// stripTagSpace removes SP, HTAB, CR and LF from a tag value. Like every
// strings.Map, it also turns each invalid UTF-8 byte into U+FFFD.
func stripTagSpace(v string) string {
	return strings.Map(dropTagSpace, v)
}

func dropTagSpace(r rune) rune {
	if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
		return -1
	}
	return r
}

// stripTagSpacePrefix returns stripTagSpace(v) cut to n bytes (or fewer
// when shorter), without mapping the rest of v.
func stripTagSpacePrefix(v string, n int) string {
	var buf [16]byte
	out := buf[:0]
	for _, r := range v {
		if len(out) >= n {
			break
		}
		if dropTagSpace(r) < 0 {
			continue
		}
		// An invalid byte comes as utf8.RuneError, written as U+FFFD as
		// strings.Map writes it.
		out = utf8.AppendRune(out, r)
	}
	return string(out[:min(n, len(out))])
}

// unfold returns b with every CR and LF removed: a folded field value as
// one line.
func unfold(b []byte) string {
	var sb strings.Builder
	sb.Grow(len(b))
	writeUnfolded(&sb, b)
	return sb.String()
}

func writeUnfolded(sb *strings.Builder, b []byte) {
	for len(b) > 0 {
		i := bytes.IndexAny(b, "\r\n")
		if i < 0 {
			sb.Write(b)
			return
		}
		sb.Write(b[:i])
		b = b[i+1:]
	}
}
