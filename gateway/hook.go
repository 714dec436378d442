package gateway

import (
	"context"
	"crypto/tls"
	"io"
	"net/netip"

	"github.com/mxgate/gatewayd/checks"
	"github.com/mxgate/gatewayd/policy"
)

// Hook judges a session at each stage. The gateway calls Decide at connect
// (before the greeting), HELO/EHLO, MAIL, each RCPT and end of DATA; a
// terminal verdict ends the stage with its reply. Checks, greylisting and
// the rule engine plug in here; the gateway's own safety (accepted domains,
// syntax, limits) is enforced before any hook and cannot be overridden.
type Hook interface {
	Decide(ctx context.Context, stage policy.Stage, st *State) policy.Verdict
}

// HookFunc adapts a function to Hook.
type HookFunc func(ctx context.Context, stage policy.Stage, st *State) policy.Verdict

// Decide calls f.
func (f HookFunc) Decide(ctx context.Context, stage policy.Stage, st *State) policy.Verdict {
	return f(ctx, stage, st)
}

// Chain runs hooks in order: reasons, scores and headers add up, and the
// first terminal verdict (anything but continue) ends the stage.
func Chain(hooks ...Hook) Hook {
	return HookFunc(func(ctx context.Context, stage policy.Stage, st *State) policy.Verdict {
		var out policy.Verdict
		out.Action = policy.ActionContinue
		for _, h := range hooks {
			v := h.Decide(ctx, stage, st)
			out.Reasons = append(out.Reasons, v.Reasons...)
			out.Headers = append(out.Headers, v.Headers...)
			out.Score += v.Score
			if v.Action.Terminal() {
				out.Action = v.Action
				out.Reply = v.Reply
				return out
			}
		}
		return out
	})
}

// State is what the gateway knows of a session when it asks a hook. Hooks
// read it and may record what they learn in Results (logged with every
// decision), Auth (written into our Authentication-Results field)
// and ReverseName; Values is per-session scratch space for hooks (a lookup
// started at connect and awaited later, say).
type State struct {
	SessionID string
	Client    netip.AddrPort
	Local     netip.AddrPort
	// ReverseName is the client's verified reverse DNS name, when a hook
	// found one; it goes into the Received field.
	ReverseName string
	Helo        string
	ESMTP       bool
	TLS         *tls.ConnectionState

	// The current transaction.
	QueueID string
	From    Address
	HasFrom bool
	UTF8    bool      // SMTPUTF8 was given on MAIL
	Rcpt    Address   // the recipient being judged (rcpt stage)
	Rcpts   []Address // recipients accepted so far
	// Header is the header section of the message (data stage), without the
	// empty line that ends it. It is a slice of the buffer the message is
	// held in, which goes back to a pool when the transaction ends: read
	// it during Decide, and copy what must outlive the call.
	Header []byte
	Size   int64
	// Message returns a new reader over the whole received message (data
	// stage), as the sender sent it; like Header, only during Decide.
	Message func() io.Reader

	Results map[string]any
	// Auth is what our Authentication-Results field reports.
	Auth   checks.AuthResultsInput
	Values map[string]any

	// judge is the Judge's per-session state (a field rather than an
	// entry of Values: a map of one entry cost an idle session 280
	// octets).
	judge *judgeState
}

// SetResult records a check result for the decision log.
func (st *State) SetResult(name string, v any) {
	if st.Results == nil {
		st.Results = make(map[string]any)
	}
	st.Results[name] = v
}

// allowAll is the hook of a gateway with no checks configured.
var allowAll = HookFunc(func(context.Context, policy.Stage, *State) policy.Verdict { return policy.Continue })
