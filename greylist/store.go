package greylist

import (
	"context"
	"net/netip"
	"strings"
	"time"
)

// Store keeps greylist state. A Store applies one decision atomically
// (Decide) and serves the operator operations. Both stores in this package,
// MemoryStore and RedisStore, implement the same rules; the Greylister adds
// static allow lists, deadlines, failure handling and metrics on top.
//
// Times come from the caller (the Greylister's clock), except that a
// shared store decides on its own clock when Params.ServerClock is set
// (decisions, releases and operator allows), so the rules can be tested
// with a fake clock and gateways sharing a store agree.
type Store interface {
	// Decide applies the greylist rules to one triplet at now.
	Decide(ctx context.Context, t Normalized, now time.Time, p Params) (Outcome, error)
	// Show returns the state of a network and of its triplets: the one
	// named by sender and rcpt, or, when both are empty, all of them (at
	// most limit).
	Show(ctx context.Context, q Normalized, now time.Time, p Params, limit int) (State, error)
	// Release marks as passed the triplet named by q, or, when its sender
	// and recipient are empty, every pending triplet of q's network. It
	// returns how many triplets it released.
	Release(ctx context.Context, q Normalized, now time.Time, p Params) (int, error)
	// Allow allow-lists a network until the given time; an until not
	// after now removes the operator allow. With p.ServerClock, a shared
	// store counts the allow's length (until - now) from its own clock.
	Allow(ctx context.Context, network netip.Prefix, until, now time.Time, p Params) error
	// Counts counts the live entries at now.
	Counts(ctx context.Context, now time.Time, p Params) (Counts, error)
	// Name is "memory" or "redis", for metrics and logs.
	Name() string
	// Close releases the store's resources.
	Close() error
}

// Normalized is a triplet after grouping and normalisation: what a Store
// stores. Build it with Greylister.Normalize.
type Normalized struct {
	Network   netip.Prefix
	Sender    string
	Recipient string
}

// Params are the timing rules of a decision, taken from Config.
type Params struct {
	Delay             time.Duration
	RetryWindow       time.Duration
	PassTTL           time.Duration
	AutoAllowAfter    int
	AutoAllowInterval time.Duration
	// ServerClock makes a shared store (Redis) decide on its own clock,
	// not on the time passed in: gateways sharing it then agree however
	// their clocks drift. It is set unless the Greylister was given a
	// clock (tests).
	ServerClock bool
}

// Outcome is a Store's answer to Decide.
type Outcome struct {
	Action    Action
	Reason    Reason
	FirstSeen time.Time // zero for allowed networks
	RetryAt   time.Time // for Defer: when a retry will pass
	// Until is, for a pass or an allow, when what the store granted ends
	// unless a later decision refreshes it: the triplet's pass (pass_ttl),
	// the network's auto-allow or the operator's allow. The pass cache
	// never answers past it.
	Until time.Time
	// Passes is the network's count of passes towards auto-allow.
	Passes int
	// NowAutoAllowed is true on the pass that made the network auto-allowed.
	NowAutoAllowed bool
}

// State is what Show reports about a network.
type State struct {
	Network string `json:"network"`
	// OperatorAllowedUntil is set while an operator allow is in force.
	OperatorAllowedUntil time.Time `json:"operator_allowed_until,omitzero"`
	// AutoAllowedUntil is set while the network is auto-allowed.
	AutoAllowedUntil time.Time `json:"auto_allowed_until,omitzero"`
	// Passes is the count towards auto-allow; LastCounted the last pass
	// counted.
	Passes      int       `json:"passes"`
	LastCounted time.Time `json:"last_counted,omitzero"`
	// Triplets are the live triplets asked for.
	Triplets []TripletState `json:"triplets"`
	// Truncated says the listing stopped at the limit.
	Truncated bool `json:"truncated,omitempty"`
}

// shift moves every time of st by ms milliseconds.
func (st *State) shift(ms int64) {
	if ms == 0 {
		return
	}
	d := time.Duration(ms) * time.Millisecond
	move := func(t *time.Time) {
		if !t.IsZero() {
			*t = t.Add(d)
		}
	}
	move(&st.OperatorAllowedUntil)
	move(&st.AutoAllowedUntil)
	move(&st.LastCounted)
	for i := range st.Triplets {
		tr := &st.Triplets[i]
		move(&tr.FirstSeen)
		move(&tr.RetryAt)
		move(&tr.PassedAt)
		move(&tr.ExpiresAt)
	}
}

