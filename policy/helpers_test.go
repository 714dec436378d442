package policy_test

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/mxgate/gatewayd/checks"
	"github.com/mxgate/gatewayd/policy"
)

// fact changes one part of the facts of a test case.
type fact func(*policy.Facts)

func facts(stage policy.Stage, fs ...fact) *policy.Facts {
	f := &policy.Facts{Stage: stage, ClientIP: netip.MustParseAddr("203.0.113.1"), ClientPort: 40000}
	for _, fn := range fs {
		fn(f)
	}
	return f
}

func ip(s string) fact { return func(f *policy.Facts) { f.ClientIP = netip.MustParseAddr(s) } }

func rdns(name string) fact {
	return func(f *policy.Facts) {
		f.ClientName = name
		res := "pass"
		if name == "" {
			res = "fail"
		}
		f.IPRev = &checks.IPRevResult{Result: res, IP: f.ClientIP, Name: name}
	}
}

func helo(s string) fact { return func(f *policy.Facts) { f.Helo = s } }

func from(addr string) fact {
	return func(f *policy.Facts) {
		f.MailFrom = addr
		f.NullSender = addr == ""
		if _, d, ok := strings.Cut(addr, "@"); ok {
			f.MailFromDomain = strings.ToLower(d)
		}
	}
}

func rcpt(addr string) fact {
	return func(f *policy.Facts) {
		f.Rcpt = addr
		_, d, _ := strings.Cut(addr, "@")
		f.RcptDomain = strings.ToLower(d)
		f.Rcpts = append(f.Rcpts, addr)
	}
}

func rcpts(addrs ...string) fact { return func(f *policy.Facts) { f.Rcpts = addrs } }

// zone records an answer of an IP zone: status "listed" with codes, or
// "notlisted", "zoneerror", "temperror".
func zone(name string, status checks.ListStatus, reason string, codes ...string) fact {
	return func(f *policy.Facts) {
		if f.DNSBL == nil {
			f.DNSBL = map[string]checks.ZoneResult{}
		}
		r := checks.ZoneResult{Zone: name, Kind: checks.KindIP, Type: checks.TypeBlock, Subject: f.ClientIP.String(),
			Status: status, Listed: status == checks.Listed, Codes: codes, Reason: reason}
		if status == checks.ListError {
			r.Error = "error code " + strings.Join(codes, ",")
		}
		if strings.Contains(name, "dnswl") {
			r.Type = checks.TypeAllow
		}
		f.DNSBL[name] = r
	}
}

func spf(result checks.SPFStatus, domain string) fact {
	return func(f *policy.Facts) {
		f.SPF = &checks.SPFResult{Result: result, Domain: domain, Identity: checks.IdentityMailFrom}
	}
}

func dkim(sigs ...string) fact { // "domain=result"
	return func(f *policy.Facts) {
		f.DKIM = &checks.DKIMResult{}
		for _, s := range sigs {
			d, r, _ := strings.Cut(s, "=")
			f.DKIM.Signatures = append(f.DKIM.Signatures, checks.DKIMSignature{Domain: d, Result: checks.DKIMStatus(r)})
		}
	}
}

func dmarc(result checks.DMARCStatus, domain, policyP, applied string) fact {
	return func(f *policy.Facts) {
		f.DMARC = &checks.DMARCResult{Result: result, Domain: domain, Policy: policyP, Applied: applied, Pct: 100}
	}
}

func header(lines ...string) fact {
	return func(f *policy.Facts) { f.Header = []byte(strings.Join(lines, "\r\n") + "\r\n") }
}

func size(n int64) fact       { return func(f *policy.Facts) { f.Size = n } }
func score(x float64) fact    { return func(f *policy.Facts) { f.Score = x } }
func greylist(s string) fact  { return func(f *policy.Facts) { f.Greylist = s } }
func tls(version string) fact { return func(f *policy.Facts) { f.TLS, f.TLSVersion = true, version } }

// reasons renders the reasons of an outcome as "rule" or "rule:score".
func reasons(o policy.Outcome) []string {
	var out []string
	for _, r := range o.Reasons {
		if r.Score != 0 {
			out = append(out, fmt.Sprintf("%s:%g", r.Rule, r.Score))
		} else {
			out = append(out, r.Rule)
		}
	}
	return out
}
