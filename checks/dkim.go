package checks

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-msgauth/dkim"
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
// algorithms of RFC 8301 and RFC 8463) with go-msgauth/dkim; the key
// lookups go through our Resolver.
//
// Library limits that shaped this code: dkim.Verification carries neither
// the selector, the algorithm nor b=, so we parse the DKIM-Signature fields
// of the header ourselves (the library returns its verifications in header
// order, which lets us pair them); the lookup function has no context, so
// it is a closure over the message's context; the clock of the x=
// expiry check is the library's own (wall clock).
type DKIM struct {
	res     *Resolver
	max     int
	timeout time.Duration
}

// NewDKIM returns the DKIM check (cfg defaults applied).
func NewDKIM(cfg DKIMConfig, res *Resolver) *DKIM {
	cfg.setDefaults()
	return &DKIM{res: res, max: cfg.MaxSignatures, timeout: cfg.Timeout}
}

// Verify reads the message (header and body, CRLF line endings) once from
// msg and verifies its signatures, up to the configured bound. Only the
// header is held in memory; the body is streamed through the hashes.
func (d *DKIM) Verify(ctx context.Context, msg io.Reader) DKIMResult {
	br := dkimReaders.Get().(*bufio.Reader)
	br.Reset(msg)
	defer func() {
		br.Reset(nil)
		dkimReaders.Put(br)
	}()
	hdr, err := readHeaderBlock(br)
	if err != nil {
		return DKIMResult{Err: fmt.Sprintf("dkim: %v", err)}
	}
	var sigs []DKIMSignature
	for _, f := range HeaderFields(hdr) {
		if !strings.EqualFold(f.Name, "DKIM-Signature") {
			continue
		}
		tags := parseTagList(f.Value)
		s := DKIMSignature{
			Domain:    strings.ToLower(tags["d"]),
			Selector:  tags["s"],
			Algorithm: strings.ToLower(tags["a"]),
			BPrefix:   tags["b"],
		}
		s.Identifier = tags["i"]
		if s.Identifier == "" && s.Domain != "" {
			s.Identifier = "@" + s.Domain
		}
		sigs = append(sigs, s)
	}
	if len(sigs) == 0 {
		return DKIMResult{}
	}
	shortenBPrefixes(sigs)

	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	verifs, err := dkim.VerifyWithOptions(&headerThenBody{hdr: hdr, body: br},
		&dkim.VerifyOptions{LookupTXT: d.res.TXTLookup(ctx), MaxVerifications: d.max})
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) && len(verifs) == 0 {
		// The message could not be read: nothing was verified.
		for i := range sigs {
			sigs[i].Result, sigs[i].Reason = DKIMTempError, err.Error()
		}
		return DKIMResult{Signatures: sigs, Err: err.Error()}
	}
	for i := range sigs {
		if i >= len(verifs) {
			sigs[i].Result = DKIMNeutral
			sigs[i].Reason = fmt.Sprintf("not verified: only the first %d signatures are", d.max)
			continue
		}
		v := verifs[i]
		if v.Domain != "" {
			sigs[i].Domain = strings.ToLower(v.Domain)
		}
		if v.Identifier != "" {
			sigs[i].Identifier = v.Identifier
		}
		switch e := v.Err; {
		case e == nil:
			sigs[i].Result = DKIMPass
		case dkim.IsTempFail(e):
			sigs[i].Result, sigs[i].Reason = DKIMTempError, e.Error()
		case dkim.IsPermFail(e):
			sigs[i].Result, sigs[i].Reason = DKIMPermError, e.Error()
		default:
			sigs[i].Result, sigs[i].Reason = DKIMFail, e.Error()
		}
	}
	r := DKIMResult{Signatures: sigs}
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		r.Err = err.Error()
	}
	return r
}

// dkimReaders are the 64 KiB read buffers of Verify, reused: a gateway
// verifies every message, and a fresh buffer each time was a third of all
// the bytes it allocated (make bench profile).
var dkimReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}

// headerThenBody gives the library the header already read, then the rest
// of the message. Its WriteTo streams from the pooled reader's buffer, so
// the library's io.Copy allocates no 32 KiB buffer of its own (as it would
// through io.MultiReader).
type headerThenBody struct {
	hdr  []byte
	body *bufio.Reader
}

func (h *headerThenBody) Read(p []byte) (int, error) {
	if len(h.hdr) > 0 {
		n := copy(p, h.hdr)
		h.hdr = h.hdr[n:]
		return n, nil
	}
	return h.body.Read(p)
}

func (h *headerThenBody) WriteTo(w io.Writer) (int64, error) {
	var total int64
	if len(h.hdr) > 0 {
		n, err := w.Write(h.hdr)
		total += int64(n)
		h.hdr = h.hdr[n:]
		if err != nil {
			return total, err
		}
	}
	n, err := h.body.WriteTo(w)
	return total + n, err
}

// shortenBPrefixes cuts each b= to 8 characters, or more where two
// signatures of the message would otherwise share a prefix (RFC 6008
// section 4).
func shortenBPrefixes(sigs []DKIMSignature) {
	full := make([]string, len(sigs))
	for i := range sigs {
		full[i] = sigs[i].BPrefix
	}
	for i := range sigs {
		n := 8
		for j := range sigs {
			if j == i || full[j] == full[i] {
				continue
			}
			for n < len(full[i]) && n <= len(full[j]) && full[i][:n] == full[j][:n] {
				n++
			}
		}
		sigs[i].BPrefix = full[i][:min(n, len(full[i]))]
	}
}

// readHeaderBlock reads the header of a message up to and including the
// empty line that ends it (or to the end of the input for a message
// without a body).
func readHeaderBlock(br *bufio.Reader) ([]byte, error) {
	var hdr []byte
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A very long line: keep reading it.
			hdr = append(hdr, line...)
			continue
		}
		hdr = append(hdr, line...)
		if err == io.EOF {
			return hdr, nil
		}
		if err != nil {
			return nil, err
		}
		if string(line) == "\r\n" || string(line) == "\n" {
			return hdr, nil
		}
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
// without a colon are skipped; the empty line ends the block. DKIM, the
// stripping of forged Authentication-Results (through fieldEnd) and the
// rules' header() read fields through it; DMARC's From uses net/textproto.
func HeaderFields(hdr []byte) []HeaderField {
	var out []HeaderField
	for len(hdr) > 0 {
		end := fieldEnd(hdr)
		raw := hdr[:end]
		hdr = hdr[end:]
		line := string(raw)
		if line == "\r\n" || line == "\n" {
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" || name[0] == ' ' || name[0] == '\t' {
			continue
		}
		value = unfoldReplacer.Replace(value)
		out = append(out, HeaderField{Name: strings.TrimRight(name, " \t"), Value: value, Raw: raw})
	}
	return out
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
// without "=" is skipped.
func parseTagList(s string) map[string]string {
	tags := map[string]string{}
	for part := range strings.SplitSeq(s, ";") {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		if k == "" {
			continue
		}
		if _, dup := tags[k]; dup {
			continue
		}
		tags[k] = strings.Map(func(r rune) rune {
			if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
				return -1
			}
			return r
		}, v)
	}
	return tags
}

// unfoldReplacer removes line breaks from folded header values; built once
// (a replacer builds its lookup table on first use).
var unfoldReplacer = strings.NewReplacer("\r\n", "", "\n", "", "\r", "")
