package checks

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// fromDomainsRef is FromDomains written over HeaderFields, the split the
// rules' header() and the DKIM verifier read: DMARC must check the From
// fields every other reader of the message sees, no fewer.
func fromDomainsRef(header []byte) ([]string, int, error) {
	var domains []string
	n, fields := 0, 0
	for _, f := range HeaderFields(header) {
		if !strings.EqualFold(f.Name, "From") {
			continue
		}
		fields++
		v := strings.TrimSpace(f.Value)
		addrs, err := fromParser.ParseList(strings.ToValidUTF8(v, "\uFFFD"))
		var ds []string
		if err == nil {
			ds, err = addrDomains(addrs)
		}
		if err != nil { // read loosely, as FromDomains does
			if addrs = looseAddresses(v); addrs == nil {
				return nil, 0, fmt.Errorf("From field %q: %v", f.Value, err)
			}
			if ds, err = addrDomains(addrs); err != nil {
				return nil, 0, err
			}
		}
		n += len(addrs)
		for _, d := range ds {
			if !slices.Contains(domains, d) {
				domains = append(domains, d)
			}
		}
	}
	if fields == 0 {
		return nil, 0, errors.New("no From field")
	}
	return domains, n, nil
}

// fromHeaderCases are headers where finding the From fields could go
// wrong: folding, line endings, lines that are not fields, "From :".
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

func TestFromDomainsMatchesHeaderFields(t *testing.T) {
	for _, c := range fromHeaderCases {
		checkFromDomains(t, []byte(c))
	}
}

func checkFromDomains(t *testing.T, hdr []byte) {
	t.Helper()
	orig := bytes.Clone(hdr)
	ds, n, err := FromDomains(hdr)
	wds, wn, werr := fromDomainsRef(hdr)
	if (err == nil) != (werr == nil) || err == nil && (!slices.Equal(ds, wds) || n != wn) {
		t.Errorf("FromDomains(%q) = %q, %d, %v; over HeaderFields %q, %d, %v", hdr, ds, n, err, wds, wn, werr)
	}
	if !bytes.Equal(hdr, orig) {
		t.Errorf("FromDomains modified its input: %q, was %q", hdr, orig)
	}
}

func FuzzFromDomainsMatchesHeaderFields(f *testing.F) {
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
