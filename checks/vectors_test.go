package checks

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/miekg/dns"
	"github.com/mxgate/gatewayd/internal/dnstest"
	"go.yaml.in/yaml/v3"
)

// The shared test vectors live beside the repository (../shared/vectors
// from its root), or where GATEWAYD_VECTORS says (a checkout elsewhere).
// These tests run them when present and skip otherwise; our own testdata
// covers every behaviour they check.
var vectorsDir = func() string {
	if d := os.Getenv("GATEWAYD_VECTORS"); d != "" {
		return d
	}
	return filepath.Join("..", "..", "shared", "vectors")
}()

func needVectors(t *testing.T, sub string) string {
	t.Helper()
	dir := filepath.Join(vectorsDir, sub)
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("shared vectors not found at %s (set GATEWAYD_VECTORS to their folder): skipped (our own testdata covers the same behaviour)", dir)
	}
	return dir
}

type spfScenario struct {
	Description string                   `yaml:"description"`
	Tests       map[string]spfVectorTest `yaml:"tests"`
	Zonedata    map[string][]yaml.Node   `yaml:"zonedata"`
}

type spfVectorTest struct {
	Helo     string    `yaml:"helo"`
	Host     string    `yaml:"host"`
	MailFrom string    `yaml:"mailfrom"`
	Result   yaml.Node `yaml:"result"`
	Spec     yaml.Node `yaml:"spec"`
}

// Floors: the counts passing when these tests were written. A drop means a
// regression; a rise is welcome (raise the floor).
const (
	spfRFC7208Floor = 173
	spfRFC4408Floor = 162
)

func TestSPFVectors(t *testing.T) {
	dir := needVectors(t, "spf")
	for _, c := range []struct {
		file  string
		floor int
	}{{"rfc7208-tests.yml", spfRFC7208Floor}, {"rfc4408-tests.yml", spfRFC4408Floor}} {
		t.Run(c.file, func(t *testing.T) {
			pass, total, failed := runSPFSuite(t, filepath.Join(dir, c.file))
			t.Logf("%s: %d of %d pass", c.file, pass, total)
			for _, f := range failed {
				t.Logf("  not passing: %s", f)
			}
			if pass < c.floor {
				t.Errorf("%s: %d pass, below the floor of %d", c.file, pass, c.floor)
			}
		})
	}
}

