package greylist

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Operator is what an operator can do to greylist state. *Greylister does
// it on its own store; *AdminClient does it through a running gateway's
// AdminHandler.
type Operator interface {
	// Show reports a network (IP or CIDR in q.Network) and its triplets,
	// or the one triplet q names.
	Show(ctx context.Context, q Query) (State, error)
	// Release lets a triplet, or every pending triplet of a network, pass
	// on its next attempt.
	Release(ctx context.Context, q Query) (Released, error)
	// Allow allow-lists q.Network for d; d <= 0 removes an operator allow.
	Allow(ctx context.Context, q Query, d time.Duration) (Allowance, error)
	// Counts sums up the store.
	Counts(ctx context.Context) (Counts, error)
}

var (
	_ Operator = (*Greylister)(nil)
	_ Operator = (*AdminClient)(nil)
)

// Query names a network, and optionally one triplet in it, as an operator
// types it: Network is an address ("192.0.2.7", grouped as a client would
// be) or a CIDR no wider than the grouping; Sender and Recipient are raw
// addresses, normalised as in a decision. A Recipient selects one triplet
// (an empty Sender then means the null sender); no Recipient and no Sender
// selects the whole network.
type Query struct {
	Network   string `json:"network"`
	Sender    string `json:"sender,omitempty"`
	Recipient string `json:"recipient,omitempty"`
}

// Released answers Release.
type Released struct {
	Network  string `json:"network"`
	Released int    `json:"released"`
}

// Allowance answers Allow. Until is zero when the allow was removed.
type Allowance struct {
	Network string    `json:"network"`
	Until   time.Time `json:"until,omitzero"`
}

// ErrBadQuery is returned (wrapped) for a query that names no network, or
// a sender without a recipient.
var ErrBadQuery = errors.New("greylist: bad query")

// opTimeout bounds an operator operation when ctx has no deadline.
const opTimeout = 30 * time.Second

// showLimit caps the triplets Show lists for a network.
const showLimit = 1000

// resolve turns a Query into the store's Normalized form.
func (g *Greylister) resolve(q Query) (Normalized, error) {
	if q.Network == "" {
		return Normalized{}, fmt.Errorf("%w: no network", ErrBadQuery)
	}
	n, err := ParseNetwork(q.Network, g.cfg.IPv4Prefix, g.cfg.IPv6Prefix)
	if err != nil {
		return Normalized{}, fmt.Errorf("%w: %v", ErrBadQuery, err)
	}
	out := Normalized{Network: n}
	switch {
	case q.Recipient != "":
		out.Sender, out.Recipient = NormalizeSender(q.Sender), NormalizeRecipient(q.Recipient)
	case q.Sender != "":
		return Normalized{}, fmt.Errorf("%w: a sender needs a recipient", ErrBadQuery)
	}
	return out, nil
}

func opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, opTimeout)
}

// Show reports a network and its triplets (at most 1000), or one triplet.
func (g *Greylister) Show(ctx context.Context, q Query) (State, error) {
	n, err := g.resolve(q)
	if err != nil {
		return State{}, err
	}
	ctx, cancel := opContext(ctx)
	defer cancel()
	st, err := g.store.Show(ctx, n, g.now(), g.params, showLimit)
	if err != nil {
		g.metrics.storeError(g.store.Name(), "show")
		return State{}, fmt.Errorf("greylist: %w", err)
	}
	return st, nil
}

// Release lets the triplet q names pass from now on (creating it if
// needed), or, for a whole network, every triplet of it now pending.
// Released triplets do not count towards auto-allow.
func (g *Greylister) Release(ctx context.Context, q Query) (Released, error) {
	n, err := g.resolve(q)
	if err != nil {
		return Released{}, err
	}
	ctx, cancel := opContext(ctx)
	defer cancel()
	k, err := g.store.Release(ctx, n, g.now(), g.params)
	if err != nil {
		g.metrics.storeError(g.store.Name(), "release")
		return Released{}, fmt.Errorf("greylist: %w", err)
	}
	return Released{Network: n.Network.String(), Released: k}, nil
}

// Allow allow-lists q's network (sender and recipient must be empty) for
// d; d <= 0 removes an operator allow. The allow is a store record, shared
// by every gateway on the same Redis, and expires by itself. A removal
// also drops this gateway's cached passes of the network; other gateways
// keep theirs for up to greylist.pass_cache.
func (g *Greylister) Allow(ctx context.Context, q Query, d time.Duration) (Allowance, error) {
	if q.Sender != "" || q.Recipient != "" {
		return Allowance{}, fmt.Errorf("%w: allow takes a network only", ErrBadQuery)
	}
	n, err := g.resolve(q)
	if err != nil {
		return Allowance{}, err
	}
	ctx, cancel := opContext(ctx)
	defer cancel()
	now := g.now()
	until := now.Add(d)
	if err := g.store.Allow(ctx, n.Network, until, now, g.params); err != nil {
		g.metrics.storeError(g.store.Name(), "allow")
		return Allowance{}, fmt.Errorf("greylist: %w", err)
	}
	if d <= 0 {
		g.passes.forgetNetwork(n.Network)
	}
	a := Allowance{Network: n.Network.String()}
	if d > 0 {
		a.Until = until.UTC()
	}
	return a, nil
}

// Counts sums up the store.
func (g *Greylister) Counts(ctx context.Context) (Counts, error) {
	ctx, cancel := opContext(ctx)
	defer cancel()
	c, err := g.store.Counts(ctx, g.now(), g.params)
	if err != nil {
		g.metrics.storeError(g.store.Name(), "counts")
		return Counts{}, fmt.Errorf("greylist: %w", err)
	}
	return c, nil
}
