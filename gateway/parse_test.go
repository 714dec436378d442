package gateway

import (
	"bufio"
	"bytes"
	"math"
	"strings"
	"testing"
)

func TestParsePathArg(t *testing.T) {
	cases := []struct {
		in, local, domain, route, params string
		null, bad                        bool
	}{
		{in: "<a@b.test>", local: "a", domain: "b.test"},
		{in: " <A.B@EXAMPLE.com> SIZE=10", local: "A.B", domain: "example.com", params: "SIZE=10"},
		{in: "<>", null: true},
		{in: "<@r1.test,@r2.test:u@d.test>", local: "u", domain: "d.test", route: "@r1.test,@r2.test"},
		{in: `<"a b"@d.test>`, local: "a b", domain: "d.test"},
		{in: `<"x@y.test"@d.test>`, local: "x@y.test", domain: "d.test"},
		{in: `<"q\"t"@d.test>`, local: `q"t`, domain: "d.test"},
		{in: "<u@[192.0.2.1]>", local: "u", domain: "[192.0.2.1]"},
		{in: "<u@[IPv6:2001:DB8::1]>", local: "u", domain: "[ipv6:2001:db8::1]"},
		{in: `<a@[x"> NOTIFY=NEVER "]>`, bad: true},
		{in: "<a@[192.0.2.1 x]>", bad: true},
		{in: "<a@[]]>", bad: true},
		{in: "<a@[x]>", bad: true},
		{in: "<a@[IPv6:192.0.2.1]>", bad: true},
		{in: "<a@[2001:db8::1]>", bad: true},
		{in: "<a@[IPv6:fe80::1%eth0]>", bad: true},
		{in: "<ü@bücher.test>", local: "ü", domain: "xn--bcher-kva.test"},
		{in: "<news@AB--cd.test>", local: "news", domain: "ab--cd.test"}, // a host name, though UTS #46 Lookup refuses it
		{in: "a@b.test", bad: true},
		{in: "<a@b.test", bad: true},
		{in: "<a@b.test>x", bad: true},
		{in: "<a@@b.test>", bad: true},
		{in: "<a..b@d.test>", bad: true},
		{in: "<.a@d.test>", bad: true},
		{in: "<a@-d.test>", bad: true},
		{in: "<a@d..test>", bad: true},
		{in: "<@r1.test:>", bad: true},
		{in: "<a b@d.test>", bad: true},
		{in: "<a@d.test\xff>", bad: true},
		{in: `<"unterminated@d.test>`, bad: true},
		// IDNA mapping makes a domain the ASCII syntax refuses.
		{in: "<a@example.com.>", bad: true},
		{in: "<a@example.com\u3002>", bad: true},
		{in: "<a@example.com\uff0e>", bad: true},
		{in: "<a@\u3002example.com>", bad: true},
		{in: "<a@example\u3002\u3002com>", bad: true},
		{in: "<a@\u00ad>", bad: true},
		{in: "<a@x\u3002\u00ad>", bad: true},
		{in: "<a@EXAMPLE\u3002COM>", local: "a", domain: "example.com"},
	}
	for _, c := range cases {
		a, params, err := parsePathArg(c.in, true)
		if c.bad {
			if err == nil {
				t.Errorf("%q: want an error, got %+v", c.in, a)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if c.null != a.IsNull() || a.Local != c.local || a.Domain != c.domain || a.Route != c.route || params != c.params {
			t.Errorf("%q: got %+v params %q", c.in, a, params)
		}
	}
	if _, _, err := parsePathArg("<>", false); err == nil {
		t.Error("null path accepted for RCPT")
	}
}

func TestAddressString(t *testing.T) {
	for in, want := range map[string]string{
		"<a@b.test>":          "a@b.test",
		`<"a b"@d.test>`:      `"a b"@d.test`,
		`<"x@y.test"@d.test>`: `"x@y.test"@d.test`,
	} {
		a, _, err := parsePathArg(in, false)
		if err != nil || a.String() != want {
			t.Errorf("%s: got %q, %v; want %q", in, a.String(), err, want)
		}
	}
}

func TestParseParams(t *testing.T) {
	ps, err := parseParams("SIZE=100 body=8BITMIME SMTPUTF8")
	if err != nil || len(ps) != 3 || ps[1].key != "BODY" || ps[1].value != "8BITMIME" || ps[2].key != "SMTPUTF8" {
		t.Fatalf("got %+v %v", ps, err)
	}
	for _, bad := range []string{"=x", "SIZE=", "SI_ZE=1", "A=b=c"} {
		if _, err := parseParams(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestDataReader runs the DATA state machine over byte sequences.
func TestDataReader(t *testing.T) {
	cases := []struct {
		name, in, content   string
		bareLF, bareCR, nul bool
		rest                string // what remains unread after the end marker
	}{
		{name: "empty", in: ".\r\n", content: ""},
		{name: "simple", in: "a\r\nb\r\n.\r\nNEXT", content: "a\r\nb\r\n", rest: "NEXT"},
		{name: "unstuff", in: "..a\r\n.\r\n", content: ".a\r\n"},
		{name: "dot-only-stuffed", in: "..\r\n.\r\n", content: ".\r\n"},
		{name: "bare LF", in: "a\nb\r\n.\r\n", content: "a\nb\r\n", bareLF: true},
		{name: "bare CR", in: "a\rb\r\n.\r\n", content: "a\rb\r\n", bareCR: true},
		{name: "NUL", in: "a\x00b\r\n.\r\n", content: "a\x00b\r\n", nul: true},
		{name: "LF dot LF is content", in: "a\n.\nb\r\n.\r\n", content: "a\n.\nb\r\n", bareLF: true},
		{name: "dot CR x", in: ".\rx\r\n.\r\n", content: "\rx\r\n", bareCR: true},
		{name: "CR CR LF", in: "a\r\r\n.\r\n", content: "a\r\r\n", bareCR: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Feed through a tiny buffer too, to cross chunk boundaries.
			for _, size := range []int{16, 4096} {
				var out bytes.Buffer
				r := bufio.NewReaderSize(strings.NewReader(c.in), size)
				d := dataReader{r: r, w: &out}
				if _, err := d.run(); err != nil {
					t.Fatalf("size %d: %v", size, err)
				}
				if out.String() != c.content || d.bareLF != c.bareLF || d.bareCR != c.bareCR || d.nul != c.nul {
					t.Errorf("size %d: content %q LF %v CR %v NUL %v", size, out.String(), d.bareLF, d.bareCR, d.nul)
				}
				rest, _ := r.ReadString(0)
				if rest != c.rest {
					t.Errorf("size %d: rest %q, want %q", size, rest, c.rest)
				}
			}
		})
	}
}

// FuzzDataReader: for any input, the end is only ever after CR LF "." CR LF
// (or "." CR LF at the start), and the content of a clean message is the
// input with dot-stuffing undone.
func FuzzDataReader(f *testing.F) {
	for _, s := range []string{".\r\n", "a\r\n.\r\n", "a\n.\n", "\r\n.\r\r\n", "..\r\n.\r\n", "a\r.\r\n.\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		src := bytes.NewReader(in)
		r := bufio.NewReaderSize(src, 16)
		d := dataReader{r: r, w: &out, max: 1 << 20}
		_, err := d.run()
		consumed := len(in) - r.Buffered() - src.Len()
		if err == nil {
			// Ended: the consumed input ends with the marker at a line start.
			got := in[:consumed]
			if !(bytes.Equal(got, []byte(".\r\n")) || bytes.HasSuffix(got, []byte("\r\n.\r\n"))) {
				t.Fatalf("ended without a proper end marker: %q", got)
			}
			// No earlier proper marker was skipped.
			if i := bytes.Index(append([]byte("\r\n"), got...), []byte("\r\n.\r\n")); i+5 != consumed+2 && !bytes.HasPrefix(got, []byte(".\r\n")) {
				t.Fatalf("missed an earlier end marker in %q", got)
			}
			if !d.bareLF && !d.bareCR && !d.nul {
				// Clean: the content is the input's lines, each with one
				// leading dot removed (RFC 5321 section 4.5.2).
				var want strings.Builder
				for _, l := range strings.SplitAfter(string(got[:consumed-3]), "\r\n") {
					want.WriteString(strings.TrimPrefix(l, "."))
				}
				if out.String() != want.String() {
					t.Fatalf("content %q, want %q (input %q)", out.String(), want.String(), got)
				}
			}
		}
	})
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"<a@b.test>", "<>", `<"a@b"@c.test> SIZE=1`, "<@a,@b:c@d>", "<ü@ü.test>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, _, err := parsePathArg(s, true)
		if err != nil || a.IsNull() {
			return
		}
		// What we parsed renders to a path that parses to the same address.
		b, _, err := parsePathArg("<"+a.String()+">", false)
		if err != nil {
			t.Fatalf("%q parsed to %+v, whose rendering %q does not parse: %v", s, a, a.String(), err)
		}
		if b.Local != a.Local || b.Domain != a.Domain {
			t.Fatalf("round trip: %+v -> %+v", a, b)
		}
	})
}

func FuzzCommandLine(f *testing.F) {
	for _, s := range []string{"EHLO x\r\n", "a\n", "a\rb\r\n", strings.Repeat("x", 5000) + "\r\nNEXT\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReaderSize(bytes.NewReader(in), 64)
		var scratch []byte
		for {
			line, err := readCommandLine(r, 512, &scratch)
			if err == errLineTooLong || err == errBareLine {
				continue
			}
			if err != nil {
				return
			}
			if len(line) > 512 || bytes.ContainsAny(line, "\r\n") {
				t.Fatalf("bad line returned: %q", line)
			}
		}
	})
}

