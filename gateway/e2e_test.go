package gateway

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

const simpleMsg = "From: Alice <alice@sender.test>\r\n" +
	"To: bob@example.com\r\n" +
	"Subject: hello\r\n" +
	"Message-ID: <1@sender.test>\r\n" +
	"\r\n" +
	"Hello Bob.\r\n" +
	".leading dot line\r\n" +
	"Bye.\r\n"

// TestRelayEndToEnd: a real client, the gateway, and a real SMTP server as the
// internal MTA. The relayed bytes are the sent message with our two header
// fields in front, and the sender's 250 comes after the MTA's.
func TestRelayEndToEnd(t *testing.T) {
	g := startGateway(t, testConfig(), nil, nil)
	if err := sendMail(g.addr, "alice@sender.test", []string{"bob@example.com", "carol@example.org"}, simpleMsg); err != nil {
		t.Fatalf("send: %v", err)
	}
	msgs := g.mta.messages()
	if len(msgs) != 1 {
		t.Fatalf("internal MTA got %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if m.From != "alice@sender.test" || strings.Join(m.Rcpts, ",") != "bob@example.com,carol@example.org" {
		t.Errorf("envelope: from %q rcpts %v", m.From, m.Rcpts)
	}
	data := string(m.Data)
	if !strings.HasPrefix(data, "Received: from client.test ([127.0.0.1])\r\n\tby mx.test (gatewayd) with ESMTP id ") {
		t.Errorf("relayed message does not start with our Received field:\n%s", data)
	}
	i := strings.Index(data, "Authentication-Results: mx.test; none\r\n")
	if i < 0 {
		t.Fatalf("no Authentication-Results field:\n%s", data)
	}
	rest := data[i+len("Authentication-Results: mx.test; none\r\n"):]
	if rest != simpleMsg {
		t.Errorf("relayed body differs from sent:\ngot  %q\nwant %q", rest, simpleMsg)
	}
	// Exactly one decision line for each recipient and one for the message.
	var stages []string
	for _, l := range g.log.lines() {
		var e map[string]any
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("decision log line is not JSON: %q", l)
		}
		stages = append(stages, e["stage"].(string)+"/"+e["action"].(string))
		if e["stage"] == "data" {
			if e["queue_id"] == "" || e["code"].(float64) != 250 || e["upstream"] == nil {
				t.Errorf("data decision lacks fields: %s", l)
			}
		}
	}
	if got := strings.Join(stages, " "); got != "rcpt/accept rcpt/accept data/relay" {
		t.Errorf("decisions: %s", got)
	}
}

// TestStripsForgedAuthResults: an incoming Authentication-Results field with
// our authserv-id is removed; one of another host stays.
func TestStripsForgedAuthResults(t *testing.T) {
	g := startGateway(t, testConfig(), nil, nil)
	msg := "Authentication-Results: mx.test; spf=pass smtp.mailfrom=forged.test\r\n" +
		"Authentication-Results: other.test;\r\n\tdkim=pass header.d=x.test\r\n" +
		"authentication-results: (comment) MX.TEST (1) ; dmarc=pass\r\n" +
		"Subject: x\r\n\r\nbody\r\n"
	if err := sendMail(g.addr, "a@sender.test", []string{"bob@example.com"}, msg); err != nil {
		t.Fatal(err)
	}
	got := g.mta.messages()[0].Data
	if bytes.Contains(got, []byte("forged.test")) || bytes.Contains(got, []byte("dmarc=pass")) {
		t.Errorf("forged field kept:\n%s", got)
	}
	if !bytes.Contains(got, []byte("Authentication-Results: other.test;\r\n\tdkim=pass header.d=x.test\r\n")) {
		t.Errorf("foreign field removed:\n%s", got)
	}
}

// TestOddMessageShapes: an empty message, one with no header section and
// one with no body are relayed as they came, behind our fields.
func TestOddMessageShapes(t *testing.T) {
	for _, msg := range []string{"", "\r\nbody without header\r\n", "Subject: only a header\r\n"} {
		m := startMTA(t)
		g := startGateway(t, testConfig(), m, nil)
		dialog(t, g.addr, untilData+`
			>> `+strconv.Quote(msg+".\r\n")+`
			< 250 2.0.0
			> QUIT
			< 221`)
		got := string(m.messages()[0].Data)
		i := strings.Index(got, "Authentication-Results: mx.test; none\r\n")
		if i < 0 || got[i+len("Authentication-Results: mx.test; none\r\n"):] != msg {
			t.Errorf("%q relayed as %q", msg, got)
		}
	}
}
