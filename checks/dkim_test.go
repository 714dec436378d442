package checks

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

type wantSig struct {
	selector, algorithm string
	result              DKIMStatus
	reason              string // substring
}

func TestDKIM(t *testing.T) {
	srv := startDNS(t, "dkim/keys.zone")
	srv.Timeout("slow._domainkey.dkim.example")
	r := newResolver(t, srv, 300*time.Millisecond)
	d := NewDKIM(DKIMConfig{MaxSignatures: 2}, r)

	cases := []struct {
		file string
		want []wantSig
	}{
		{"unsigned.eml", nil},
		// Like RFC 8463 A.3: Ed25519 and RSA, both pass.
		{"two-signatures.eml", []wantSig{{"ed", "ed25519-sha256", DKIMPass, ""}, {"rsa", "rsa-sha256", DKIMPass, ""}}},
		// Like RFC 6376 A.2: simple/simple RSA.
		{"simple.eml", []wantSig{{"rsa", "rsa-sha256", DKIMPass, ""}}},
		{"tampered-body.eml", []wantSig{{"rsa", "rsa-sha256", DKIMFail, "body hash"}}},
		{"tampered-header.eml", []wantSig{{"rsa", "rsa-sha256", DKIMFail, "signature did not verify"}}},
		{"missing-key.eml", []wantSig{{"gone", "rsa-sha256", DKIMPermError, "no key"}}},
		{"revoked-key.eml", []wantSig{{"revoked", "rsa-sha256", DKIMPermError, "revoked"}}},
		{"expired.eml", []wantSig{{"rsa", "rsa-sha256", DKIMPermError, "expired"}}},
		{"slow-key.eml", []wantSig{{"slow", "rsa-sha256", DKIMTempError, "timeout"}}},
		// The bound is 2: the third signature (the first in the header
		// is the last added) is not verified.
		{"three-signatures.eml", []wantSig{{"rsa", "rsa-sha256", DKIMPass, ""}, {"ed", "ed25519-sha256", DKIMPass, ""},
			{"rsa", "rsa-sha256", DKIMNeutral, "only the first 2"}}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join(dkimDir, c.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			res := d.Verify(context.Background(), f)
			checkSigs(t, res, c.want)
		})
	}
}

func checkSigs(t *testing.T, res DKIMResult, want []wantSig) {
	t.Helper()
	if res.Err != "" {
		t.Errorf("Err = %q", res.Err)
	}
	if len(res.Signatures) != len(want) {
		t.Fatalf("%d signatures (%+v), want %d", len(res.Signatures), res.Signatures, len(want))
	}
	for i, w := range want {
		s := res.Signatures[i]
		if s.Selector != w.selector || s.Algorithm != w.algorithm || s.Result != w.result ||
			!strings.Contains(s.Reason, w.reason) {
			t.Errorf("signature %d: s=%s a=%s %s %q; want s=%s a=%s %s %q", i, s.Selector, s.Algorithm,
				s.Result, s.Reason, w.selector, w.algorithm, w.result, w.reason)
		}
		if w.result == DKIMPass && s.Reason != "" {
			t.Errorf("signature %d: pass with reason %q", i, s.Reason)
		}
		if len(s.BPrefix) < 8 || s.Domain == "" {
			t.Errorf("signature %d: b prefix %q, d=%q", i, s.BPrefix, s.Domain)
		}
	}
}

func TestDKIMBPrefix(t *testing.T) {
	sigs := []DKIMSignature{{BPrefix: "abcdefghXYZ"}, {BPrefix: "abcdefghXQQ"}, {BPrefix: "zzzzzzzzzzzz"}, {BPrefix: "short"}}
	shortenBPrefixes(sigs)
	got := []string{sigs[0].BPrefix, sigs[1].BPrefix, sigs[2].BPrefix, sigs[3].BPrefix}
	want := []string{"abcdefghXY", "abcdefghXQ", "zzzzzzzz", "short"}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("prefixes = %q, want %q", got, want)
			break
		}
	}
}

// TestDKIMReadsOnce checks the message is read once, as a stream: a reader
// that cannot be rewound and fails if read past its end.
func TestDKIMReadsOnce(t *testing.T) {
	srv := startDNS(t, "dkim/keys.zone")
	d := NewDKIM(DKIMConfig{}, newResolver(t, srv, 0))
	msg, err := os.ReadFile(filepath.Join(dkimDir, "two-signatures.eml"))
	if err != nil {
		t.Fatal(err)
	}
	cr := &countingReader{r: bytes.NewReader(msg)}
	res := d.Verify(context.Background(), cr)
	if !res.Pass() || cr.n != len(msg) {
		t.Errorf("pass %v, read %d of %d bytes", res.Pass(), cr.n, len(msg))
	}
	// A read error is reported, not a pass.
	res = d.Verify(context.Background(), &failingReader{data: msg, at: len(msg) - 10})
	for _, s := range res.Signatures {
		if s.Result == DKIMPass {
			t.Errorf("read error: signature %+v passed", s)
		}
	}
}

