package checks

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

// go-msgauth's verifier is the reference ours is held to: the same
// message must get the same result from both, signature by signature.

// libVerify verifies msg with go-msgauth; an error is a message it could
// not read at all (no result to compare).
func libVerify(r *Resolver, msg []byte, max int) ([]*dkim.Verification, error) {
	verifs, err := dkim.VerifyWithOptions(bytes.NewReader(msg),
		&dkim.VerifyOptions{LookupTXT: r.TXTLookup(context.Background()), MaxVerifications: max})
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		return nil, err
	}
	return verifs, nil
}

func libStatus(err error) DKIMStatus {
	switch {
	case err == nil:
		return DKIMPass
	case dkim.IsTempFail(err):
		return DKIMTempError
	case dkim.IsPermFail(err):
		return DKIMPermError
	}
	return DKIMFail
}

// libSigRegex is how go-msgauth empties b= in the signature field; where
// it and withoutSigValue disagree (text like "b=" inside another value),
// RFC 6376 section 3.7 is ours to follow and the results may differ.
var libSigRegex = regexp.MustCompile(`(b\s*=)[^;]+`)

// knownDifference reports whether a signature is one where our verifier
// departs from go-msgauth on purpose (see dkimverify.go).
func knownDifference(field []byte, v *dkim.Verification) bool {
	if string(withoutSigValue(field)) != libSigRegex.ReplaceAllString(string(field), "$1") {
		return true
	}
	if v != nil && v.Err != nil && strings.Contains(v.Err.Error(), "domain mismatch") &&
		identifierInDomain(v.Identifier, v.Domain, false) {
		return true // the i= domain differs from d= only in case
	}
	return false
}

// compareWithLibrary verifies msg both ways and reports any signature whose
// result differs, unless it is a known difference. It reports whether the
// two were compared.
func compareWithLibrary(t *testing.T, d *DKIM, r *Resolver, msg []byte) bool {
	t.Helper()
	if len(msg) > 0 && (msg[0] == ' ' || msg[0] == '\t') {
		return false // go-msgauth takes the indented first line for a field
	}
	lib, err := libVerify(r, msg, d.max)
	if err != nil {
		return false
	}
	ours := d.Verify(context.Background(), bytes.NewReader(msg))
	if ours.Err != "" {
		t.Fatalf("our verifier failed to read the message: %s", ours.Err)
	}
	var sigFields [][]byte
	for _, f := range splitDKIMHeader(msg, nil) {
		// go-msgauth takes a line without a colon, or a name followed by
		// other white space than SP and HTAB, for a field name too.
		k, _, _ := strings.Cut(string(f.raw), ":")
		if f.sig != strings.EqualFold(strings.TrimSpace(k), "DKIM-Signature") {
			return false
		}
		if f.sig {
			sigFields = append(sigFields, f.raw)
		}
	}
	if len(sigFields) != len(ours.Signatures) {
		t.Fatalf("%d signature fields, %d results", len(sigFields), len(ours.Signatures))
	}
	if len(lib) > len(ours.Signatures) {
		t.Fatalf("go-msgauth verified %d signatures, we report %d", len(lib), len(ours.Signatures))
	}
	for i, v := range lib {
		if knownDifference(sigFields[i], v) {
			continue
		}
		if want, got := libStatus(v.Err), ours.Signatures[i].Result; got != want {
			t.Errorf("signature %d: ours %s (%s), go-msgauth %s (%v)\n%q", i, got, ours.Signatures[i].Reason, want, v.Err, msg)
		}
	}
	return true
}