func runSPFSuite(t *testing.T, path string) (pass, total int, failed []string) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	for {
		var sc spfScenario
		if err := dec.Decode(&sc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		srv := dnstest.Start(t)
		loadSPFZonedata(t, srv, sc.Zonedata)
		s := NewSPF(SPFConfig{}, newResolver(t, srv, 200*time.Millisecond))
		names := make([]string, 0, len(sc.Tests))
		for n := range sc.Tests {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, name := range names {
			tc := sc.Tests[name]
			var want []string
			if tc.Result.Kind == yaml.SequenceNode {
				tc.Result.Decode(&want)
			} else {
				want = []string{tc.Result.Value}
			}
			total++
			ip, err := netip.ParseAddr(tc.Host)
			var got SPFResult
			if err != nil {
				got = SPFResult{Result: SPFPermError}
			} else {
				got = s.Check(context.Background(), ip, tc.Helo, tc.MailFrom)
			}
			if slices.Contains(want, string(got.Result)) {
				pass++
			} else {
				failed = append(failed, fmt.Sprintf("%s: got %s (%s), want %v", name, got.Result, got.Err, want))
			}
		}
	}
	return pass, total, failed
}

// loadSPFZonedata serves the suite's zone data: SPF-type records are also
// served as TXT unless the name says "TXT: NONE"; TIMEOUT makes the name
// time out for every type it has no records of.
func loadSPFZonedata(t *testing.T, srv *dnstest.Server, zd map[string][]yaml.Node) {
	for name, recs := range zd {
		fqdn := dns.Fqdn(name)
		if _, ok := dns.IsDomainName(fqdn); !ok {
			continue
		}
		hdr := func(typ uint16) dns.RR_Header {
			return dns.RR_Header{Name: fqdn, Rrtype: typ, Class: dns.ClassINET, Ttl: 300}
		}
		var txt, spfs []dns.RR
		txtNone, timeout := false, false
		var others []dns.RR
		for _, n := range recs {
			if n.Kind == yaml.ScalarNode && n.Value == "TIMEOUT" {
				timeout = true
				continue
			}
			var m map[string]yaml.Node
			if err := n.Decode(&m); err != nil {
				continue
			}
			for typ, v := range m {
				switch typ {
				case "TXT", "SPF":
					var strs []string
					if v.Kind == yaml.SequenceNode {
						v.Decode(&strs)
					} else {
						if typ == "TXT" && v.Value == "NONE" {
							txtNone = true
							continue
						}
						strs = []string{v.Value}
					}
					rr := txtRR(name)
					rr.Txt = nil
					for _, s := range strs {
						rr.Txt = append(rr.Txt, txtRR(name, s).Txt...)
					}
					if typ == "TXT" {
						txt = append(txt, rr)
					} else {
						spfs = append(spfs, rr)
					}
				case "A":
					if a, err := netip.ParseAddr(v.Value); err == nil && a.Is4() {
						others = append(others, &dns.A{Hdr: hdr(dns.TypeA), A: a.AsSlice()})
					}
				case "AAAA":
					if a, err := netip.ParseAddr(v.Value); err == nil {
						others = append(others, &dns.AAAA{Hdr: hdr(dns.TypeAAAA), AAAA: a.AsSlice()})
					}
				case "MX":
					var mx []any
					if v.Decode(&mx) == nil && len(mx) == 2 {
						pref, _ := mx[0].(int)
						host, _ := mx[1].(string)
						others = append(others, &dns.MX{Hdr: hdr(dns.TypeMX), Preference: uint16(pref), Mx: dns.Fqdn(host)})
					}
				case "PTR":
					others = append(others, &dns.PTR{Hdr: hdr(dns.TypePTR), Ptr: dns.Fqdn(v.Value)})
				case "CNAME":
					others = append(others, &dns.CNAME{Hdr: hdr(dns.TypeCNAME), Target: dns.Fqdn(v.Value)})
				}
			}
		}
		if len(txt) == 0 && !txtNone {
			txt = spfs
		}
		srv.AddRecords(append(others, txt...)...)
		if len(txt) == 0 && len(others) == 0 {
			// The name exists in the suite (it may be NODATA): an empty
			// non-terminal below it makes it exist for our server.
			srv.AddRecords(&dns.TXT{Hdr: dns.RR_Header{Name: "zz-exists." + fqdn, Rrtype: dns.TypeTXT,
				Class: dns.ClassINET, Ttl: 300}, Txt: []string{"x"}})
		}
		if timeout {
			// TIMEOUT: every type without records times out.
			has := map[uint16]bool{}
			for _, rr := range append(others, txt...) {
				has[rr.Header().Rrtype] = true
			}
			for _, typ := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeMX, dns.TypeTXT, dns.TypePTR, dns.TypeSPF} {
				if !has[typ] {
					srv.Timeout(name, typ)
				}
			}
		}
	}
}

// TestDKIMVectors: the shared DKIM messages (RFC 8463 A.3, RFC 6376 A.2
// as printed and corrected, dkimpy's, stalwart's) get the results
// dkim/EXPECTED.md gives, each verified against only its own records.
func TestDKIMVectors(t *testing.T) {
	dir := needVectors(t, "dkim")
	read := func(p string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	type vector struct {
		name    string
		records []byte
		msg     []byte
		now     time.Time // zero: the real clock
		want    []DKIMStatus
	}
	pass2 := []DKIMStatus{DKIMPass, DKIMPass}
	vectors := []vector{
		{"rfc8463", read("rfc8463/dns-records.txt"), read("rfc8463/signed.eml"), time.Time{}, pass2},
		{"rfc6376 A.2 as printed", read("rfc6376/dns-records.txt"), read("rfc6376/a2-literal.eml"), time.Time{}, []DKIMStatus{DKIMFail}},
		{"rfc6376 A.2 corrected", read("rfc6376/dns-records.txt"), read("rfc6376/a2-corrected.eml"), time.Time{}, []DKIMStatus{DKIMPass}},
		{"dkimpy rfc6376.signed", read("rfc8463/dns-records.txt"), read("dkimpy/rfc6376.signed.msg"), time.Time{}, pass2},
	}
	// stalwart's files: the records, an empty line, the message. 005's
	// signature expired in 2022 (x=): a permerror now, a pass then.
	for i, want := range [][]DKIMStatus{pass2, {DKIMPass}, pass2, {DKIMPass}, {DKIMPermError}, {DKIMPass}} {
		name := fmt.Sprintf("stalwart-mail-auth/%03d.txt", i+1)
		recs, msg, _ := bytes.Cut(read(name), []byte("\n\n"))
		vectors = append(vectors, vector{name, recs, msg, time.Time{}, want})
		if i == 4 {
			vectors = append(vectors, vector{name + " in 2022", recs, msg, time.Date(2022, 11, 8, 12, 0, 0, 0, time.UTC), []DKIMStatus{DKIMPass}})
		}
	}
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			srv := startDNS(t)
			for _, l := range strings.Split(strings.TrimSpace(string(v.records)), "\n") {
				name, val, _ := strings.Cut(strings.TrimSpace(l), " ")
				var parts []string // TXT strings of at most 255 octets
				for len(val) > 255 {
					parts, val = append(parts, val[:255]), val[255:]
				}
				srv.AddRecords(txtRR(name, append(parts, val)...))
			}
			d := NewDKIM(DKIMConfig{}, newResolver(t, srv, 0))
			if !v.now.IsZero() {
				d.now = func() time.Time { return v.now }
			}
			r := d.Verify(context.Background(), bytes.NewReader(toCRLF(v.msg)))
			if len(r.Signatures) != len(v.want) {
				t.Fatalf("%d signatures (%+v), want %d", len(r.Signatures), r, len(v.want))
			}
			for i, s := range r.Signatures {
				if s.Result != v.want[i] {
					t.Errorf("signature %d (d=%s s=%s): %s (%s), want %s", i, s.Domain, s.Selector, s.Result, s.Reason, v.want[i])
				}
			}
		})
	}
}

