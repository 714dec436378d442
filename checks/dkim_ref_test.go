package checks

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// The functions below are the DKIM wrapper's header parsing as it was
// before dkimSignatures and peekHeaderBlock: the new code must give the
// same answers.

var refUnfold = strings.NewReplacer("\r\n", "", "\n", "", "\r", "")

func refHeaderFields(hdr []byte) []HeaderField {
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
		value = refUnfold.Replace(value)
		out = append(out, HeaderField{Name: strings.TrimRight(name, " \t"), Value: value, Raw: raw})
	}
	return out
}

func refParseTagList(s string) map[string]string {
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

func refDKIMSignatures(hdr []byte) []DKIMSignature {
	var sigs []DKIMSignature
	for _, f := range refHeaderFields(hdr) {
		if !strings.EqualFold(f.Name, "DKIM-Signature") {
			continue
		}
		tags := refParseTagList(f.Value)
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
	if len(sigs) > 0 {
		refShortenBPrefixes(sigs)
	}
	return sigs
}

// refShortenBPrefixes is the first shortenBPrefixes: every value against
// every other (quadratic, but plainly what RFC 6008 section 4 asks).
func refShortenBPrefixes(sigs []DKIMSignature) {
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

func FuzzShortenBPrefixes(f *testing.F) {
	f.Add("abcdefghXYZ,abcdefghXQQ,zzzzzzzzzzzz,short")
	f.Add("aaaaaaaaaaaa,aaaaaaaaaaab,aaaaaaaaaaab,aaaaaaaaa,b")
	f.Fuzz(func(t *testing.T, list string) {
		var got, want []DKIMSignature
		for v := range strings.SplitSeq(list, ",") {
			got = append(got, DKIMSignature{BPrefix: v})
			want = append(want, DKIMSignature{BPrefix: v})
		}
		shortenBPrefixes(got)
		refShortenBPrefixes(want)
		for i := range got {
			if got[i].BPrefix != want[i].BPrefix {
				t.Fatalf("%q: prefix %d is %q, want %q", list, i, got[i].BPrefix, want[i].BPrefix)
			}
		}
	})
}

var dkimHeaderCases = []string{
	"",
	"\r\n",
	"DKIM-Signature: v=1; a=rsa-sha256; d=Example.COM; s=sel;\r\n\tb=abc\r\n def/ghi+jkl=;\r\n bh=xyz\r\n\r\n",
	"dkim-signature:d=a.example;b=ABCDEFGHIJ\r\nDKIM-Signature : d=b.example; b=ABCDEFGHXY; i=@b.example\r\n\r\n",
	"DKIM-Signature:\r\n",
	"DKIM-Signature: b=\r\n",
	"DKIM-Signature: b= a b c\r\n",
	"DKIM-Signature: b=\xff\xfeabcdefgh\r\n\r\n",
	"DKIM-Signature: b=ab\xe2\r\n\x80\x83cdefghij\r\n\r\n",
	"DKIM-Signature: b=abcdefg\xc3\xa9xyz\r\n\r\n",
	"DKIM-Signature: b=abcdefgh; b=zzz; d=x; d=y; D=z\r\n\r\n",
	"DKIM-\u017Fignature: d=longs.example\r\n\r\n",
	"\u212AIM-Signature: d=kelvin.example\r\n\r\n",
	" DKIM-Signature: d=leading.example\r\n\r\n",
	"DKIM-Signature\r\n : d=folded-name.example\r\n\r\n",
	"X: y\r\n\r\nDKIM-Signature: d=body.example\r\n",
	"DKIM-Signature: d=a.example; b=SAMEPREFIX1\r\nDKIM-Signature: d=a.example; b=SAMEPREFIX2\r\nDKIM-Signature: d=a.example; b=SAMEPREFIX1\r\n\r\n",
	"DKIM-Signature: d =\r\n a.example ; s = sel ; a = RSA-SHA256 ; i = user@a.example\r\n\r\n",
	"DKIM-Signature: \rd=cr.example\r\n\r\n",
	"DKIM-Signature: d\r=cr.example; s\n=x\r\n\r\n",
	"DKIM-Signature: ; ; =; d; dd=x; d==x\r\n\r\n",
	"Subject: a\nDKIM-Signature: d=lf.example; b=12345678\n\n",
	"DKIM-Signature: d=a.example; b=\t\r\n\t\r\n\r\n",
}

func checkDKIMSignatures(t *testing.T, hdr []byte) {
	t.Helper()
	got, want := dkimSignatures(hdr), refDKIMSignatures(hdr)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("dkimSignatures(%q) =\n%+v\nwas\n%+v", hdr, got, want)
	}
	gf, wf := HeaderFields(hdr), refHeaderFields(hdr)
	if !reflect.DeepEqual(gf, wf) {
		t.Errorf("HeaderFields(%q) =\n%q\nwas\n%q", hdr, gf, wf)
	}
}

func TestDKIMSignaturesMatchReference(t *testing.T) {
	for _, c := range dkimHeaderCases {
		checkDKIMSignatures(t, []byte(c))
	}
	for _, name := range []string{"two-signatures.eml", "three-signatures.eml", "simple.eml", "expired.eml"} {
		msg, err := os.ReadFile(filepath.Join(dkimDir, name))
		if err != nil {
			t.Fatal(err)
		}
		checkDKIMSignatures(t, msg)
	}
}

func FuzzDKIMSignatures(f *testing.F) {
	for _, c := range dkimHeaderCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, hdr []byte) {
		checkDKIMSignatures(t, hdr)
		var s string
		if i := bytes.IndexByte(hdr, 0); i >= 0 {
			s = string(hdr[i+1:])
		}
		if got, want := parseTagList(s), refParseTagList(s); !reflect.DeepEqual(got, want) {
			t.Errorf("parseTagList(%q) = %q, was %q", s, got, want)
		}
		v := strings.ReplaceAll(s, ";", "")
		if got, want := stripTagSpacePrefix(v, 8), refParseTagList("b=" + v)["b"]; got != want[:min(8, len(want))] {
			t.Errorf("stripTagSpacePrefix(%q) = %q, want %q", v, got, want)
		}
		checkPeekHeader(t, hdr)
	})
}

