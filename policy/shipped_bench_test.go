package policy_test

import (
	"net/netip"
	"testing"

	"github.com/mxgate/gatewayd/checks"
	"github.com/mxgate/gatewayd/policy"
)

// loadShipped loads the shipped rules (../rules) as the daemon would with
// the zones they name.
func loadShipped(tb testing.TB) *policy.Engine {
	tb.Helper()
	e, err := policy.LoadOptions("../rules", policy.Options{Zones: []string{"zen.spamhaus.org", "list.dnswl.org"}})
	if err != nil {
		tb.Fatalf("the shipped rules do not load:\n%v", err)
	}
	return e
}

// listedAtConnect is what the gateway knows of a client listed in ZEN
// (SBL) when it connects: the zone answers and reverse DNS.
func listedAtConnect() *policy.Facts {
	a := netip.MustParseAddr("198.51.100.20")
	return &policy.Facts{Stage: policy.StageConnect, ClientIP: a, ClientPort: 40123,
		IPRev: &checks.IPRevResult{Result: "pass", IP: a, Name: "mx.sender.example"}, ClientName: "mx.sender.example",
		DNSBL: map[string]checks.ZoneResult{
			"zen.spamhaus.org": {Zone: "zen.spamhaus.org", Kind: checks.KindIP, Type: checks.TypeBlock, Subject: a.String(),
				Status: checks.Listed, Listed: true, Codes: []string{"127.0.0.2"},
				Reason: "https://check.spamhaus.org/query/ip/198.51.100.20"},
			"list.dnswl.org": {Zone: "list.dnswl.org", Kind: checks.KindIP, Type: checks.TypeAllow, Subject: a.String(),
				Status: checks.NotListed},
		}}
}

// BenchmarkShippedConnectListed evaluates the shipped rules at connect for
// a client listed in ZEN: zen_sbl_xbl rejects it, rendering its reply
// text and detail.
func BenchmarkShippedConnectListed(b *testing.B) {
	e := loadShipped(b)
	f := listedAtConnect()
	o := e.Evaluate(f)
	want := "Service unavailable; client [198.51.100.20] blocked using zen.spamhaus.org; https://check.spamhaus.org/query/ip/198.51.100.20"
	if o.Action != policy.ActionReject || o.Reply.Text != want || len(o.Errors) > 0 ||
		len(o.Reasons) != 1 || o.Reasons[0].Detail != "codes 127.0.0.2" {
		b.Fatalf("unexpected outcome %+v", o)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		_ = e.Evaluate(f)
	}
}

// BenchmarkShippedConnectClean evaluates the shipped rules at connect for
// a client no zone lists (no rule fires).
func BenchmarkShippedConnectClean(b *testing.B) {
	e := loadShipped(b)
	f := listedAtConnect()
	f.DNSBL["zen.spamhaus.org"] = checks.ZoneResult{Zone: "zen.spamhaus.org", Kind: checks.KindIP, Type: checks.TypeBlock,
		Subject: f.ClientIP.String(), Status: checks.NotListed}
	if o := e.Evaluate(f); o.Action != policy.ActionContinue || len(o.Reasons) != 0 || len(o.Errors) > 0 {
		b.Fatalf("unexpected outcome %+v", o)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		_ = e.Evaluate(f)
	}
}

// BenchmarkShippedDataClean evaluates the shipped rules at end of DATA for
// a message that passes DMARC, with the header section of a typical
// DKIM-signed message: the data rules read two of its fields.
func BenchmarkShippedDataClean(b *testing.B) {
	e := loadShipped(b)
	f := listedAtConnect()
	f.DNSBL["zen.spamhaus.org"] = checks.ZoneResult{Zone: "zen.spamhaus.org", Kind: checks.KindIP, Type: checks.TypeBlock,
		Subject: f.ClientIP.String(), Status: checks.NotListed}
	f.Stage = policy.StageData
	f.DMARC = &checks.DMARCResult{Result: checks.DMARCPass, Domain: "sender.example", Policy: "reject"}
	f.Header = []byte("Received: from mx.sender.example (mx.sender.example [198.51.100.20])\r\n" +
		"\tby mx.example.com with ESMTPS id 4f2a; Mon, 30 Nov 2026 00:00:00 +0000\r\n" +
		"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=sender.example; s=s1;\r\n" +
		"\th=from:to:subject:date:message-id; bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n" +
		"\tb=dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZSBidXQgaXQgaGFzIHRoZSBzaXplIG9mIG9uZQ==\r\n" +
		"From: Alice <alice@sender.example>\r\n" +
		"To: Bob <bob@example.com>\r\n" +
		"Subject: The quarterly figures, as promised\r\n" +
		"Date: Mon, 30 Nov 2026 00:00:00 +0000\r\n" +
		"Message-ID: <20261130000000.4f2a@sender.example>\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Content-Transfer-Encoding: 8bit\r\n")
	if o := e.Evaluate(f); o.Action != policy.ActionContinue || len(o.Errors) > 0 {
		b.Fatalf("unexpected outcome %+v", o)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		_ = e.Evaluate(f)
	}
}