// TripletState is one triplet in Show's answer.
type TripletState struct {
	Key       string    `json:"key"`
	Sender    string    `json:"sender"`
	Recipient string    `json:"recipient"`
	Status    string    `json:"status"` // "pending" or "passed"
	FirstSeen time.Time `json:"first_seen,omitzero"`
	RetryAt   time.Time `json:"retry_at,omitzero"` // pending only
	PassedAt  time.Time `json:"passed_at,omitzero"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Triplet statuses in TripletState.
const (
	StatusPending = "pending"
	StatusPassed  = "passed"
)

// Counts sums up a store.
type Counts struct {
	// Triplets is every live triplet; Pending have not passed yet, Passed
	// have.
	Triplets int `json:"triplets"`
	Pending  int `json:"pending"`
	Passed   int `json:"passed"`
	// AutoAllowedNetworks are networks currently auto-allowed;
	// CountingNetworks have passes counted but are not allowed yet.
	AutoAllowedNetworks int `json:"auto_allowed_networks"`
	CountingNetworks    int `json:"counting_networks"`
	// OperatorAllowedNetworks are networks allowed by an operator.
	OperatorAllowedNetworks int `json:"operator_allowed_networks"`
}

// Key names, shared by both stores (the memory store uses them as map
// keys). See the package documentation.
func netTag(n netip.Prefix) string { return "gl:{" + n.String() + "}" }

// TripletKey is the key of a triplet's record, without a KeyPrefix.
func TripletKey(t Normalized) string {
	return netTag(t.Network) + ":t:" + keyPart(t.Sender) + ":" + keyPart(t.Recipient)
}

// keyPart escapes ':' (the separator) and '%' in a key part, so that two
// triplets never share a key ("a:@x" + "b" against "a" + "@x:b"); the
// addresses of nearly all mail hold neither, and their keys are as they
// were.
func keyPart(s string) string {
	if !strings.ContainsAny(s, ":%") {
		return s
	}
	return strings.NewReplacer("%", "%25", ":", "%3a").Replace(s)
}

// unKeyPart undoes keyPart.
func unKeyPart(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	return strings.NewReplacer("%3a", ":", "%25", "%").Replace(s)
}

// AutoKey is the key of a network's auto-allow record.
func AutoKey(n netip.Prefix) string { return netTag(n) + ":a" }

// OperatorKey is the key of a network's operator allow.
func OperatorKey(n netip.Prefix) string { return netTag(n) + ":m" }

// keyKind classifies a key (without prefix) as 't', 'a' or 'm' and returns
// the network text and, for 't', the part after ":t:".
func keyKind(k string) (kind byte, network, rest string, ok bool) {
	if !strings.HasPrefix(k, "gl:{") {
		return 0, "", "", false
	}
	end := strings.Index(k, "}:")
	if end < 0 {
		return 0, "", "", false
	}
	network, tail := k[4:end], k[end+2:]
	switch {
	case strings.HasPrefix(tail, "t:"):
		return 't', network, tail[2:], true
	case tail == "a":
		return 'a', network, "", true
	case tail == "m":
		return 'm', network, "", true
	}
	return 0, "", "", false
}

// splitTriplet splits the part of a triplet key after ":t:" into sender
// and recipient at the last colon (recipients never hold one in practice).
func splitTriplet(rest string) (sender, rcpt string) {
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		return unKeyPart(rest), ""
	}
	return unKeyPart(rest[:i]), unKeyPart(rest[i+1:])
}

// msOf and timeOf convert between times and the Unix milliseconds stored.
func msOf(t time.Time) int64 { return t.UnixMilli() }

func timeOf(ms int64) time.Time {
	if ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

func durMS(d time.Duration) int64 { return d.Milliseconds() }

// Outcome codes shared by the Lua script and the memory store.
const (
	codeFirstSeen     = 1
	codeTooEarly      = 2
	codeRetried       = 4
	codeKnown         = 5
	codeOperatorAllow = 6
	codeAutoAllow     = 7
)

// outcomeOf turns a decision's codes and numbers into an Outcome. at is
// the retry time of a deferral, or the end of a pass or allow.
func outcomeOf(code int64, first, at int64, passes int64, became int64) Outcome {
	o := Outcome{FirstSeen: timeOf(first), Passes: int(passes), NowAutoAllowed: became == 1}
	if code == codeFirstSeen || code == codeTooEarly {
		o.RetryAt = timeOf(at)
	} else {
		o.Until = timeOf(at)
	}
	switch code {
	case codeFirstSeen:
		o.Action, o.Reason = Defer, ReasonFirstSeen
	case codeTooEarly:
		o.Action, o.Reason = Defer, ReasonTooEarly
	case codeRetried:
		o.Action, o.Reason = Pass, ReasonRetried
	case codeKnown:
		o.Action, o.Reason = Pass, ReasonKnown
	case codeOperatorAllow:
		o.Action, o.Reason = Allowed, ReasonOperatorAllow
	case codeAutoAllow:
		o.Action, o.Reason = AutoAllowed, ReasonAutoAllow
	default:
		o.Action, o.Reason = Defer, ReasonStoreError
	}
	return o
}

// tripletState builds a TripletState from stored numbers.
func tripletState(key, sender, rcpt string, first, passed int64, p Params) TripletState {
	ts := TripletState{Key: key, Sender: sender, Recipient: rcpt, FirstSeen: timeOf(first)}
	if passed > 0 {
		ts.Status = StatusPassed
		ts.PassedAt = timeOf(passed)
		ts.ExpiresAt = timeOf(passed + durMS(p.PassTTL))
	} else {
		ts.Status = StatusPending
		ts.RetryAt = timeOf(first + durMS(p.Delay))
		ts.ExpiresAt = timeOf(first + durMS(p.RetryWindow))
	}
	return ts
}

// tripletLive says whether a triplet record is still in force at now.
func tripletLive(first, passed, now int64, p Params) bool {
	if first <= 0 && passed <= 0 {
		return false
	}
	if passed > 0 {
		return now < passed+durMS(p.PassTTL)
	}
	return now < first+durMS(p.RetryWindow)
}
