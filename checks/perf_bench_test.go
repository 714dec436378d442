package checks

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
)

// The benchmarks of this file measure the per-message cost of the DKIM and
// DMARC checks as the gateway runs them (make bench's message: relaxed/
// relaxed rsa-sha256 with a 2048-bit key, seven signed fields, a few
// trace fields on top), with a warm DNS cache:
//
//	go test ./checks -run '^$' -bench 'Gateway' -benchmem -count 5
//
// Besides ns/op (wall clock) they report cpu-ns/op, the process's CPU
// time per operation over all its threads, so that garbage collection
// done in the background counts too. Both vary with other load on a
// shared machine: compare medians of runs of old and new code taken in
// turns.

// gatewayMessage builds a signed message of about size octets shaped like
// make bench's, with two Received fields added after signing as a relay
// would.
func gatewayMessage(b testing.TB, size int) []byte {
	b.Helper()
	var msg strings.Builder
	msg.WriteString("From: Bench Sender <sender@dkim.example>\r\nTo: <rcpt@receiver.example>\r\n" +
		"Subject: gatewayd benchmark message\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\n" +
		"Message-ID: <bench.1764324000000000000@dkim.example>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=us-ascii\r\n\r\n")
	line := "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n"
	for msg.Len()+len(line) <= size-600 {
		msg.WriteString(line)
	}
	signed := signWith(b, []byte(msg.String()), "rsa", loadKey(b, "rsa.pem"), func(o *dkim.SignOptions) {
		o.HeaderCanonicalization = dkim.CanonicalizationRelaxed
		o.BodyCanonicalization = dkim.CanonicalizationRelaxed
		o.HeaderKeys = []string{"From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"}
	})
	trace := "Received: from mail.dkim.example (mail.dkim.example [192.0.2.10])\r\n" +
		"\tby mx.receiver.example with ESMTPS id 4AB12C3D4E\r\n\tfor <rcpt@receiver.example>; Sat, 28 Nov 2026 10:00:01 +0000\r\n" +
		"Received: from client.dkim.example (client.dkim.example [192.0.2.20])\r\n" +
		"\tby mail.dkim.example with ESMTPSA id 9F8E7D6C5B; Sat, 28 Nov 2026 10:00:00 +0000\r\n"
	return append([]byte(trace), signed...)
}

// cpuMeter reports cpu-ns/op for the operations of a benchmark: call it
// before the loop and call the function it returns after.
func cpuMeter(b *testing.B) func() {
	start, ok := processCPU()
	return func() {
		end, _ := processCPU()
		if ok && b.N > 0 {
			b.ReportMetric(float64(end-start)/float64(b.N), "cpu-ns/op")
		}
	}
}

func BenchmarkGatewayDKIMVerify(b *testing.B) {
	srv := startDNS(b, "dkim/keys.zone")
	d := NewDKIM(DKIMConfig{}, newResolver(b, srv, 0))
	for _, size := range []int{4 << 10, 1 << 20} {
		msg := gatewayMessage(b, size)
		// Warm the cache.
		if res := d.Verify(context.Background(), bytes.NewReader(msg)); !res.Pass() {
			b.Fatalf("%+v", res)
		}
		b.Run(fmt.Sprintf("%dKB", size>>10), func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			done := cpuMeter(b)
			for b.Loop() {
				res := d.Verify(context.Background(), bytes.NewReader(msg))
				if !res.Pass() {
					b.Fatalf("%+v", res)
				}
			}
			done()
		})
	}
}

// benchHeader returns the header section of the 4 KB gateway message.
func benchHeader(b testing.TB) []byte {
	msg := gatewayMessage(b, 4<<10)
	i := bytes.Index(msg, []byte("\r\n\r\n"))
	return msg[:i+4]
}

func BenchmarkGatewayFromDomains(b *testing.B) {
	hdr := benchHeader(b)
	b.ReportAllocs()
	done := cpuMeter(b)
	for b.Loop() {
		ds, n, err := FromDomains(hdr)
		if err != nil || n != 1 || len(ds) != 1 {
			b.Fatal(ds, n, err)
		}
	}
	done()
}

func BenchmarkGatewayDMARCCheck(b *testing.B) {
	srv := startDNS(b, "dmarc.zone")
	d := NewDMARC(DMARCConfig{}, newResolver(b, srv, 0))
	hdr := bytes.Replace(benchHeader(b), []byte("sender@dkim.example"), []byte("sender@reject.example"), 1)
	in := DMARCInput{Header: hdr, SPF: SPFResult{Result: SPFPass, Domain: "mail.reject.example"},
		DKIM: dkimPass("reject.example")}
	if r := d.Check(context.Background(), in); r.Result != DMARCPass {
		b.Fatalf("%+v", r)
	}
	b.ReportAllocs()
	done := cpuMeter(b)
	for b.Loop() {
		if r := d.Check(context.Background(), in); r.Result != DMARCPass {
			b.Fatalf("%+v", r)
		}
	}
	done()
}

// BenchmarkGatewayHeaderFields is the rules' header() reading the 4 KB
// message's header.
func BenchmarkGatewayHeaderFields(b *testing.B) {
	hdr := benchHeader(b)
	b.ReportAllocs()
	done := cpuMeter(b)
	for b.Loop() {
		if len(HeaderFields(hdr)) != 10 {
			b.Fatal(len(HeaderFields(hdr)))
		}
	}
	done()
}

// BenchmarkGatewayAuthResults is what the gateway adds to and removes from
// each relayed header: our Authentication-Results, and any forged one.
func BenchmarkGatewayAuthResults(b *testing.B) {
	hdr := benchHeader(b)
	spf := SPFResult{Result: SPFPass, Domain: "dkim.example", Sender: "sender@dkim.example"}
	dkimRes := DKIMResult{Signatures: []DKIMSignature{{Domain: "dkim.example", Selector: "rsa",
		Algorithm: "rsa-sha256", Identifier: "@dkim.example", Result: DKIMPass, BPrefix: "abcdefgh"}}}
	dmarcRes := DMARCResult{Result: DMARCPass, Domain: "dkim.example", Policy: "reject"}
	in := AuthResultsInput{SPF: &spf, DKIM: &dkimRes, DMARC: &dmarcRes}
	b.ReportAllocs()
	done := cpuMeter(b)
	for b.Loop() {
		if AuthenticationResults("mx.receiver.example", in) == "" {
			b.Fatal()
		}
		if len(StripAuthResults(hdr, "mx.receiver.example")) != len(hdr) {
			b.Fatal()
		}
	}
	done()
}
