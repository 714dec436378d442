package gateway

import (
	"encoding/json"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/mxgate/gatewayd/policy"
)

// TestDecisionLogChecks: the line shows the check results as JSON: sorted
// by name, HTML characters as they are, a value a hook stored into Results
// directly included too.
func TestDecisionLogChecks(t *testing.T) {
	buf := &syncBuffer{}
	dl := NewDecisionLog(slog.NewJSONHandler(buf, nil))
	st := &State{SessionID: "S1", Client: netip.MustParseAddrPort("192.0.2.7:40000")}
	st.SetResult("spf", spfLog{Result: "fail", Domain: "a&b<c>.test", Identity: "mailfrom"})
	st.SetResult("dnsbl", []zoneLog{{Zone: "zen.example", Status: "listed", Subject: "192.0.2.7", Codes: []string{"127.0.0.2"}, Reason: "see <https://x.test/?a=1&b=2>"}})
	st.SetResult("Odd Name\"", 1.5)
	st.Results["hook_value"] = map[string]int{"b": 2, "a": 1}
	dl.log(st, &Decision{Stage: policy.StageRcpt, Action: policy.ActionReject, Reply: policy.Reply{Code: 550, Enhanced: "5.7.1", Text: "no"}})
	line := strings.TrimSpace(buf.String())
	for _, want := range []string{
		`"checks":{"Odd Name\"":1.5,"dnsbl":[{"zone":"zen.example","status":"listed","subject":"192.0.2.7","codes":["127.0.0.2"],"reason":"see <https://x.test/?a=1&b=2>"}],"hook_value":{"a":1,"b":2},"spf":{"result":"fail","domain":"a&b<c>.test","identity":"mailfrom"}}`,
	} {
		if !strings.Contains(line, want) {
			t.Errorf("line lacks %s:\n%s", want, line)
		}
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(line), &v); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, line)
	}
}
