package policy

import (
	"net/netip"
	"strings"

	"github.com/mxgate/gatewayd/checks"
)

// Facts is everything a rule condition can see at a stage. The gateway fills
// it from the session and the check results; fields of checks that have not
// run (or that this stage cannot know yet) are nil or empty.
type Facts struct {
	Stage Stage

	ClientIP   netip.Addr
	ClientPort int
	// ClientName is the client's verified reverse DNS name (FCrDNS), ""
	// when there is none or it did not verify.
	ClientName string
	Helo       string
	TLS        bool
	TLSVersion string // "TLS1.3", "" without TLS

	MailFrom       string // envelope sender, "" for the null sender
	MailFromDomain string // lower case, "" for the null sender
	NullSender     bool

	Rcpt       string   // the recipient judged (rcpt stage)
	RcptDomain string   // its domain, lower case
	Rcpts      []string // recipients accepted so far (data stage: all)

	// DNSBL holds the result of every configured IP zone (block and allow
	// lists), by zone name. DomainBL holds the domain-list results, by
	// zone name and then by what was checked: "helo", "mail_from",
	// "from" (the From header domain, data stage).
	DNSBL    map[string]checks.ZoneResult
	DomainBL map[string]map[string]checks.ZoneResult

	IPRev *checks.IPRevResult
	SPF   *checks.SPFResult
	DKIM  *checks.DKIMResult
	DMARC *checks.DMARCResult

	// Greylist is the greylisting state of this recipient, known once a
	// greylist decision has been taken (rcpt stage): "" (not asked),
	// "pass", "defer", "allowed" (static allow list), "autoallowed"
	// (the client network passed often enough), "failopen" (the store
	// was unreachable and we let it pass).
	Greylist string

	// Header is the message's header section (data stage), CRLF lines.
	Header []byte
	Size   int64

	// Score is the score so far in this transaction (connect-stage scores
	// carry into every transaction of the session).
	Score float64
}

// HeaderValues returns the unfolded values of every header field named name
// (case-insensitive), in order.
func (f *Facts) HeaderValues(name string) []string {
	var out []string
	for _, h := range checks.HeaderFields(f.Header) {
		if strings.EqualFold(h.Name, name) {
			out = append(out, strings.TrimSpace(h.Value))
		}
	}
	return out
}