// FuzzParseParams: ESMTP parameters parse or fail, never panic, and what
// parses has upper-case keys without '='.
func FuzzParseParams(f *testing.F) {
	for _, s := range []string{"SIZE=100 BODY=8BITMIME", "SMTPUTF8", "=x", "A=b=c", "K=\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := parseParams(s)
		if err != nil {
			return
		}
		for _, p := range ps {
			if p.key == "" || p.key != strings.ToUpper(p.key) || strings.Contains(p.key, "=") {
				t.Fatalf("%q: bad key %q", s, p.key)
			}
		}
	})
}

// FuzzSplitHeader: the header section and the rest always put the message
// back together.
func FuzzSplitHeader(f *testing.F) {
	for _, s := range []string{"", "\r\n", "a: b\r\n\r\nbody", "a: b\r\n", "a\r\n\r\n\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		hdr, off, ok := splitHeader(msg)
		if off > len(msg) || len(hdr) > off {
			t.Fatalf("%q: header %d, body offset %d", msg, len(hdr), off)
		}
		if !bytes.HasPrefix(msg, hdr) {
			t.Fatalf("%q: header is not the message's prefix", msg)
		}
		if ok && !bytes.Equal(msg[len(hdr):off], []byte("\r\n")) {
			t.Fatalf("%q: between header and body %q, want the empty line", msg, msg[len(hdr):off])
		}
	})
}

func TestParseSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"4200", 4200, true},
		{"99999999999999999999999", math.MaxInt64, true}, // refused later with 552, not as syntax
		{"+10", 0, false},
		{"-1", 0, false},
		{"", 0, false},
		{"1e3", 0, false},
	} {
		if n, ok := parseSize(c.in); n != c.want || ok != c.ok {
			t.Errorf("parseSize(%q) = %d, %v; want %d, %v", c.in, n, ok, c.want, c.ok)
		}
	}
}