func dkimBaseMessage() []byte {
	return []byte("From: Alice Example <alice@dkim.example>\r\n" +
		"To: bob@receiver.example,\r\n\tcarol@receiver.example\r\n" +
		"Subject:   a   subject\twith  odd   spacing  \r\n" +
		"Date: Sun, 29 Nov 2026 10:00:00 +0000\r\n" +
		"Message-ID: <dkimverify.1@dkim.example>\r\n" +
		"X-Extra: unsigned\r\n" +
		"\r\n" +
		"Hello Bob,\r\n" +
		"\r\n" +
		"  indented line with  two spaces\r\n" +
		"tabs\there\t\tand trailing space   \r\n" +
		"a line\r\n" +
		"\r\n" +
		"\r\n")
}

// signedVariants are messages signed in each way the tests vary.
func signedVariants(t testing.TB) map[string][]byte {
	t.Helper()
	rsaKey, edKey := loadKey(t, "rsa.pem"), loadKey(t, "ed25519.pem")
	base := dkimBaseMessage()
	canon := func(h, b dkim.Canonicalization) func(*dkim.SignOptions) {
		return func(o *dkim.SignOptions) {
			o.HeaderCanonicalization, o.BodyCanonicalization = h, b
		}
	}
	out := map[string][]byte{
		"rsa relaxed/relaxed": signWith(t, base, "rsa", rsaKey, canon(dkim.CanonicalizationRelaxed, dkim.CanonicalizationRelaxed)),
		"rsa simple/simple":   signWith(t, base, "rsa", rsaKey, canon(dkim.CanonicalizationSimple, dkim.CanonicalizationSimple)),
		"rsa simple/relaxed":  signWith(t, base, "rsa", rsaKey, canon(dkim.CanonicalizationSimple, dkim.CanonicalizationRelaxed)),
		"ed relaxed/simple":   signWith(t, base, "ed", edKey, canon(dkim.CanonicalizationRelaxed, dkim.CanonicalizationSimple)),
		"rsa repeated and missing names": signWith(t, base, "rsa", rsaKey, func(o *dkim.SignOptions) {
			o.HeaderCanonicalization = dkim.CanonicalizationRelaxed
			o.HeaderKeys = []string{"from", "To", "Subject", "subject", "Cc", "Date"}
		}),
		"rsa with i=": signWith(t, base, "rsa", rsaKey, func(o *dkim.SignOptions) {
			o.Identifier = "alice@mail.dkim.example"
		}),
		"rsa expired": signWith(t, base, "rsa", rsaKey, func(o *dkim.SignOptions) {
			o.Expiration = time.Now().Add(-time.Hour)
		}),
		"rsa not expired": signWith(t, base, "rsa", rsaKey, func(o *dkim.SignOptions) {
			o.Expiration = time.Now().Add(time.Hour)
		}),
	}
	// Two signatures, the Ed25519 one added last (on top).
	out["two signatures"] = signWith(t, out["rsa relaxed/relaxed"], "ed", edKey,
		canon(dkim.CanonicalizationRelaxed, dkim.CanonicalizationRelaxed))
	return out
}

