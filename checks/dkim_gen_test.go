package checks

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

// The DKIM test data (keys, key records, signed messages) is made by
//
//	go test ./checks -run TestGenerateDKIMTestdata -update-dkim
//
// and committed; the tests only read it.
var updateDKIM = flag.Bool("update-dkim", false, "regenerate testdata/dkim")

const dkimDir = "testdata/dkim"

// unsignedMessage is the message every signed test message starts from.
const unsignedMessage = "From: Joe Sender <joe@dkim.example>\r\n" +
	"To: Suzie Q <suzie@receiver.example>\r\n" +
	"Subject: Is dinner ready?\r\n" +
	"Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n" +
	"Message-ID: <20030712040037.46341.5F8J@dkim.example>\r\n" +
	"\r\n" +
	"Hi.\r\n" +
	"\r\n" +
	"We lost the game.  Are you hungry yet?\r\n" +
	"\r\n" +
	"Joe.\r\n"

func TestGenerateDKIMTestdata(t *testing.T) {
	if !*updateDKIM {
		t.Skip("run with -update-dkim to regenerate testdata/dkim")
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, "rsa.pem", rsaKey)
	writePEM(t, "ed25519.pem", edKey)

	rsaPub, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	edPub := edKey.Public().(ed25519.PublicKey)
	var zone strings.Builder
	zone.WriteString("; DKIM keys for dkim_test.go, made by TestGenerateDKIMTestdata.\n$TTL 300\n")
	fmt.Fprintf(&zone, "rsa._domainkey.dkim.example. IN TXT %s\n", txtStrings("v=DKIM1; k=rsa; p="+base64.StdEncoding.EncodeToString(rsaPub)))
	fmt.Fprintf(&zone, "ed._domainkey.dkim.example. IN TXT %s\n", txtStrings("v=DKIM1; k=ed25519; p="+base64.StdEncoding.EncodeToString(edPub)))
	fmt.Fprintf(&zone, "revoked._domainkey.dkim.example. IN TXT \"v=DKIM1; k=rsa; p=\"\n")
	fmt.Fprintf(&zone, "; slow._domainkey.dkim.example is made to time out by the tests.\n")
	fmt.Fprintf(&zone, "slow._domainkey.dkim.example. IN TXT %s\n", txtStrings("v=DKIM1; k=rsa; p="+base64.StdEncoding.EncodeToString(rsaPub)))
	fmt.Fprintf(&zone, "; gone._domainkey.dkim.example does not exist.\n")
	writeFile(t, "keys.zone", zone.String())

	msg := []byte(unsignedMessage)
	relaxed := func(o *dkim.SignOptions) {
		o.HeaderCanonicalization, o.BodyCanonicalization = dkim.CanonicalizationRelaxed, dkim.CanonicalizationRelaxed
	}
	// Two signatures, Ed25519 and RSA, relaxed/relaxed: like RFC 8463 A.3.
	two := signWith(t, signWith(t, msg, "rsa", rsaKey, relaxed), "ed", edKey, relaxed)
	writeFile(t, "two-signatures.eml", string(two))
	// One RSA signature, simple/simple: like RFC 6376 A.2.
	simple := signWith(t, msg, "rsa", rsaKey, nil)
	writeFile(t, "simple.eml", string(simple))
	writeFile(t, "tampered-body.eml", strings.Replace(string(simple), "Are you hungry", "Are you thirsty", 1))
	writeFile(t, "tampered-header.eml", strings.Replace(string(simple), "Subject: Is dinner ready?", "Subject: Is lunch ready?", 1))
	writeFile(t, "missing-key.eml", string(signWith(t, msg, "gone", rsaKey, nil)))
	writeFile(t, "revoked-key.eml", string(signWith(t, msg, "revoked", rsaKey, nil)))
	writeFile(t, "slow-key.eml", string(signWith(t, msg, "slow", rsaKey, nil)))
	writeFile(t, "expired.eml", string(signWith(t, msg, "rsa", rsaKey, func(o *dkim.SignOptions) {
		o.Expiration = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	})))
	three := signWith(t, signWith(t, signWith(t, msg, "rsa", rsaKey, nil), "ed", edKey, nil), "rsa", rsaKey, relaxed)
	writeFile(t, "three-signatures.eml", string(three))
	writeFile(t, "unsigned.eml", unsignedMessage)
}

// txtStrings splits a TXT value into quoted character-strings of at most
// 255 bytes.
func txtStrings(s string) string {
	var parts []string
	for len(s) > 255 {
		parts = append(parts, `"`+s[:255]+`"`)
		s = s[255:]
	}
	parts = append(parts, `"`+s+`"`)
	return "( " + strings.Join(parts, "\n\t") + " )"
}

func writePEM(t *testing.T, name string, key any) {
	b, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, name, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: b})))
}

func writeFile(t *testing.T, name, data string) {
	if err := os.WriteFile(filepath.Join(dkimDir, name), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// loadKey reads a PKCS#8 private key from testdata/dkim.
func loadKey(t testing.TB, name string) crypto.Signer {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dkimDir, name))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", name)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(crypto.Signer)
}

// signWith signs msg for d=dkim.example with the given selector and key.
func signWith(t testing.TB, msg []byte, selector string, key crypto.Signer, opt func(*dkim.SignOptions)) []byte {
	t.Helper()
	o := &dkim.SignOptions{Domain: "dkim.example", Selector: selector, Signer: key,
		HeaderKeys: []string{"From", "To", "Subject", "Date", "Message-ID"}}
	if opt != nil {
		opt(o)
	}
	var out bytes.Buffer
	if err := dkim.Sign(&out, bytes.NewReader(msg), o); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}
