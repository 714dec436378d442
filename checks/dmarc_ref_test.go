package checks

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// fromDomainsMIME is FromDomains as it was before fromFieldValues: every
// header through net/textproto's ReadMIMEHeader. The fast path must give
// the same answers.
func fromDomainsMIME(header []byte) ([]string, int, error) {
	froms, err := fromValuesMIME(header)
	if err != nil {
		return nil, 0, err
	}
	return domainsOfFroms(froms)
}

// fromHeaderCases are headers where reading From by hand could differ
// from ReadMIMEHeader.
var fromHeaderCases = []string{
	"",
	"\r\n",
	"\r\n\r\n",
	"\n\n",
	"From: a@x.example",
	"From: a@x.example\r",
	"From: a@x.example\r\r\n\r\n",
	"From: a@x.example\r\n",
	"From: a@x.example\n",
	"From: a@x.example\r\n\n",
	"From: a@x.example\r\n   ",
	"From: a@x.example\r\n \r\n\r\n",
	"From: a@x.example\r\n\t\r\n b@y.example\r\n\r\n",
	"from: a@x.example\r\nFROM: b@y.example\r\nfRoM:c@z.example\r\n\r\n",
	"From : a@x.example\r\n\r\n",
	"From  :a@x.example\r\nFrom: b@y.example\r\n\r\n",
	" From: a@x.example\r\n\r\n",
	"\tFrom: a@x.example\r\n\r\n",
	"From:\r\n a@x.example\r\n\r\n",
	"From:   \r\n \t a@x.example  \r\n\t, b@y.example\t\r\n\r\n",
	"From: \"A\r\n B\" <a@x.example>\r\n\r\n",
	"Subject: hi\r\nFrom: a@x.example\r\n\r\nFrom: b@y.example\r\n\r\n",
	"Subject: hi\r\n\r\nFrom: a@x.example\r\n\r\n",
	"Received from x\r\nFrom: a@x.example\r\n\r\n",
	"From: a@x.example\r\nReceived from x\r\nFrom: b@y.example\r\n\r\n",
	":x\r\nFrom: a@x.example\r\n\r\n",
	"From: a@x.example\r\n:x\r\n\r\n",
	"X-Bad\x01: y\r\nFrom: a@x.example\r\n\r\n",
	"From: a@x.example\r\nX-Bad\x01: y\r\nFrom: b@y.example\r\n\r\n",
	"From: a@x.example\r\nSubject: a\x00b\r\nFrom: b@y.example\r\n\r\n",
	"Subject: a\x7fb\r\nFrom: b@y.example\r\n\r\n",
	"Subject: a\rb\r\nFrom: b@y.example\r\n\r\n",
	"From: a@x.example\r\nSubject: x\r\n a\rb\r\n\r\n",
	"From: J\xc3\xb6rg <j@x.example>\r\n\r\n",
	"Fr\xc3\xb6m: j@x.example\r\n\r\n",
	"From: a@x.example\r\n\xc3\xb6: y\r\n\r\n",
	"X Y: z\r\nFrom: a@x.example\r\n\r\n",
	"1From: a@x.example\r\n-: b\r\nFrom: c@y.example\r\n\r\n",
	"From: " + strings.Repeat("x", 5000) + "@x.example\r\n\r\n",
	" " + strings.Repeat("x", 100) + "\r\nFrom: a@x.example\r\n\r\n",
	" x\r\nFrom: a@x.example\r\n\r\n",
	"Subject: x\r\n\r\n",
	"From: \r\n\r\n",
	"From: \"Test User\"\r\n\r\n",
	"From: a@x.example,\r\n b@y.example\r\n\r\n",
	"From: a@x.example\r\n\r",
	"From: a@x.example\n\r\n",
	"From: a@x.example\r\n\r\nbody",
	"From: <@x.example:a@y.example>\r\n\r\n",
	"From: a@x.example.\r\n\r\n",
	"From: a@.\r\n\r\n",
}

