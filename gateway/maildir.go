package gateway

import (
	"context"
	"io"

	"github.com/mxgate/gatewayd/maildir"
	"github.com/mxgate/gatewayd/policy"
)

// MaildirUpstream delivers into a local Maildir instead of an internal MTA:
// the target of a first try with no mail server behind the gateway. Every
// recipient that passed the gateway's own checks is accepted; one file is
// written per message, whatever the number of recipients.
type MaildirUpstream struct{ Dir *maildir.Dir }

// Begin implements Upstream.
func (m MaildirUpstream) Begin(ctx context.Context, from Address, opts MailOpts) (UpstreamTx, policy.Reply, error) {
	return maildirTx{m.Dir}, policy.Reply{Code: 250, Enhanced: "2.1.0", Text: "OK"}, nil
}

// Close implements Upstream.
func (MaildirUpstream) Close() error { return nil }

type maildirTx struct{ dir *maildir.Dir }

func (t maildirTx) Rcpt(ctx context.Context, to Address) (policy.Reply, error) {
	return policy.Reply{Code: 250, Enhanced: "2.1.5", Text: "OK"}, nil
}

func (t maildirTx) Data(ctx context.Context, msg io.Reader) (policy.Reply, error) {
	name, err := t.dir.Deliver(msg)
	if err != nil {
		return policy.Reply{}, err
	}
	return policy.Reply{Code: 250, Enhanced: "2.0.0", Text: "Ok: delivered as " + name}, nil
}

func (maildirTx) End()           {}
func (t maildirTx) Addr() string { return "maildir:" + t.dir.Path() }
