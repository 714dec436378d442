package policy

// A verdict is data: the action to take, the SMTP reply to send, the rules
// that fired with their scores, and the headers to add. The gateway writes
// the reply and logs the verdict; policy never touches the wire.

import (
	"fmt"
	"strconv"
	"strings"
)

// Stage names the point of the SMTP dialogue at which a verdict is taken.
type Stage string

// The stages, in the order a session reaches them.
const (
	StageConnect Stage = "connect"
	StageHelo    Stage = "helo"
	StageMail    Stage = "mail"
	StageRcpt    Stage = "rcpt"
	StageData    Stage = "data"
)

// Stages lists every stage in dialogue order.
var Stages = []Stage{StageConnect, StageHelo, StageMail, StageRcpt, StageData}

// ParseStage returns the stage named s.
func ParseStage(s string) (Stage, error) {
	for _, st := range Stages {
		if string(st) == s {
			return st, nil
		}
	}
	return "", fmt.Errorf("unknown stage %q (want one of connect, helo, mail, rcpt, data)", s)
}

// Action is what the gateway does with the connection, recipient or message.
type Action string

// The actions. Continue means "no decision here, go on"; the others end the
// evaluation of the stage.
const (
	// ActionContinue takes no decision; the next rule or stage decides.
	ActionContinue Action = "continue"
	// ActionAccept lets the stage pass and skips the remaining checks for
	// the scope of the rule (an allow list).
	ActionAccept Action = "accept"
	// ActionReject refuses with a permanent 5xx reply.
	ActionReject Action = "reject"
	// ActionDefer refuses with a temporary 4xx reply.
	ActionDefer Action = "defer"
	// ActionGreylist defers a first attempt of a recipient (4xx) and lets
	// a well-timed retry through.
	ActionGreylist Action = "greylist"
	// ActionDrop answers 250 and discards: nothing reaches the internal MTA.
	ActionDrop Action = "drop"
	// ActionQuarantine answers 250 and delivers to the quarantine target
	// instead of the internal MTA.
	ActionQuarantine Action = "quarantine"
	// ActionRelay is logged when a message or recipient went to the
	// internal MTA and that MTA answered; it is not a rule action.
	ActionRelay Action = "relay"
)

// Terminal reports whether the action ends the evaluation of a stage.
func (a Action) Terminal() bool { return a != ActionContinue && a != "" }

// Reply is an SMTP reply: a basic code (RFC 5321 section 4.2), an enhanced
// status code (RFC 3463, "class.subject.detail") and a short text.
type Reply struct {
	Code     int    `json:"code"`
	Enhanced string `json:"enhanced,omitempty"`
	Text     string `json:"text"`
}

// IsZero reports whether no reply was set.
func (r Reply) IsZero() bool { return r.Code == 0 }

// Permanent reports a 5xx reply; Temporary a 4xx one.
func (r Reply) Permanent() bool { return r.Code >= 500 && r.Code < 600 }

// Temporary reports a 4xx reply.
func (r Reply) Temporary() bool { return r.Code >= 400 && r.Code < 500 }

// String renders the reply as it appears on one line of the wire.
func (r Reply) String() string {
	if r.Enhanced == "" {
		return strconv.Itoa(r.Code) + " " + r.Text
	}
	return strconv.Itoa(r.Code) + " " + r.Enhanced + " " + r.Text
}

// Validate checks that the basic code is a 2xx to 5xx reply code and that the
// enhanced code, when present, is well formed and of the same class (RFC 3463
// section 2: the class digit of the enhanced code equals the first digit of
// the basic code).
func (r Reply) Validate() error {
	if r.Code < 200 || r.Code > 599 {
		return fmt.Errorf("reply code %d is not between 200 and 599", r.Code)
	}
	if r.Enhanced != "" {
		if err := ValidateEnhanced(r.Enhanced); err != nil {
			return err
		}
		if r.Enhanced[0] != strconv.Itoa(r.Code)[0] {
			return fmt.Errorf("enhanced code %q disagrees with reply code %d (class %c vs %dxx)", r.Enhanced, r.Code, r.Enhanced[0], r.Code/100)
		}
	}
	if strings.ContainsAny(r.Text, "\r\n") {
		return fmt.Errorf("reply text must be one line")
	}
	return nil
}

// ValidateEnhanced checks the syntax of an enhanced status code (RFC 3463
// section 2): class "." subject "." detail, the class 2, 4 or 5, the
// subject and detail numbers of 1 to 3 digits (0 to 999), written without
// a sign and without leading zeros ("5.7.1", not "5.07.001" or "5.+7.1").
// strconv.Atoi would take all of those, and they would go on the wire as
// written.
func ValidateEnhanced(s string) error {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return fmt.Errorf("enhanced code %q is not class.subject.detail", s)
	}
	for i, p := range parts {
		name := [...]string{"class", "subject", "detail"}[i]
		if p == "" || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return fmt.Errorf("enhanced code %q: the %s %q is not a number of 1 to 3 digits", s, name, p)
		}
		if len(p) > 1 && p[0] == '0' {
			return fmt.Errorf("enhanced code %q: the %s %q has a leading zero", s, name, p)
		}
	}
	if parts[0] != "2" && parts[0] != "4" && parts[0] != "5" {
		return fmt.Errorf("enhanced code %q: class must be 2, 4 or 5", s)
	}
	return nil
}

// Reason is one rule that fired, or one check that decided, with the score it
// added (rspamd's "symbol").
type Reason struct {
	Rule   string  `json:"rule"`
	Score  float64 `json:"score,omitempty"`
	Detail string  `json:"detail,omitempty"`
}

// Header is a header field the verdict asks the gateway to add to a relayed
// message.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Verdict is the outcome of evaluating one stage.
type Verdict struct {
	Action  Action   `json:"action"`
	Reply   Reply    `json:"reply"`
	Reasons []Reason `json:"reasons,omitempty"`
	Score   float64  `json:"score,omitempty"`
	Headers []Header `json:"headers,omitempty"`
}

// Continue is the verdict that decides nothing.
var Continue = Verdict{Action: ActionContinue}