// dkimMutations change a signed message in the ways that matter to
// canonicalization and to the checks of the signature's tags.
var dkimMutations = []struct {
	name string
	fn   func(msg []byte) []byte
}{
	{"none", func(m []byte) []byte { return m }},
	{"body word changed", replace("Hello Bob", "Hello Rob")},
	{"empty lines added at the end", func(m []byte) []byte { return append(m, "\r\n\r\n"...) }},
	{"trailing white space added", replace("a line\r\n", "a line \t \r\n")},
	{"space doubled", replace("Hello Bob", "Hello  Bob")},
	{"space made a tab", replace("Hello Bob", "Hello\tBob")},
	{"bare LF in the body", replace("a line\r\n", "a line\n")},
	{"bare CR in the body", replace("Hello Bob", "Hello\rBob")},
	{"final CRLF removed", func(m []byte) []byte { return bytes.TrimSuffix(m, []byte("\r\n")) }},
	{"body emptied", func(m []byte) []byte { return m[:bytes.Index(m, []byte("\r\n\r\n"))+4] }},
	{"header name case", replace("\r\nSubject:", "\r\nSUBJECT:")},
	{"space before a colon", replace("\r\nSubject:", "\r\nSubject :")},
	{"refolded", replace("\r\n\tcarol", "\r\n      carol")},
	{"unsigned field added", replace("X-Extra:", "X-New: 1\r\nX-Extra:")},
	{"From added on top", func(m []byte) []byte { return append([]byte("From: evil@evil.example\r\n"), m...) }},
	{"From added at the bottom", replace("X-Extra: unsigned\r\n", "X-Extra: unsigned\r\nFrom: evil@evil.example\r\n")},
	{"bare LF ends a header line", replace("X-Extra: unsigned\r\n", "X-Extra: unsigned\n")},
	{"rsa-sha1", replace("a=rsa-sha256", "a=rsa-sha1")},
	{"unknown hash", replace("a=rsa-sha256", "a=rsa-sha512")},
	{"no dash in a=", replace("a=rsa-sha256", "a=rsasha256")},
	{"wrong key type", replace("a=rsa-sha256", "a=ed25519-sha256")},
	{"unknown body canonicalization", replace("c=relaxed/relaxed", "c=relaxed/bogus")},
	{"unknown header canonicalization", replace("c=relaxed/relaxed", "c=bogus/relaxed")},
	{"l= added", replace("v=1;", "v=1; l=10;")},
	{"v=2", replace("v=1;", "v=2;")},
	{"duplicate tag", replace("v=1;", "v=1; v=1;")},
	{"malformed tag", replace("v=1;", "v=1; junk;")},
	{"q= dns/txt", replace("v=1;", "v=1; q=dns/txt;")},
	{"q= other", replace("v=1;", "v=1; q=http/well-known;")},
	{"i= outside d=", replace("v=1;", "v=1; i=a@other.example;")},
	{"i= subdomain", replace("v=1;", "v=1; i=a@sub.dkim.example;")},
	{"x= malformed", replace("v=1;", "v=1; x=never;")},
	{"t= malformed", replace("v=1;", "v=1; t=soon;")},
	{"missing key", replace("s=rsa;", "s=gone;")},
	{"revoked key", replace("s=rsa;", "s=revoked;")},
	{"bh corrupted", replace("bh=", "bh=!!")},
	{"b corrupted", replace(" b=", " b=AAAA")},
	{"h= without From", replace("h=From:", "h=X-Extra:")},
}

func replace(old, new string) func([]byte) []byte {
	return func(m []byte) []byte { return bytes.Replace(m, []byte(old), []byte(new), 1) }
}

// TestDKIMVerifyMatchesLibrary: every signing variant under every mutation
// gets go-msgauth's result.
func TestDKIMVerifyMatchesLibrary(t *testing.T) {
	srv := startDNS(t, "dkim/keys.zone")
	r := newResolver(t, srv, 0)
	d := NewDKIM(DKIMConfig{}, r)
	statuses := map[DKIMStatus]int{}
	for name, msg := range signedVariants(t) {
		for _, m := range dkimMutations {
			t.Run(name+"/"+m.name, func(t *testing.T) {
				mutated := m.fn(bytes.Clone(msg))
				if !compareWithLibrary(t, d, r, mutated) {
					t.Fatalf("go-msgauth could not read the message")
				}
				for _, s := range d.Verify(context.Background(), bytes.NewReader(mutated)).Signatures {
					statuses[s.Result]++
				}
			})
		}
	}
	// The table reaches every result the verifier gives.
	for _, s := range []DKIMStatus{DKIMPass, DKIMFail, DKIMPermError} {
		if statuses[s] == 0 {
			t.Errorf("no signature ended %s: %v", s, statuses)
		}
	}
}

