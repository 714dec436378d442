package gateway

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/mxgate/gatewayd/policy"
)

// This file writes a decision line without log/slog: the same bytes
// slog.NewJSONHandler writes for the attributes DecisionLog.log builds
// (the tests hold the two to each other, by table and fuzzing). Going
// through slog cost about 5.5 µs a line, two lines a relayed message,
// most of it encoding/json's reflection over the check results (a map,
// sorted on every line) and its validation of anything a MarshalJSON
// returns; the result types the judge stores are written here directly,
// and anything else (a hook's value) still goes through encoding/json.

var lineBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// writeJSON writes the decision; false when a value cannot be written
// the way slog would (a float that is not finite), for the caller to log
// it through slog instead.
func (d *DecisionLog) writeJSON(st *State, e *Decision) bool {
	if !finite(e.Score) || !reasonsFinite(e.Reasons) {
		return false
	}
	bp := lineBufs.Get().(*[]byte)
	b, ok := appendDecision((*bp)[:0], time.Now(), st, e)
	if !ok {
		lineBufs.Put(bp)
		return false
	}
	d.mu.Lock()
	d.w.Write(b)
	d.mu.Unlock()
	if cap(b) <= 64<<10 {
		*bp = b
		lineBufs.Put(bp)
	}
	return true
}

func finite(f float64) bool { return !math.IsInf(f, 0) && !math.IsNaN(f) }

func reasonsFinite(rs []policy.Reason) bool {
	for _, r := range rs {
		if !finite(r.Score) {
			return false
		}
	}
	return true
}

// appendDecision appends the line, attribute for attribute as log builds
// them; false when a hook's value in the results cannot be encoded (slog
// then writes an error in place of the whole checks object).
func appendDecision(b []byte, now time.Time, st *State, e *Decision) ([]byte, bool) {
	b = append(b, `{"time":"`...)
	b = now.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":"INFO","msg":"decision","session":`...)
	b = appendStr(b, st.SessionID, false)
	b = append(b, `,"client_ip":`...)
	b = appendStr(b, st.Client.Addr().String(), false)
	b = append(b, `,"client_port":`...)
	b = strconv.AppendInt(b, int64(st.Client.Port()), 10)
	b = strField(b, "queue_id", st.QueueID)
	b = strField(b, "client_name", st.ReverseName)
	b = strField(b, "helo", st.Helo)
	if st.TLS != nil {
		b = strField(b, "tls", tlsSummary(st.TLS))
	}
	if st.HasFrom {
		b = append(b, `,"mail_from":`...)
		b = appendStr(b, st.From.String(), false)
	}
	b = strField(b, "rcpt", e.Rcpt)
	if len(e.Rcpts) > 0 {
		b = appendArray(append(b, `,"rcpts":`...), e.Rcpts, appendNested)
	}
	b = append(b, `,"stage":`...)
	b = appendStr(b, string(e.Stage), false)
	b = append(b, `,"action":`...)
	b = appendStr(b, string(e.Action), false)
	b = append(b, `,"code":`...)
	b = strconv.AppendInt(b, int64(e.Reply.Code), 10)
	b = append(b, `,"enhanced":`...)
	b = appendStr(b, e.Reply.Enhanced, false)
	b = append(b, `,"text":`...)
	b = appendStr(b, e.Reply.Text, false)
	reasons := e.Reasons
	if reasons == nil {
		reasons = []policy.Reason{} // log writes [] for none
	}
	b = appendArray(append(b, `,"reasons":`...), reasons, func(b []byte, r policy.Reason) []byte {
		b = openObj(b, "rule", r.Rule)
		if r.Score != 0 {
			b = appendFloat(append(b, `,"score":`...), r.Score)
		}
		return append(optStr(b, "detail", r.Detail), '}')
	})
	if e.Score != 0 {
		b = append(b, `,"score":`...)
		b = appendFloat(b, e.Score)
	}
	if len(st.Results) > 0 {
		b = append(b, `,"checks":`...)
		var ok bool
		if b, ok = appendResults(b, st.Results); !ok {
			return b, false
		}
	}
	if u := e.Upstream; u != nil {
		b = append(b, `,"upstream":{`...)
		sep := false
		if u.Addr != "" {
			b = append(b, `"addr":`...)
			b = appendStr(b, u.Addr, true)
			sep = true
		}
		if !u.Reply.IsZero() { // omitzero: Reply.IsZero
			if sep {
				b = append(b, ',')
			}
			b = appendReply(append(b, `"reply":`...), u.Reply)
			sep = true
		}
		if u.Error != "" {
			if sep {
				b = append(b, ',')
			}
			b = append(b, `"error":`...)
			b = appendStr(b, u.Error, true)
		}
		b = append(b, '}')
	}
	if e.Size > 0 {
		b = append(b, `,"size":`...)
		b = strconv.AppendInt(b, e.Size, 10)
	}
	b = append(b, `,"duration_ms":`...)
	b = appendFloat(b, float64(e.Duration.Microseconds())/1000)
	return append(b, '}', '\n'), true
}

