package checks

import (
	"bytes"
	"github.com/emersion/go-msgauth/authres"
	"net/netip"
	"strings"
	"testing"
)

// refStripAuthResults is StripAuthResults as it was before it compared
// field names in place.
func refStripAuthResults(header []byte, authservID string) []byte {
	out := make([]byte, 0, len(header))
	rest := header
	for len(rest) > 0 {
		end := fieldEnd(rest)
		field := rest[:end]
		rest = rest[end:]
		if isBlankLine(field) {
			out = append(out, field...)
			out = append(out, rest...)
			break
		}
		if name, value, ok := strings.Cut(string(field), ":"); ok &&
			strings.EqualFold(strings.TrimRight(name, " \t"), "Authentication-Results") &&
			strings.EqualFold(authservIDOf(value), authservID) {
			continue
		}
		out = append(out, field...)
	}
	return out
}

func FuzzStripAuthResultsReference(f *testing.F) {
	f.Add([]byte("Authentication-Results: mx.example; spf=pass\r\nFrom: a@b\r\n\r\nbody"), "mx.example")
	f.Add([]byte("authentication-results \t:\r\n (c) \"MX.example\"; none\r\nAuthentication-Results: other; none\r\n\r\n"), "mx.EXAMPLE")
	f.Add([]byte("Authentication-Re\u017Fults: mx.example; none\r\n:\r\nX\r\n\r\n"), "mx.example")
	f.Fuzz(func(t *testing.T, hdr []byte, id string) {
		orig := bytes.Clone(hdr)
		got, want := StripAuthResults(hdr, id), refStripAuthResults(hdr, id)
		if !bytes.Equal(got, want) {
			t.Errorf("StripAuthResults(%q, %q) = %q, was %q", hdr, id, got, want)
		}
		if !bytes.Equal(hdr, orig) {
			t.Errorf("StripAuthResults modified its input")
		}
	})
}

// refAuthenticationResults is the first AuthenticationResults, through
// authres.Format: the reference ours is held to.
func refAuthenticationResults(authservID string, in AuthResultsInput) string {
	var rs []authres.Result
	if r := in.IPRev; r != nil {
		rs = append(rs, &authres.GenericResult{Method: "iprev", Value: authres.ResultValue(r.Result),
			Params: cleanParams(map[string]string{"reason": r.Reason, "policy.iprev": r.IP.String()})})
	}
	if r := in.SPF; r != nil {
		p := map[string]string{"reason": r.Err}
		if r.Identity == IdentityHelo {
			p["smtp.helo"] = r.Helo
		} else {
			p["smtp.mailfrom"] = r.Sender
		}
		rs = append(rs, &authres.GenericResult{Method: "spf", Value: authres.ResultValue(r.Result),
			Params: cleanParams(p)})
	}
	if r := in.DKIM; r != nil {
		if len(r.Signatures) == 0 {
			rs = append(rs, &authres.GenericResult{Method: "dkim", Value: authres.ResultNone,
				Params: cleanParams(map[string]string{"reason": r.Err})})
		}
		for _, s := range r.Signatures {
			rs = append(rs, &authres.GenericResult{Method: "dkim", Value: authres.ResultValue(s.Result),
				Params: cleanParams(map[string]string{
					"reason":   s.Reason,
					"header.d": s.Domain,
					"header.i": s.Identifier,
					"header.s": s.Selector,
					"header.a": s.Algorithm,
					"header.b": s.BPrefix,
				})})
		}
	}
	if r := in.DMARC; r != nil {
		rs = append(rs, &authres.GenericResult{Method: "dmarc", Value: authres.ResultValue(r.Result),
			Params: cleanParams(map[string]string{
				"reason":                         r.Reason,
				"header.from":                    r.Domain,
				"policy.dmarc":                   r.Applied,
				"policy.published-domain-policy": r.Policy,
			})})
	}
	// authres.Format leaves a space after a result without properties.
	v := authres.Format(cleanValue(authservID), rs)
	return strings.TrimRight(strings.ReplaceAll(v, " ; ", "; "), " ")
}

func cleanParams(p map[string]string) map[string]string {
	for k, v := range p {
		if v == "" {
			delete(p, k)
			continue
		}
		p[k] = cleanValue(v)
	}
	return p
}

// FuzzAuthenticationResultsReference: any results get the same field value
// from ours and from authres.Format (where the reference's rewriting of
// " ; " cannot touch a value: ours never rewrites one).
func FuzzAuthenticationResultsReference(f *testing.F) {
	f.Add("gw.example.net", "pass", "192.0.2.1", "bounce@example.com", "evil\r\nX: y", "dkim: body hash did not verify", "abc\"def", "quarantine", uint8(0xff))
	f.Add("gw", "", "", "", "", "", "", "", uint8(0))
	f.Fuzz(func(t *testing.T, id, result, ip, sender, helo, reason, odd, applied string, mask uint8) {
		var in AuthResultsInput
		if mask&1 != 0 {
			in.IPRev = &IPRevResult{Result: result, Reason: reason}
			in.IPRev.IP, _ = netip.ParseAddr(ip)
		}
		if mask&2 != 0 {
			in.SPF = &SPFResult{Result: SPFStatus(result), Identity: IdentityMailFrom, Sender: sender, Helo: helo, Err: reason}
			if mask&4 != 0 {
				in.SPF.Identity = IdentityHelo
			}
		}
		if mask&8 != 0 {
			in.DKIM = &DKIMResult{Err: reason}
			if mask&16 != 0 {
				in.DKIM.Signatures = []DKIMSignature{
					{Domain: sender, Selector: odd, Algorithm: "rsa-sha256", Identifier: "@" + sender, Result: DKIMStatus(result), Reason: reason, BPrefix: odd},
					{Domain: helo, Result: DKIMPass, BPrefix: "abcdefgh"},
				}
			}
		}
		if mask&32 != 0 {
			in.DMARC = &DMARCResult{Result: DMARCStatus(result), Domain: sender, Policy: odd, Applied: applied, Reason: reason}
		}
		for _, v := range []string{id, result, ip, sender, helo, reason, odd, applied} {
			if v = cleanValue(v); strings.Contains(v, ";") || strings.HasSuffix(v, " ") {
				return // where the reference's rewriting reaches into values
			}
		}
		if got, want := AuthenticationResults(id, in), refAuthenticationResults(id, in); got != want {
			t.Errorf("got\n%q\nwant\n%q", got, want)
		}
		f := AuthenticationResultsField(id, in)
		if got, want := unfoldAR(f), "Authentication-Results: "+AuthenticationResults(id, in); got != want {
			t.Errorf("field unfolds to\n%q\nwant\n%q", got, want)
		}
		for l := range strings.SplitSeq(strings.TrimSuffix(f, "\r\n"), "\r\n") {
			if len(l) > 998 && len(result) < 600 { // result values are ours, short, and not cut
				t.Errorf("a line of %d octets", len(l))
			}
		}
	})
}
