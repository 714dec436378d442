package gateway

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/mxgate/gatewayd/policy"
)

// Decision is one line of the decision log: who, what, at which stage, the
// action and the exact reply sent, the reasons (rules and check results) and
// the internal MTA's answer. Field names are a stable, documented surface
// (README "Decision log").
type Decision struct {
	Stage    policy.Stage
	Action   policy.Action
	Reply    policy.Reply
	Reasons  []policy.Reason
	Score    float64
	Rcpt     string   // rcpt stage: the recipient judged
	Rcpts    []string // data stage: the recipients of the message
	Upstream *UpstreamResult
	Size     int64
	Duration time.Duration
}

// UpstreamResult is the internal MTA's answer, as logged.
type UpstreamResult struct {
	Addr  string       `json:"addr,omitempty"`
	Reply policy.Reply `json:"reply,omitzero"`
	Error string       `json:"error,omitempty"`
}

// DecisionLog writes decisions as JSON lines.
type DecisionLog struct {
	l *slog.Logger
	// w, when set, gets the lines written by writeJSON (the same bytes
	// as slog's JSON handler writes), one Write a line.
	w  io.Writer
	mu sync.Mutex
}

// NewDecisionLog logs through h (any slog handler).
func NewDecisionLog(h slog.Handler) *DecisionLog {
	return &DecisionLog{l: slog.New(h)}
}

// NewDecisionLogJSON writes the documented format to w: what
// NewDecisionLog(slog.NewJSONHandler(w, nil)) writes, without slog's cost
// (decisionjson.go).
func NewDecisionLogJSON(w io.Writer) *DecisionLog {
	d := &DecisionLog{w: w}
	// The lines slog writes (the rare ones writeJSON leaves to it) take
	// the same lock as the direct ones.
	d.l = slog.New(slog.NewJSONHandler(decisionLocked{d}, nil))
	return d
}

type decisionLocked struct{ d *DecisionLog }

func (l decisionLocked) Write(p []byte) (int, error) {
	l.d.mu.Lock()
	defer l.d.mu.Unlock()
	return l.d.w.Write(p)
}

func (d *DecisionLog) log(st *State, e *Decision) {
	if d == nil || d.l == nil {
		return
	}
	if d.w != nil && d.writeJSON(st, e) {
		return
	}
	attrs := make([]slog.Attr, 0, 24)
	attrs = append(attrs,
		slog.String("session", st.SessionID),
		slog.String("client_ip", st.Client.Addr().String()),
		slog.Int("client_port", int(st.Client.Port())),
	)
	if st.QueueID != "" {
		attrs = append(attrs, slog.String("queue_id", st.QueueID))
	}
	if st.ReverseName != "" {
		attrs = append(attrs, slog.String("client_name", st.ReverseName))
	}
	if st.Helo != "" {
		attrs = append(attrs, slog.String("helo", st.Helo))
	}
	if st.TLS != nil {
		attrs = append(attrs, slog.String("tls", tlsSummary(st.TLS)))
	}
	if st.HasFrom {
		attrs = append(attrs, slog.String("mail_from", st.From.String()))
	}
	if e.Rcpt != "" {
		attrs = append(attrs, slog.String("rcpt", e.Rcpt))
	}
	if len(e.Rcpts) > 0 {
		attrs = append(attrs, slog.Any("rcpts", e.Rcpts))
	}
	attrs = append(attrs,
		slog.String("stage", string(e.Stage)),
		slog.String("action", string(e.Action)),
		slog.Int("code", e.Reply.Code),
		slog.String("enhanced", e.Reply.Enhanced),
		slog.String("text", e.Reply.Text),
	)
	reasons := e.Reasons
	if reasons == nil {
		reasons = []policy.Reason{}
	}
	attrs = append(attrs, slog.Any("reasons", reasons))
	if e.Score != 0 {
		attrs = append(attrs, slog.Float64("score", e.Score))
	}
	if len(st.Results) > 0 {
		attrs = append(attrs, slog.Any("checks", st.Results))
	}
	if e.Upstream != nil {
		attrs = append(attrs, slog.Any("upstream", e.Upstream))
	}
	if e.Size > 0 {
		attrs = append(attrs, slog.Int64("size", e.Size))
	}
	attrs = append(attrs, slog.Float64("duration_ms", float64(e.Duration.Microseconds())/1000))
	d.l.LogAttrs(context.Background(), slog.LevelInfo, "decision", attrs...)
}