// TestDKIMVerifyDepartures: where we follow RFC 6376 rather than go-msgauth.
func TestDKIMVerifyDepartures(t *testing.T) {
	srv := startDNS(t, "dkim/keys.zone")
	// A key like rsa's but strict (t=s), and one with p= folded by tabs.
	rsaTXT, err := newResolver(t, srv, 0).LookupTXT(context.Background(), "rsa._domainkey.dkim.example")
	if err != nil || len(rsaTXT) != 1 {
		t.Fatalf("rsa key: %v %v", rsaTXT, err)
	}
	srv.AddRecords(txtRR("strict._domainkey.dkim.example", rsaTXT[0]+"; t=s"))
	folded := strings.Replace(rsaTXT[0], "p=MIIB", "p=\tMIIB\t", 1)
	srv.AddRecords(txtRR("folded._domainkey.dkim.example", folded))
	d := NewDKIM(DKIMConfig{}, newResolver(t, srv, 0))
	rsaKey := loadKey(t, "rsa.pem")
	sign := func(sel, id string) []byte {
		return signWith(t, dkimBaseMessage(), sel, rsaKey, func(o *dkim.SignOptions) { o.Identifier = id })
	}
	cases := []struct {
		name string
		msg  []byte
		want DKIMStatus
	}{
		{"i= domain in upper case", sign("rsa", "alice@DKIM.Example"), DKIMPass},
		{"t=s, i= in d=", sign("strict", "alice@dkim.example"), DKIMPass},
		{"t=s, i= in a subdomain", sign("strict", "alice@mail.dkim.example"), DKIMPermError},
		{"p= folded with tabs", sign("folded", ""), DKIMPass},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := d.Verify(context.Background(), bytes.NewReader(c.msg))
			if len(res.Signatures) != 1 || res.Signatures[0].Result != c.want {
				t.Errorf("got %+v, want %s", res.Signatures, c.want)
			}
		})
	}
}

// TestBodyCanonChunks: the body hash does not depend on how the body is
// cut into writes (a message held in a file arrives in pieces).
func TestBodyCanonChunks(t *testing.T) {
	bodies := []string{
		"", "\r\n", "\r\n\r\n", "a", "a\r\n", "a \r\n\r\n", " a  b\t\r\n \r\nc\r\n\r\n\r\n",
		"a\nb\n\n", "a\r\rb\r\n\r", "x\r\n\r\r\n", "line one\r\nline two \r\n\tline three\r\n",
		strings.Repeat("word  word\t\r\n", 50) + "\r\n\r\n",
	}
	for _, relaxed := range []bool{false, true} {
		for _, body := range bodies {
			var whole bodyCanon
			whole.reset(relaxed)
			whole.Write([]byte(body))
			want := whole.sum(nil)
			for size := 1; size <= 7; size++ {
				var c bodyCanon
				c.reset(relaxed)
				for b := []byte(body); len(b) > 0; {
					n := min(size, len(b))
					c.Write(b[:n])
					b = b[n:]
				}
				if got := c.sum(nil); !bytes.Equal(got, want) {
					t.Errorf("relaxed=%v %q in writes of %d: hash differs", relaxed, body, size)
				}
			}
		}
	}
}

// FuzzDKIMVerifyMatchesLibrary: any message, signed and then changed at
// random, gets go-msgauth's result from our verifier.
func FuzzDKIMVerifyMatchesLibrary(f *testing.F) {
	for _, msg := range signedVariants(f) {
		f.Add(msg)
	}
	srv := startDNS(f, "dkim/keys.zone")
	r := newResolver(f, srv, 200*time.Millisecond)
	d := NewDKIM(DKIMConfig{MaxSignatures: 3}, r)
	f.Fuzz(func(t *testing.T, msg []byte) {
		if bytes.Contains(msg, []byte("slow")) {
			return // the key that times out: slow, and tested elsewhere
		}
		compareWithLibrary(t, d, r, msg)
	})
}

