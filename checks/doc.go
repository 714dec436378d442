// Package checks holds the checks of the inbound gateway and the one DNS
// layer they all ask through. A check returns a result value (what it saw);
// it never decides the SMTP reply: the policy package does that.
//
//   - Resolver (dns.go): stub resolver on github.com/miekg/dns with a
//     TTL-respecting cache, negative caching (RFC 2308), deadlines, one query
//     in flight per name and type, and counters.
//   - DNSBL (dnsbl.go): DNS block and allow lists (RFC 5782), IP and domain
//     zones, code filters, error codes and RFC 5782 section 5 health checks.
//   - SPF (spf.go): RFC 7208 with blitiri.com.ar/go/spf, and the
//     Received-SPF header (RFC 7208 section 9.1).
//   - DKIM (dkim.go, dkimverify.go): RFC 6376, RFC 8301 and RFC 8463
//     verification by our verifier, held to go-msgauth/dkim's results by
//     table and fuzz tests (dkimverify.go says why it is ours).
//   - DMARC (dmarc.go): RFC 7489 policy discovery, alignment and policy
//     selection; go-msgauth/dmarc parses the record.
//   - Authentication-Results (authres.go): RFC 8601 header in
//     go-msgauth/authres's format (held to authres.Format by tests), and
//     removal of forged headers with our authserv-id (RFC 8601 section 5).
//   - Config (config.go): YAML configuration of all of the above.
package checks
