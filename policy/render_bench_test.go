package policy

import (
	"net/netip"
	"testing"

	"github.com/mxgate/gatewayd/checks"
)

// shippedShapes are the template shapes of the shipped rules
// (rules/*.yaml), by the rule that uses them.
var shippedShapes = []struct{ name, src string }{
	{"zen_reply", `Service unavailable; client [{{ .ClientIP }}] blocked using zen.spamhaus.org; {{ .ZoneReason "zen.spamhaus.org" }}`},
	{"zen_detail", `codes {{ .ZoneCodes "zen.spamhaus.org" }}`},
	{"zen_unusable", `zen.spamhaus.org answered with an error code: {{ (index .DNSBL "zen.spamhaus.org").Error }}; query it through your own resolver`},
	{"spf_detail", `SPF fail for {{ .SPF.Domain }}`},
	{"dmarc_reply", `Message rejected: the DMARC policy of {{ .DMARC.Domain }} says to reject mail that fails authentication`},
	{"score_header", `{{ printf "%.1f" .Score }}`},
	{"reject_reply", `Refused: too many signs of spam (score {{ printf "%.1f" .Score }})`},
	{"constant", `DMARC policy of the From domain unavailable, try again later`},
}

// benchData is facts with every check a shipped template reads.
func benchData() TemplateData {
	a := netip.MustParseAddr("198.51.100.20")
	f := &Facts{Stage: StageData, ClientIP: a, ClientPort: 40123, Helo: "mx.sender.example",
		MailFrom: "alice@sender.example", MailFromDomain: "sender.example",
		DNSBL: map[string]checks.ZoneResult{
			"zen.spamhaus.org": {Zone: "zen.spamhaus.org", Kind: checks.KindIP, Type: checks.TypeBlock, Subject: a.String(),
				Status: checks.Listed, Listed: true, Codes: []string{"127.0.0.2", "127.0.0.4"},
				Reason: "https://check.spamhaus.org/query/ip/198.51.100.20", Error: "error code 127.255.255.254"},
		},
		SPF:   &checks.SPFResult{Result: checks.SPFFail, Domain: "sender.example"},
		DMARC: &checks.DMARCResult{Result: checks.DMARCFail, Domain: "sender.example", Applied: "reject"},
	}
	return TemplateData{Facts: f, Rule: "zen_sbl_xbl", Score: 11.5}
}

// BenchmarkRender renders each shipped template shape as the engine does.
func BenchmarkRender(b *testing.B) {
	d := benchData()
	for _, s := range shippedShapes {
		t, _, err := parseTemplate("reply", s.src)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(s.name, func(b *testing.B) {
			if _, err := render(t, d, maxReplyText); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for range b.N {
				_, _ = render(t, d, maxReplyText)
			}
		})
	}
}
