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
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
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