// TestDKIMVectorsDkimpy: dkimpy's test data, which TestDKIMVectors does
// not use. Its messages are unsigned but for ed25519test2.msg (Exim's,
// with eximtest.dns), so they are signed here with dkimpy's keys and
// verified against each of its key records: the good ones pass, and no
// signature relying on a negative record (an unknown k=, a bad v=, a
// damaged key, a service type that is not email) passes (EXPECTED.md).
func TestDKIMVectorsDkimpy(t *testing.T) {
	dir := needVectors(t, filepath.Join("dkim", "dkimpy"))
	read := func(p string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	record := func(p string) string { return strings.TrimSpace(string(read(p))) }
	rsaKey, err := x509.ParsePKCS1PrivateKey(pemBlock(t, read("test.private")))
	if err != nil {
		t.Fatal(err)
	}
	seed, err := base64.StdEncoding.DecodeString(record("ed25519test.key"))
	if err != nil {
		t.Fatal(err)
	}
	edKey := ed25519.NewKeyFromSeed(seed)
	sign := func(msg []byte, domain string, key crypto.Signer) []byte {
		var out bytes.Buffer
		o := &dkim.SignOptions{Domain: domain, Selector: "test", Signer: key,
			HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
			HeaderKeys: []string{"From", "To", "Subject", "Date", "Message-ID"}}
		if err := dkim.Sign(&out, bytes.NewReader(toCRLF(msg)), o); err != nil {
			t.Fatal(err)
		}
		return out.Bytes()
	}
	rsaMsg := sign(read("test.message"), "example.com", rsaKey)
	edMsg := sign(read("ed25519test.msg"), "example.net", edKey)
	for _, c := range []struct {
		name, keyName, record string
		msg                   []byte
		want                  DKIMStatus
	}{
		{"test.txt", "test._domainkey.example.com", record("test.txt"), rsaMsg, DKIMPass},
		{"test2.txt (no k=)", "test._domainkey.example.com", record("test2.txt"), rsaMsg, DKIMPass},
		{"badk.txt", "test._domainkey.example.com", record("badk.txt"), rsaMsg, DKIMPermError},
		{"badversion.txt", "test._domainkey.example.com", record("badversion.txt"), rsaMsg, DKIMPermError},
		{"test_bad.txt", "test._domainkey.example.com", record("test_bad.txt"), rsaMsg, DKIMPermError},
		{"test_tlsrpt.txt", "test._domainkey.example.com", record("test_tlsrpt.txt"), rsaMsg, DKIMPermError},
		{"ed25519test.dns", "test._domainkey.example.net", record("ed25519test.dns"), edMsg, DKIMPass},
		{"ed25519test2.msg (Exim)", "sed._domainkey.test.ex", record("eximtest.dns"), toCRLF(read("ed25519test2.msg")), DKIMPass},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := startDNS(t)
			srv.AddRecords(txtRR(c.keyName, c.record))
			r := NewDKIM(DKIMConfig{}, newResolver(t, srv, 0)).Verify(context.Background(), bytes.NewReader(c.msg))
			if len(r.Signatures) != 1 || r.Signatures[0].Result != c.want {
				t.Errorf("got %+v, want one signature %s", r.Signatures, c.want)
			}
		})
	}
}

func pemBlock(t *testing.T, b []byte) []byte {
	t.Helper()
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("no PEM block")
	}
	return blk.Bytes
}