// TestDKIMLongHeaderLine: a header longer than the read buffer, with a
// line of about the buffer's length, ends where the message says, not
// where a piece of that line ends (else the fields after it would be
// hashed as body, and a forged header could pass).
func TestDKIMLongHeaderLine(t *testing.T) {
	srv := startDNS(t, "dkim/keys.zone")
	r := newResolver(t, srv, 0)
	d := NewDKIM(DKIMConfig{}, r)
	signed := signedVariants(t)["rsa relaxed/relaxed"]
	for _, n := range []int{65534, 65535, 65536, 65537, 2 * 65536} {
		pad := "X-Pad: " + strings.Repeat("A", n-len("X-Pad: ")-2) + "\r\n"
		msg := append([]byte(pad), signed...)
		if !compareWithLibrary(t, d, r, msg) {
			t.Fatalf("line of %d: not compared", n)
		}
		if res := d.Verify(context.Background(), bytes.NewReader(msg)); !res.Pass() {
			t.Errorf("line of %d: %+v", n, res.Signatures)
		}
	}
}

// TestDKIMManyNamesAndFields: a long h= over a long header (the indexed
// picking) gets go-msgauth's results: repeated names, names in other case,
// names of no field.
func TestDKIMManyNamesAndFields(t *testing.T) {
	srv := startDNS(t, "dkim/keys.zone")
	r := newResolver(t, srv, 0)
	d := NewDKIM(DKIMConfig{}, r)
	var hdr strings.Builder
	keys := []string{"From", "from", "Subject"}
	for i := range 120 {
		fmt.Fprintf(&hdr, "X-F%d: value %d\r\n", i%40, i)
		keys = append(keys, fmt.Sprintf("x-f%d", i%50))
	}
	msg := []byte(hdr.String() + string(dkimBaseMessage()))
	signed := signWith(t, msg, "rsa", loadKey(t, "rsa.pem"), func(o *dkim.SignOptions) {
		o.HeaderCanonicalization = dkim.CanonicalizationRelaxed
		o.HeaderKeys = keys
	})
	for _, m := range []struct {
		name string
		msg  []byte
	}{
		{"as signed", signed},
		{"a signed field changed", bytes.Replace(signed, []byte("X-F7: value 87"), []byte("X-F7: value 88"), 1)},
		{"a field of a signed name added on top", append([]byte("X-F3: new\r\n"), signed...)},
	} {
		t.Run(m.name, func(t *testing.T) {
			if !compareWithLibrary(t, d, r, m.msg) {
				t.Fatal("not compared")
			}
		})
	}
	if res := d.Verify(context.Background(), bytes.NewReader(signed)); !res.Pass() {
		t.Errorf("as signed: %+v", res.Signatures)
	}
}

// TestDKIMKeySize: RSA keys below 1024 bits (counted exactly) and above
// 8192 are refused before any verification.
func TestDKIMKeySize(t *testing.T) {
	for _, c := range []struct {
		bits int
		want string
	}{{1017, "too short"}, {8200, "too long"}} {
		n := new(big.Int).Lsh(big.NewInt(1), uint(c.bits-1))
		n.Add(n, big.NewInt(12345)) // odd, and exactly c.bits long
		der, err := x509.MarshalPKIXPublicKey(&rsa.PublicKey{N: n, E: 65537})
		if err != nil {
			t.Fatal(err)
		}
		k := parseDKIMKey("v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der))
		if k.err == nil || !strings.Contains(k.err.Error(), c.want) {
			t.Errorf("%d bits: %v, want %q", c.bits, k.err, c.want)
		}
	}
}

// FuzzFoldKey: foldKey makes equal exactly what strings.EqualFold does.
func FuzzFoldKey(f *testing.F) {
	for _, p := range [][2]string{{"From", "from"}, {"K", "\u212a"}, {"s", "\u017f"}, {"\xff", "\xfe"}, {"a", "ab"}} {
		f.Add(p[0], p[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if (foldKey(a) == foldKey(b)) != strings.EqualFold(a, b) {
			t.Errorf("foldKey %q %q: %q %q, EqualFold %v", a, b, foldKey(a), foldKey(b), strings.EqualFold(a, b))
		}
	})
}