type countingReader struct {
	r interface{ Read([]byte) (int, error) }
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

type failingReader struct {
	data []byte
	at   int
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.at <= 0 {
		return 0, errors.New("disk on fire")
	}
	n := copy(p, f.data[:min(len(p), f.at)])
	f.data, f.at = f.data[n:], f.at-n
	return n, nil
}

func TestParseTagList(t *testing.T) {
	got := parseTagList(" v=1; a = rsa-sha256 ;d=example.com; b=abc\r\n def; junk; =x; d=second; h=From : To")
	want := map[string]string{"v": "1", "a": "rsa-sha256", "d": "example.com", "b": "abcdef", "h": "From:To"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("parseTagList = %v, want %v", got, want)
	}
}

func FuzzParseTagList(f *testing.F) {
	f.Add("v=1; a=rsa-sha256; d=example.com; s=sel; b=abc def")
	f.Add(";;=;a==b;")
	f.Fuzz(func(t *testing.T, s string) {
		for k, v := range parseTagList(s) {
			if k == "" || strings.ContainsAny(v, " \t\r\n") {
				t.Errorf("parseTagList(%q): %q=%q", s, k, v)
			}
		}
	})
}

func FuzzHeaderFields(f *testing.F) {
	f.Add([]byte("From: a@b\r\nSubject: x\r\n y\r\n\r\nbody"))
	f.Add([]byte(" leading\r\nNo colon\r\n:\r\n"))
	f.Fuzz(func(t *testing.T, hdr []byte) {
		total := 0
		for rest := hdr; len(rest) > 0; {
			n := fieldEnd(rest)
			if n <= 0 || n > len(rest) {
				t.Fatalf("fieldEnd = %d of %d", n, len(rest))
			}
			total += n
			rest = rest[n:]
		}
		if total != len(hdr) {
			t.Fatalf("fields cover %d of %d bytes", total, len(hdr))
		}
		for _, f := range HeaderFields(hdr) {
			if strings.ContainsAny(f.Value, "\r\n") {
				t.Errorf("value %q not unfolded", f.Value)
			}
		}
		br := bufio.NewReader(bytes.NewReader(hdr))
		if h, err := readHeaderBlock(br); err == nil && !bytes.HasPrefix(hdr, h) {
			t.Errorf("readHeaderBlock returned bytes not at the start")
		}
	})
}

// txtRR builds a TXT record, split into character-strings of 255 bytes.
func txtRR(name string, value ...string) *dns.TXT {
	rr := &dns.TXT{Hdr: dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 300}}
	for _, v := range value {
		for len(v) > 255 {
			rr.Txt = append(rr.Txt, escapeTXT(v[:255]))
			v = v[255:]
		}
		rr.Txt = append(rr.Txt, escapeTXT(v))
	}
	return rr
}

// escapeTXT escapes a character-string the way miekg/dns keeps it.
func escapeTXT(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)
}

func toCRLF(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
}

// benchMessage builds a signed message with a body of about size bytes.
func benchMessage(b *testing.B, size int) []byte {
	var body strings.Builder
	line := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 2)[:76] + "\r\n"
	for body.Len() < size {
		body.WriteString(line)
	}
	msg := strings.Replace(unsignedMessage, "Hi.\r\n", body.String(), 1)
	return signWith(b, []byte(msg), "rsa", loadKey(b, "rsa.pem"), nil)
}

func BenchmarkDKIMVerify(b *testing.B) {
	for _, size := range []int{4 << 10, 100 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("%dKB", size>>10), func(b *testing.B) {
			srv := startDNS(b, "dkim/keys.zone")
			d := NewDKIM(DKIMConfig{}, newResolver(b, srv, 0))
			msg := benchMessage(b, size)
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				res := d.Verify(context.Background(), bytes.NewReader(msg))
				if !res.Pass() {
					b.Fatalf("%+v", res)
				}
			}
		})
	}
}

// TestDKIMBoundSignatures: the signatures past max_signatures are one
// result, which says how many there were (a sender chooses how many it
// sends; each would be a result in our header field and decision line).
func TestDKIMBoundSignatures(t *testing.T) {
	srv := startDNS(t, "dkim/keys.zone")
	d := NewDKIM(DKIMConfig{MaxSignatures: 1}, newResolver(t, srv, 300*time.Millisecond))
	f, err := os.Open(filepath.Join(dkimDir, "three-signatures.eml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res := d.Verify(context.Background(), f)
	checkSigs(t, res, []wantSig{{"rsa", "rsa-sha256", DKIMPass, ""},
		{"ed", "ed25519-sha256", DKIMNeutral, "(2 signatures past the bound, not verified)"}})
}

// FuzzHeaderValues holds HeaderValues to HeaderFields: the values of the
// fields whose names strings.ToLower makes equal to name's, trimmed, the
// first max of them.
func FuzzHeaderValues(f *testing.F) {
	f.Add([]byte("From: a@b\r\nSubject: x\r\n y\r\nfrom:  c \r\n\r\nFrom: body"), "FROM", 5)
	f.Add([]byte(" leading\r\nNo colon\r\n:\r\nK: kelvin\r\n\u212a: sign\r\n\xff: bad\r\n"), "k", 1)
	f.Add([]byte("X\t : 1\r\nX: 2\r\nx:3\r\n"), "x", 2)
	f.Fuzz(func(t *testing.T, hdr []byte, name string, max int) {
		if max < 0 || max > 50 {
			max = 3
		}
		var want []string
		for _, h := range HeaderFields(hdr) {
			if strings.ToLower(h.Name) == strings.ToLower(name) && len(want) < max {
				want = append(want, strings.TrimSpace(h.Value))
			}
		}
		if got := HeaderValues(hdr, name, max); !slices.Equal(got, want) {
			t.Errorf("HeaderValues(%q, %q, %d) = %q, want %q", hdr, name, max, got, want)
		}
	})
}
