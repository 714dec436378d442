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

// The same for allow_recipients: the cut of a long local part at one
// accepted domain must not read as a recipient at another.
func TestAllowRecipientNotByTruncation(t *testing.T) {
	cfg := testConfig()
	cfg.AllowRecipients = []string{"@example.com", "postmaster@"}
	g := newGreylister(t, cfg, NewMemoryStore(100), newClock())
	local := strings.Repeat("x", maxPartLen-len("@example.com"))
	d := check(t, g, "192.0.2.1", "a@sender.test", local+"@example.com.au")
	if d.Action != Defer {
		t.Errorf("long recipient at example.com.au: %v %v, want defer", d.Action, d.Reason)
	}
	for _, rcpt := range []string{local + "@example.com", local + "yy@example.com", "Bob@Example.COM.", "postmaster@example.com.au"} {
		d = check(t, g, "192.0.2.1", "a@sender.test", rcpt)
		if d.Action != Allowed || d.Reason != ReasonAllowRcpt {
			t.Errorf("%s: %v %v, want allowed", rcpt, d.Action, d.Reason)
		}
	}
}

// The entries of allow_recipients are whole too: a local@ entry longer
// than maxPartLen allows that local part, not every one the cut of the
// entry begins, and a long full address allows itself.
func TestAllowRecipientEntryNotCut(t *testing.T) {
	long := strings.Repeat("y", maxPartLen+20)
	cfg := testConfig()
	cfg.AllowRecipients = []string{long + "@", "Z" + long + "@Example.COM"}
	g := newGreylister(t, cfg, NewMemoryStore(100), newClock())
	for _, rcpt := range []string{long[:maxPartLen] + "other@example.com", long + "x@example.com", "z" + long + "@example.com.au"} {
		if d := check(t, g, "192.0.2.1", "a@sender.test", rcpt); d.Action != Defer {
			t.Errorf("%s: %v %v, want defer", rcpt, d.Action, d.Reason)
		}
	}
	for _, rcpt := range []string{long + "@example.com", long + "@example.org", "z" + long + "@example.com"} {
		if d := check(t, g, "192.0.2.2", "a@sender.test", rcpt); d.Action != Allowed || d.Reason != ReasonAllowRcpt {
			t.Errorf("%s: %v %v, want allowed", rcpt, d.Action, d.Reason)
		}
	}
}