// checkPeekHeader compares peekHeaderBlock with readHeaderBlock over
// readers that return little at a time, with and without an error.
func checkPeekHeader(t *testing.T, msg []byte) {
	t.Helper()
	for _, size := range []int{16, 64 << 10} {
		for _, r := range []func() io.Reader{
			func() io.Reader { return bytes.NewReader(msg) },
			func() io.Reader { return iotest.OneByteReader(bytes.NewReader(msg)) },
			func() io.Reader { return iotest.HalfReader(bytes.NewReader(msg)) },
			func() io.Reader { return iotest.DataErrReader(bytes.NewReader(msg)) },
			func() io.Reader {
				return io.MultiReader(bytes.NewReader(msg[:len(msg)/2]), iotest.ErrReader(errors.New("disk on fire")))
			},
		} {
			br := bufio.NewReaderSize(r(), size)
			got, gerr := peekHeaderBlock(br)
			if errors.Is(gerr, bufio.ErrBufferFull) {
				if br.Buffered() != br.Size() {
					t.Errorf("ErrBufferFull with %d of %d buffered", br.Buffered(), br.Size())
				}
				continue
			}
			if gerr == io.EOF {
				gerr = nil
			}
			// Whatever follows the header must still be there to read.
			var gotRest []byte
			if gerr == nil {
				got = bytes.Clone(got)
				gotRest, _ = io.ReadAll(br)
			}
			br = bufio.NewReaderSize(r(), size)
			want, werr := readHeaderBlock(br)
			var wantRest []byte
			if werr == nil {
				wantRest, _ = io.ReadAll(br)
			}
			if !bytes.Equal(got, want) || (gerr == nil) != (werr == nil) || (gerr != nil && gerr.Error() != werr.Error()) {
				t.Fatalf("peekHeaderBlock(%q) = %q, %v; readHeaderBlock: %q, %v", msg, got, gerr, want, werr)
			}
			if gerr == nil && !bytes.Equal(gotRest, append(bytes.Clone(got), wantRest...)) {
				t.Fatalf("peekHeaderBlock(%q): %q left to read, want the header and %q", msg, gotRest, wantRest)
			}
		}
	}
}

func TestPeekHeaderBlock(t *testing.T) {
	for _, c := range append(dkimHeaderCases, "From: a\r\n\r\nbody\r\n", "no end of header", "From: a\r\nTo: b",
		strings.Repeat("X-Long: "+strings.Repeat("y", 70)+"\r\n", 1000)+"\r\nbody") {
		checkPeekHeader(t, []byte(c))
	}
}

// TestDKIMLongHeader verifies a message whose header is longer than the
// read buffer, which takes the copying path.
func TestDKIMLongHeader(t *testing.T) {
	srv := startDNS(t, "dkim/keys.zone")
	d := NewDKIM(DKIMConfig{}, newResolver(t, srv, 0))
	msg, err := os.ReadFile(filepath.Join(dkimDir, "simple.eml"))
	if err != nil {
		t.Fatal(err)
	}
	long := append([]byte(strings.Repeat("Received: from x by y; "+strings.Repeat("z", 60)+"\r\n", 1200)), msg...)
	if len(long) < 70<<10 {
		t.Fatalf("header of %d bytes only", len(long))
	}
	for _, m := range [][]byte{msg, long} {
		res := d.Verify(context.Background(), bytes.NewReader(m))
		checkSigs(t, res, []wantSig{{"rsa", "rsa-sha256", DKIMPass, ""}})
		res = d.Verify(context.Background(), iotest.HalfReader(bytes.NewReader(m)))
		checkSigs(t, res, []wantSig{{"rsa", "rsa-sha256", DKIMPass, ""}})
	}
	// A read error inside the long header.
	res := d.Verify(context.Background(), io.MultiReader(bytes.NewReader(long[:66<<10]), iotest.ErrReader(errors.New("disk on fire"))))
	if len(res.Signatures) != 0 || !strings.Contains(res.Err, "disk on fire") {
		t.Errorf("read error in the header: %+v", res)
	}
}
