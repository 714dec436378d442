package greylist

import (
	"strings"
	"testing"
)

// A sender whose normalised form is cut at maxPartLen must not have the
// cut-off text taken as its domain: "aaa…@partner.example.evil.test" is
// not a partner.example sender.
func TestAllowDomainNotByTruncation(t *testing.T) {
	cfg := testConfig()
	cfg.AllowDomains = []string{"partner.example"}
	g := newGreylister(t, cfg, NewMemoryStore(100), newClock())
	local := strings.Repeat("x", maxPartLen-len("@partner.example"))
	d := check(t, g, "192.0.2.1", local+"@partner.example.evil.test", "bob@example.com")
	if d.Action != Defer {
		t.Errorf("long sender at evil.test: %v %v, want defer", d.Action, d.Reason)
	}
	// The real domain still allows, however long the local part.
	d = check(t, g, "192.0.2.1", local+"@mail.partner.example", "bob@example.com")
	if d.Action != Allowed || d.Reason != ReasonAllowSender {
		t.Errorf("long sender at partner: %v %v, want allowed", d.Action, d.Reason)
	}
}
