package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDefaultIsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestExampleFile keeps the documented example loadable.
func TestExampleFile(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile("../gatewayd.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The example names certificate files that do not exist here.
	s := strings.ReplaceAll(string(data), "/etc/gatewayd/tls/cert.pem", filepath.Join(dir, "c.pem"))
	s = strings.ReplaceAll(s, "/etc/gatewayd/tls/key.pem", filepath.Join(dir, "k.pem"))
	os.WriteFile(filepath.Join(dir, "c.pem"), nil, 0o600)
	os.WriteFile(filepath.Join(dir, "k.pem"), nil, 0o600)
	c, err := Parse("example.yaml", []byte(s))
	if err != nil {
		t.Fatal(err)
	}
	if c.Limits.MaxMessageSize != 25<<20 || c.Limits.IdleTimeout.D() != 5*time.Minute || len(c.Upstream.Addrs) != 2 {
		t.Errorf("values not read: %+v", c.Limits)
	}
}

func TestErrorsNameTheKey(t *testing.T) {
	cases := []struct{ in, want string }{
		{"limits:\n  max_recipents: 5\n", `f.yaml:2:3: limits.max_recipents: unknown key (did you mean "max_recipients"?)`},
		{"bogus: 1\n", `f.yaml:1:1: bogus: unknown key`},
		{"limits:\n  idle_timeout: soon\n", `f.yaml:2:17: limits.idle_timeout: "soon" is not a duration`},
		{"limits:\n  max_message_size: lots\n", `f.yaml:2:21: limits.max_message_size: "lots" is not a size`},
		{"limits:\n  max_recipients: many\n", `f.yaml:2:19: limits.max_recipients: cannot unmarshal`},
		{"limits:\n  max_recipients: 5\n", `f.yaml:2:19: limits.max_recipients: must be at least 100`},
		{"domains: []\n", `domains: at least one accepted domain`},
		{"cpus: -1\n", `f.yaml:1:7: cpus: must be from 0 (Go's default) to 1024`},
		{"cpus: 2147483648\n", `f.yaml:1:7: cpus: must be from 0 (Go's default) to 1024`},
		{"cpus: 4294967297\n", `f.yaml:1:7: cpus: must be from 0 (Go's default) to 1024`},
		{"cpus: all\n", `f.yaml:1:7: cpus: cannot unmarshal`},
		// yaml.v3 alone drops a fraction: 0.5 CPUs ran on every CPU.
		{"cpus: 0.5\n", `f.yaml:1:7: cpus: "0.5" is not a whole number`},
		{"limits:\n  max_connections: 1.5\n", `f.yaml:2:20: limits.max_connections: "1.5" is not a whole number`},
		{"greylist:\n  max_memory_entries: 1e5.5\n", `greylist.max_memory_entries:`},
		{"greylist:\n  ipv4_prefix: 24.9\n", `f.yaml:2:16: greylist.ipv4_prefix: "24.9" is not a whole number`},
		{"dkim:\n  max_signatures: .inf\n", `f.yaml:2:19: dkim.max_signatures: ".inf" is not a whole number`},
		{"limits:\n  max_recipients: 99999999999999999999\n", `f.yaml:2:19: limits.max_recipients: "99999999999999999999" is out of range`},
		{"domains: [\"bad domain\"]\n", `f.yaml:1:11: domains[0]: "bad domain" is not a domain name`},
		{"listen: [\"nohost\"]\n", `listen[0]: "nohost" is not host:port`},
		// 0 was taken for the default without a word.
		{"dns:\n  cache_size: 0\n", `f.yaml:2:15: dns.cache_size: must be greater than 0 (leave the key out for the default, 10000; -1 disables the cache)`},
		{"dkim:\n  max_signatures: 0\n", `f.yaml:2:19: dkim.max_signatures: must be greater than 0`},
		{"dns:\n  timeout: 0s\n", `dns.timeout: must be greater than 0`},
		{"dns:\n  udp_socket_queries: 0\n", `dns.udp_socket_queries: must be greater than 0`},
		{"dnsbl:\n  health_interval: 0s\n", `dnsbl.health_interval: must be greater than 0`},
		{"spf:\n  timeout: 0s\n", `spf.timeout: must be greater than 0`},
		{"dkim:\n  timeout: 0s\n", `dkim.timeout: must be greater than 0`},
		{"dmarc:\n  timeout: 0s\n", `dmarc.timeout: must be greater than 0`},
		{"greylist:\n  redis:\n    dial_timeout: 0s\n", `greylist.redis.dial_timeout: must be greater than 0`},
		{"dns:\n  servers: [192.0.2.1, dns.example]\n", `f.yaml:2:24: dns.servers[1]: "dns.example" is not an IP address or IP:port`},
		{"authserv_id: \"mx example\"\n", `f.yaml:1:14: authserv_id: "mx example" is not a token`},
		{"authserv_id: \"mx;x\"\n", `authserv_id: "mx;x" is not a token`},
		{"authserv_id: \"mx(x)\"\n", `authserv_id: "mx(x)" is not a token`},
		// The daemon's start failed on them ("address already in use").
		{"listen: [\"127.0.0.1:2525\", \"127.0.0.1:2525\"]\n", `f.yaml:1:28: listen[1]: "127.0.0.1:2525" is also listen[0]`},
		{"listen: [\"[::1]:25\", \"[0:0::1]:025\"]\n", `listen[1]: "[0:0::1]:025" is also listen[0]`},
		{"metrics:\n  listen: 127.0.0.1:2525\n", `f.yaml:2:11: metrics.listen: "127.0.0.1:2525" is also listen[0]`},
		{"upstream:\n  starttls: maybe\n", `f.yaml:2:13: upstream.starttls: "maybe": want none or require`},
		{"proxy_protocol:\n  trusted: [\"10.0.0.0/33\"]\n", `proxy_protocol.trusted[0]: "10.0.0.0/33" is not an IP address or CIDR`},
		{"tls:\n  cert: /nonexistent.pem\n", `tls: cert and key go together`},
		{"maildir: \"\"\n", `upstream.addrs: no internal MTA and no maildir`},
		{"log:\n  level: loud\n", `log.level: "loud": want debug`},
		{"hostname: a\nhostname: b\n", `f.yaml:2:1: hostname: key given twice`},
		{"listen: 5\n", `listen: want a list`},
		{"hostname: mx.example.com\n---\nbogus_key: 1\n", `f.yaml:3:1: a second YAML document (after ---)`},
		{"hostname: mx.example.com\n---\n[\n", `f.yaml: yaml:`},
	}
	for _, c := range cases {
		_, err := Parse("f.yaml", []byte(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q:\n got %v\nwant %s", c.in, err, c.want)
		}
	}
	// Each of several bad greylist keys is placed in the file, not only
	// the first.
	_, err := Parse("f.yaml", []byte("greylist:\n  delay: 0s\n  fail_mode: x\n  ipv4_prefix: 40\n"))
	want := "f.yaml:2:10: greylist.delay: must be at least 1s, got 0s\n" +
		"f.yaml:4:16: greylist.ipv4_prefix: must be between 8 and 32, got 40\n" +
		`f.yaml:3:14: greylist.fail_mode: must be "open" or "closed", got "x"`
	if err == nil || err.Error() != want {
		t.Errorf("greylist errors:\n got %v\nwant %s", err, want)
	}
	// A key left without a value keeps its default.
	if _, err := Parse("f.yaml", []byte("dns:\n  cache_size:\ndkim:\n  timeout:\n")); err != nil {
		t.Errorf("keys without a value: %v", err)
	}
	// A whole number written as a float is still one.
	c, err := Parse("f.yaml", []byte("limits:\n  max_connections: 1e4\n  max_recipients: 200.0\n"))
	if err != nil || c.Limits.MaxConnections != 10000 || c.Limits.MaxRecipients != 200 {
		t.Errorf("1e4, 200.0: %v %+v", err, c)
	}
}

// TestAliasBomb: aliases of aliases that would expand a small file to
// millions of values are refused quickly, naming the place.
func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("x: &c [")
	for i := range 1000 {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(`"127.0.0.2"`)
	}
	b.WriteString("]\n")
	// x is not a key of ours: put the anchors where the walk reads them.
	in := strings.Replace(b.String(), "x: &c [", "dnsbl:\n  zones:\n    - zone: a.test\n      codes: &c [", 1)
	in += "    - &z {zone: b.test, codes: *c}\n"
	for range 2000 {
		in += "    - *z\n"
	}
	start := time.Now()
	_, err := Parse("f.yaml", []byte(in))
	if err == nil || !strings.Contains(err.Error(), "aliases expand to more than") {
		t.Fatalf("got %v", err)
	}
	t.Logf("refused in %v", time.Since(start))
}

// TestBigScalarAliased: one large value used many times through aliases
// is refused before it costs more than the file could hold.
func TestBigScalarAliased(t *testing.T) {
	in := "hostname: &x \"" + strings.Repeat("x", 1<<20) + "\"\ndomains:\n"
	for range 100 {
		in += "  - *x\n"
	}
	_, err := Parse("f.yaml", []byte(in))
	if err == nil || !strings.Contains(err.Error(), "aliases expand to more than 4 MiB") {
		t.Fatalf("got %.200v", err)
	}
}

// TestLongListWithoutAliases: a long list written out is no alias bomb.
func TestLongListWithoutAliases(t *testing.T) {
	var b strings.Builder
	b.WriteString("domains:\n")
	for i := range 120_000 {
		fmt.Fprintf(&b, "  - d%d.example\n", i)
	}
	b.WriteString("---\n") // a trailing empty document is fine
	c, err := Parse("f.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Domains) != 120_000 {
		t.Errorf("%d domains", len(c.Domains))
	}
}

func TestLoadRefusesAHugeFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(p, []byte("# "+strings.Repeat("x", maxFileSize)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "larger than 4 MiB") {
		t.Errorf("got %v", err)
	}
}

func TestEmptyFileIsDefaults(t *testing.T) {
	c, err := Parse("empty.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen[0] != "127.0.0.1:2525" {
		t.Errorf("got %v", c.Listen)
	}
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]int64{"1024": 1024, "512KiB": 512 << 10, "25MiB": 25 << 20, "1GB": 1e9, "10 MB": 10e6} {
		if got, err := ParseByteSize(in); err != nil || got != want {
			t.Errorf("%s: %d %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "-1", "1TiB", "MiB", "9999999999GiB"} {
		if _, err := ParseByteSize(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	data, _ := os.ReadFile("../gatewayd.example.yaml")
	f.Add(data)
	f.Add([]byte("limits: {max_errors: 3}\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		Parse("fuzz.yaml", in) // must not panic or hang
	})
}

// TestPortsAndTempDir: a port out of 1-65535 and a temp_dir that is not a
// directory are refused at load, naming the key and its place, not found
// at the first bind, dial or large message.
func TestPortsAndTempDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	cases := []struct{ in, want string }{
		{"listen: [\"127.0.0.1:99999\"]\n", `f.yaml:1:10: listen[0]: "127.0.0.1:99999": the port must be a number from 1 to 65535`},
		{"listen: [\"127.0.0.1:-1\"]\n", `f.yaml:1:10: listen[0]: "127.0.0.1:-1": the port must be`},
		{"listen: [\"127.0.0.1:0\"]\n", `f.yaml:1:10: listen[0]: "127.0.0.1:0": the port must be`},
		{"listen: [\"127.0.0.1:\"]\n", `f.yaml:1:10: listen[0]: "127.0.0.1:": the port must be`},
		{"listen: [\"127.0.0.1:nosuchservice\"]\n", `f.yaml:1:10: listen[0]: "127.0.0.1:nosuchservice": the port must be`},
		{"metrics:\n  listen: 127.0.0.1:70000\n", `f.yaml:2:11: metrics.listen: "127.0.0.1:70000": the port must be`},
		{"upstream:\n  addrs: [\"10.0.0.1:0\"]\n", `f.yaml:2:11: upstream.addrs[0]: "10.0.0.1:0": the port must be`},
		{"dns:\n  servers: [\"192.0.2.1\", \"1.2.3.4:99999\"]\n", `f.yaml:2:26: dns.servers[1]: "1.2.3.4:99999": the port must be`},
		{"temp_dir: /nonexistent/tmp\n", `f.yaml:1:11: temp_dir: stat /nonexistent/tmp: no such file or directory`},
		{"temp_dir: " + file + "\n", `f.yaml:1:11: temp_dir: "` + file + `" is not a directory`},
	}
	for _, c := range cases {
		_, err := Parse("f.yaml", []byte(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q:\n got %v\nwant %s", c.in, err, c.want)
		}
	}
	ok := "listen: [\"127.0.0.1:2525\", \"0.0.0.0:smtp\", \"[::1]:65535\"]\nmetrics:\n  listen: localhost:1\n" +
		"upstream:\n  addrs: [\"mta.internal:25\"]\ndns:\n  servers: [\"192.0.2.1\", \"192.0.2.2:53\", \"2001:db8::1\", \"[2001:db8::1]:5353\"]\n" +
		"temp_dir: " + t.TempDir() + "\n"
	if _, err := Parse("f.yaml", []byte(ok)); err != nil {
		t.Errorf("valid addresses refused: %v", err)
	}
}

// TestHostnames: hostname and upstream.helo are sent to other hosts as
// our name; a value that is no domain name is refused, naming the key.
func TestHostnames(t *testing.T) {
	cases := []struct{ in, want string }{
		{"hostname: bad host name\n", `f.yaml:1:11: hostname: "bad host name" is not a domain name`},
		{"hostname: mx_1.example.com\n", `f.yaml:1:11: hostname: "mx_1.example.com" is not a domain name`},
		{"hostname: -mx.example.com\n", `hostname: "-mx.example.com" is not a domain name`},
		{"upstream:\n  helo: bad host name\n", `f.yaml:2:9: upstream.helo: "bad host name" is not a domain name or an address literal`},
		{"upstream:\n  helo: \"[192.0.2.300]\"\n", `f.yaml:2:9: upstream.helo: "[192.0.2.300]" is not`},
		{"upstream:\n  helo: \"[2001:db8::1]\"\n", `upstream.helo: "[2001:db8::1]" is not`},
		{"hostname: .\n", `f.yaml:1:11: hostname: "." is not a domain name`},
		{"hostname: mx.example.com..\n", `hostname: "mx.example.com.." is not a domain name`},
		{"upstream:\n  helo: .\n", `f.yaml:2:9: upstream.helo: "." is not a domain name`},
	}
	for _, c := range cases {
		_, err := Parse("f.yaml", []byte(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q:\n got %v\nwant %s", c.in, err, c.want)
		}
	}
	for _, ok := range []string{
		"hostname: mx.example.com\nupstream:\n  helo: gw1.example.com\n",
		"hostname: mx.example.com.\n",
		"hostname: localhost\n",
		"upstream:\n  helo: \"[192.0.2.1]\"\n",
		"upstream:\n  helo: \"[IPv6:2001:db8::1]\"\n",
	} {
		if _, err := Parse("f.yaml", []byte(ok)); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
}

// TestHostnameTrailingDot: a fully qualified name written with its root
// dot is accepted, and the dot is dropped at load: the name goes into the
// greeting, the Received field and EHLO, where RFC 5321's Domain has none.
func TestHostnameTrailingDot(t *testing.T) {
	c, err := Parse("f.yaml", []byte("hostname: MX.Example.COM.\nupstream:\n  helo: gw1.example.com.\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Hostname != "MX.Example.COM" || c.Upstream.Helo != "gw1.example.com" {
		t.Errorf("hostname %q, upstream.helo %q: want the names without the trailing dot", c.Hostname, c.Upstream.Helo)
	}
}
