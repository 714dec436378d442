package gateway

import (
	"bufio"
	"bytes"
	"net/textproto"
	"testing"
)

func dotStuffed(t testing.TB, chunks ...string) string {
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	d := newDotWriter(bw)
	for _, c := range chunks {
		if n, err := d.Write([]byte(c)); n != len(c) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", c, n, err)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	bw.Flush()
	return out.String()
}

func TestDotWriter(t *testing.T) {
	for _, tc := range []struct {
		in   []string // written in these pieces
		want string
	}{
		{nil, "\r\n.\r\n"},
		{[]string{""}, "\r\n.\r\n"},
		{[]string{"a\r\n"}, "a\r\n.\r\n"},
		{[]string{"a"}, "a\r\n.\r\n"},
		{[]string{"a\r"}, "a\r\n.\r\n"},
		{[]string{".\r\n"}, "..\r\n.\r\n"},
		{[]string{"a\r\n.b\r\n..\r\n"}, "a\r\n..b\r\n...\r\n.\r\n"},
		{[]string{"a\r", "\n", ".", "b\r\n"}, "a\r\n..b\r\n.\r\n"},
		{[]string{"a\r\n", ".\r\n"}, "a\r\n..\r\n.\r\n"},
		{[]string{"a\n.b\n"}, "a\r\n..b\r\n.\r\n"}, // bare LF: CRLF
		{[]string{"\n"}, "\r\n.\r\n"},              // an empty first line
		{[]string{"a\r.b\r\n"}, "a\r.b\r\n.\r\n"},  // no line starts after a bare CR
		{[]string{"a\r\r\n"}, "a\r\r\n.\r\n"},      // a bare CR stays as it is
		{[]string{"x\r\n\r\n.\r\n"}, "x\r\n\r\n..\r\n.\r\n"},
	} {
		if got := dotStuffed(t, tc.in...); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzDotWriter holds dotWriter to net/textproto's DotWriter on content
// without a bare CR, written in pieces cut where the fuzzer says.
func FuzzDotWriter(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\n.line\r\n..\r\n.\r\nend"), []byte{3, 1, 9})
	f.Add([]byte("a\n.\nb"), []byte{1})
	f.Add([]byte(".\r\n"), []byte{})
	f.Fuzz(func(t *testing.T, msg, cuts []byte) {
		for i, b := range msg {
			if b == '\r' && (i+1 == len(msg) || msg[i+1] != '\n') {
				return // bare CR: the writers differ on purpose
			}
		}
		var want bytes.Buffer
		tw := textproto.NewWriter(bufio.NewWriter(&want))
		dw := tw.DotWriter()
		dw.Write(msg)
		dw.Close() // flushes
		var chunks []string
		rest := msg
		for _, c := range cuts {
			n := min(int(c), len(rest))
			chunks = append(chunks, string(rest[:n]))
			rest = rest[n:]
		}
		chunks = append(chunks, string(rest))
		if got := dotStuffed(t, chunks...); got != want.String() {
			t.Fatalf("%q in %q:\n got %q\nwant %q", msg, chunks, got, want.String())
		}
	})
}

func BenchmarkDotWriter(b *testing.B) {
	msg := stuffedBody(4096)
	for _, w := range []string{"textproto", "ours"} {
		b.Run(w, func(b *testing.B) {
			bw := bufio.NewWriterSize(discardWriter{}, 8192)
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				if w == "ours" {
					d := newDotWriter(bw)
					d.Write(msg)
					d.Close()
				} else {
					d := textproto.NewWriter(bw).DotWriter()
					d.Write(msg)
					d.Close()
				}
				bw.Flush()
			}
		})
	}
}

type discardWriter struct{}

func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }

// stuffedBody is a message of about n octets of 76-octet lines, some
// starting with a dot.
func stuffedBody(n int) []byte {
	var b bytes.Buffer
	b.WriteString("From: a@example.com\r\nSubject: bench\r\n\r\n")
	for i := 0; b.Len() < n; i++ {
		if i%10 == 0 {
			b.WriteString(".")
		}
		b.WriteString("0123456789012345678901234567890123456789012345678901234567890123456789012345\r\n")
	}
	return b.Bytes()
}