func TestFromFieldValuesMatchesMIME(t *testing.T) {
	fast := 0
	for _, c := range fromHeaderCases {
		checkFromDomains(t, []byte(c))
		if _, ok := fromFieldValues([]byte(c), nil); ok {
			fast++
		}
	}
	if fast < len(fromHeaderCases)/2 {
		t.Errorf("only %d of %d cases on the fast path", fast, len(fromHeaderCases))
	}
}

func checkFromDomains(t *testing.T, hdr []byte) {
	t.Helper()
	orig := bytes.Clone(hdr)
	ds, n, err := FromDomains(hdr)
	wds, wn, werr := fromDomainsMIME(hdr)
	if fmt.Sprint(ds) != fmt.Sprint(wds) || n != wn || fmt.Sprint(err) != fmt.Sprint(werr) {
		t.Errorf("FromDomains(%q) = %q, %d, %v; ReadMIMEHeader gives %q, %d, %v", hdr, ds, n, err, wds, wn, werr)
	}
	if vs, ok := fromFieldValues(hdr, nil); ok {
		want, werr := fromValuesMIME(hdr)
		if werr != nil || !slices.Equal(vs, want) {
			t.Errorf("fromFieldValues(%q) = %q; ReadMIMEHeader gives %q, %v", hdr, vs, want, werr)
		}
	}
	if !bytes.Equal(hdr, orig) {
		t.Errorf("FromDomains modified its input: %q, was %q", hdr, orig)
	}
}

func FuzzFromFieldValues(f *testing.F) {
	for _, c := range fromHeaderCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, hdr []byte) {
		checkFromDomains(t, hdr)
	})
}

// refDMARCVersion is the regular expression isDMARCRecord replaced.
var refDMARCVersion = regexp.MustCompile(`^[ \t]*v[ \t]*=[ \t]*DMARC1[ \t]*(;|$)`)

var dmarcRecordCases = []string{
	"", "v=DMARC1", "v=DMARC1;", " \tv \t= \tDMARC1 \t; p=none", "v=DMARC1 p=none", "v=DMARC10",
	"v=dmarc1", "V=DMARC1", "v==DMARC1", "v=DMARC1\t", "v=DMARC1 ", "\nv=DMARC1", "v=DMARC1\n",
	"v=DMARC1;p=reject", "xv=DMARC1", "v=DMARC", "v", "v=", " ", "v=DMARC1 ;", "v=DMARC1 x;",
}

func TestIsDMARCRecord(t *testing.T) {
	for _, c := range dmarcRecordCases {
		if got, want := isDMARCRecord(c), refDMARCVersion.MatchString(c); got != want {
			t.Errorf("isDMARCRecord(%q) = %v, want %v", c, got, want)
		}
	}
}

func FuzzIsDMARCRecord(f *testing.F) {
	for _, c := range dmarcRecordCases {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := isDMARCRecord(s), refDMARCVersion.MatchString(s); got != want {
			t.Errorf("isDMARCRecord(%q) = %v, want %v", s, got, want)
		}
	})
}

func FuzzValidFieldValue(f *testing.F) {
	f.Add([]byte("abc\tdef ghijklmnop\x7f"), 0)
	f.Add([]byte("\x80\x9f\xff\x20\x7e\x1f"), 1)
	f.Fuzz(func(t *testing.T, b []byte, shift int) {
		if len(b) > 0 {
			shift = (shift%len(b) + len(b)) % len(b)
			b = append(b[shift:], b[:shift]...)
		}
		if got, want := validFieldValue(b), validValueBytes(b); got != want {
			t.Errorf("validFieldValue(%q) = %v, want %v", b, got, want)
		}
	})
}

func TestValidFieldValue(t *testing.T) {
	for c := range 256 {
		for pos := range 17 {
			for _, fill := range []byte{'a', 0x80, 0xff, '\t'} {
				b := bytes.Repeat([]byte{fill}, 17)
				b[pos] = byte(c)
				if got, want := validFieldValue(b), validValueBytes(b); got != want {
					t.Fatalf("validFieldValue(%q) = %v, want %v", b, got, want)
				}
			}
		}
	}
}
