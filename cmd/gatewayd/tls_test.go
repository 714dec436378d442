package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/gatewayd/config"
)

// writeCert writes a self-signed certificate with the given serial.
func writeCert(t *testing.T, dir string, serial int64) (certPath, keyPath string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "mx.test"},
		DNSNames: []string{"mx.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return certPath, keyPath
}

// servedSerial connects with STARTTLS and returns the certificate's serial.
func servedSerial(t *testing.T, addr string) int64 {
	c, err := smtp.DialStartTLS(addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Noop(); err != nil { // completes the handshake
		t.Fatal(err)
	}
	st, ok := c.TLSConnectionState()
	if !ok || len(st.PeerCertificates) == 0 {
		t.Fatal("no TLS")
	}
	return st.PeerCertificates[0].SerialNumber.Int64()
}

// TestSIGHUPReloadsCertificate: a renewed certificate is served after
// SIGHUP, without a restart.
func TestSIGHUPReloadsCertificate(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := writeCert(t, dir, 1)
	addr := freePort(t)
	d := startDaemon(t, "-config", writeConfig(t, fmt.Sprintf("listen: [%q]\nmetrics:\n  listen: \"\"\ntls:\n  cert: %q\n  key: %q\n", addr, certPath, keyPath)))
	if got := servedSerial(t, addr); got != 1 {
		t.Fatalf("serial %d, want 1", got)
	}
	writeCert(t, dir, 2)
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, d, "configuration reloaded")
	if got := servedSerial(t, addr); got != 2 {
		t.Fatalf("after SIGHUP: serial %d, want 2", got)
	}
}

// TestSIGHUPRemovesAndRestoresTLS: removing tls.cert and tls.key and
// sending SIGHUP stops offering STARTTLS to new sessions (README: SIGHUP
// reloads the TLS certificate); a session that was offered STARTTLS before
// the reload still completes it with the certificate it was offered. Adding
// them back offers STARTTLS again.
func TestSIGHUPRemovesAndRestoresTLS(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := writeCert(t, dir, 1)
	addr := freePort(t)
	base := fmt.Sprintf("listen: [%q]\nmetrics:\n  listen: \"\"\n", addr)
	withTLS := base + fmt.Sprintf("tls:\n  cert: %q\n  key: %q\n", certPath, keyPath)
	cfgPath := writeConfig(t, withTLS)
	d := startDaemon(t, "-config", cfgPath)
	offered := func() bool {
		c, err := smtp.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Hello("c.test"); err != nil {
			t.Fatal(err)
		}
		ok, _ := c.Extension("STARTTLS")
		return ok
	}
	if !offered() {
		t.Fatal("STARTTLS not offered with tls.cert and tls.key")
	}
	// A session that saw STARTTLS offered before the reload.
	early := dialSMTP(t, addr)
	early.send("EHLO c.test")
	early.expect("250")

	os.WriteFile(cfgPath, []byte(base), 0o600)
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, d, "configuration reloaded")
	if offered() {
		t.Errorf("tls removed and reloaded: STARTTLS still offered\n%s", d.stderr.String())
	}
	early.send("STARTTLS")
	early.expect("220")
	tc := tls.Client(early.c, &tls.Config{InsecureSkipVerify: true})
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Errorf("a session offered STARTTLS before the reload: handshake: %v", err)
	} else if serial := tc.ConnectionState().PeerCertificates[0].SerialNumber.Int64(); serial != 1 {
		t.Errorf("a session offered STARTTLS before the reload: serial %d, want 1", serial)
	}

	os.WriteFile(cfgPath, []byte(withTLS), 0o600)
	d.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(d.stderr.String(), "configuration reloaded") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("second reload not logged:\n%s", d.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := servedSerial(t, addr); got != 1 {
		t.Errorf("tls back: serial %d, want 1", got)
	}
}

// TestSIGHUPFailedReloadKeepsCertificate: a reload that fails after the
// certificate was read (here the delivery Maildir cannot be opened) keeps
// the running configuration, certificate included.
func TestSIGHUPFailedReloadKeepsCertificate(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := writeCert(t, dir, 1)
	file := filepath.Join(dir, "a-file")
	os.WriteFile(file, nil, 0o600)
	addr := freePort(t)
	base := fmt.Sprintf("listen: [%q]\nmetrics:\n  listen: \"\"\ntls:\n  cert: %q\n  key: %q\n", addr, certPath, keyPath)
	cfgPath := writeConfig(t, base)
	d := startDaemon(t, "-config", cfgPath)
	writeCert(t, dir, 2)
	os.WriteFile(cfgPath, []byte(base+fmt.Sprintf("maildir: %q\n", filepath.Join(file, "md"))), 0o600)
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, d, "reload failed")
	if got := servedSerial(t, addr); got != 1 {
		t.Errorf("after a failed reload: serial %d, want 1 (the running certificate)", got)
	}
}

// TestTLSErrorsNameTheKey: a certificate or key that does not load is
// reported as the key's, at its place in the file; tls.LoadX509KeyPair's
// own "tls: read ..." named neither.
func TestTLSErrorsNameTheKey(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := writeCert(t, dir, 1)
	junk := filepath.Join(dir, "junk.pem")
	os.WriteFile(junk, []byte("junk\n"), 0o600)
	other := t.TempDir()
	_, otherKey := writeCert(t, other, 2)
	for _, c := range []struct{ cert, key, want string }{
		{dir, keyPath, "f.yaml:1:13: tls.cert: read " + dir + ": is a directory"},
		{certPath, dir, "f.yaml:1:" + fmt.Sprint(13+len(certPath)+7) + ": tls.key: read " + dir + ": is a directory"},
		{junk, keyPath, "tls.cert: tls: failed to find any PEM data in certificate input"},
		{certPath, junk, "tls.key: tls: failed to find any PEM data in key input"},
		{certPath, otherKey, "tls.key: tls: private key does not match public key"},
	} {
		cfg, err := config.Parse("f.yaml", []byte("tls: {cert: "+c.cert+", key: "+c.key+"}\n"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := buildTLS(cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("cert %s key %s:\n got %v\nwant %s", c.cert, c.key, err, c.want)
		}
	}
	cfg, _ := config.Parse("f.yaml", []byte("tls: {cert: "+certPath+", key: "+keyPath+"}\n"))
	if cert, err := buildTLS(cfg); err != nil || cert == nil {
		t.Errorf("good pair: %v", err)
	}
}