func strField(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	b = append(append(append(b, ',', '"'), key...), '"', ':')
	return appendStr(b, v, false)
}

func appendReply(b []byte, r policy.Reply) []byte {
	b = append(b, `{"code":`...)
	b = strconv.AppendInt(b, int64(r.Code), 10)
	if r.Enhanced != "" {
		b = append(b, `,"enhanced":`...)
		b = appendStr(b, r.Enhanced, true)
	}
	b = append(b, `,"text":`...)
	b = appendStr(b, r.Text, true)
	return append(b, '}')
}

// appendResults writes the check results as encoding/json writes a map:
// keys sorted.
func appendResults(b []byte, res map[string]any) ([]byte, bool) {
	var keyBuf [16]string
	keys := keyBuf[:0]
	for k := range res {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendStr(b, k, true)
		b = append(b, ':')
		var ok bool
		if b, ok = appendResult(b, res[k]); !ok {
			return b, false
		}
	}
	return append(b, '}'), true
}

// appendResult writes one check result: the judge's own types directly,
// anything else through encoding/json as slog would.
func appendResult(b []byte, v any) ([]byte, bool) {
	switch v := v.(type) {
	case []zoneLog:
		return appendArray(b, v, func(b []byte, z zoneLog) []byte {
			b = openObj(b, "zone", z.Zone, "status", z.Status, "subject", z.Subject)
			if len(z.Codes) > 0 {
				b = appendArray(append(b, `,"codes":`...), z.Codes, appendNested)
			}
			b = optStr(b, "reason", z.Reason)
			return append(optStr(b, "error", z.Error), '}')
		}), true
	case []dkimLog:
		return appendArray(b, v, func(b []byte, s dkimLog) []byte {
			b = openObj(b, "d", s.D, "s", s.S, "result", s.Result)
			return append(optStr(b, "reason", s.Reason), '}')
		}), true
	case iprevLog:
		return append(openObj(b, "result", v.Result, "name", v.Name), '}'), true
	case spfLog:
		return append(openObj(b, "result", v.Result, "domain", v.Domain, "identity", v.Identity), '}'), true
	case dmarcLog:
		return append(openObj(b, "result", v.Result, "domain", v.Domain, "policy", v.Policy, "applied", v.Applied), '}'), true
	case greylistLog:
		b = openObj(b, "action", v.Action)
		b = optStr(b, "reason", v.Reason)
		b = optStr(b, "network", v.Network)
		if v.FailOpen {
			b = append(b, `,"fail_open":true`...)
		}
		if v.Cached {
			b = append(b, `,"cached":true`...)
		}
		return append(optStr(b, "error", v.Error), '}'), true
	}
	return appendMarshal(b, v)
}

// appendArray writes a slice as encoding/json does (nil is null).
func appendArray[T any](b []byte, v []T, each func([]byte, T) []byte) []byte {
	if v == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, x := range v {
		if i > 0 {
			b = append(b, ',')
		}
		b = each(b, x)
	}
	return append(b, ']')
}

func appendNested(b []byte, s string) []byte { return appendStr(b, s, true) }

// openObj opens an object with the string fields kv (name, value, ...)
// and leaves it open for more.
func openObj(b []byte, kv ...string) []byte {
	b = append(b, '{')
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(append(append(b, '"'), kv[i]...), '"', ':')
		b = appendStr(b, kv[i+1], true)
	}
	return b
}

func optStr(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	b = append(append(append(b, ',', '"'), key...), '"', ':')
	return appendStr(b, v, true)
}

// appendMarshal encodes v as encoding/json encodes a value in a map slog
// encodes (HTML characters as they are); false when it cannot.
func appendMarshal(b []byte, v any) (out []byte, ok bool) {
	defer func() {
		// A hook's MarshalJSON that panics: slog writes the line with
		// the panic in place of the checks, as it always did.
		if recover() != nil {
			out, ok = b, false
		}
	}()
	var w sliceWriter
	w.b = b
	enc := json.NewEncoder(&w)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return b, false
	}
	out = w.b
	if n := len(out); n > 0 && out[n-1] == '\n' {
		out = out[:n-1]
	}
	return out, true
}

type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// appendFloat writes f as encoding/json does (slog hands floats to it).
func appendFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-09 to e-9, as encoding/json writes it.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendStr writes s as a JSON string the way slog writes a string value
// (nested false) or encoding/json with HTML escaping off writes one inside
// a value (nested true; it also has short escapes for \b and \f).
// Invalid UTF-8 becomes U+FFFD; U+2028 and U+2029 are escaped.
func appendStr(b []byte, s string, nested bool) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch {
			case c == '\\' || c == '"':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case nested && c == '\b':
				b = append(b, '\\', 'b')
			case nested && c == '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
