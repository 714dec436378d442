package policy_test

import (
	"strings"
	"testing"

	"github.com/mxgate/gatewayd/policy"
)

func TestReplyValidate(t *testing.T) {
	tests := []struct {
		r    policy.Reply
		want string // "" for valid, else a part of the error
	}{
		{policy.Reply{Code: 550, Enhanced: "5.7.1", Text: "x"}, ""},
		{policy.Reply{Code: 451, Enhanced: "4.7.1"}, ""},
		{policy.Reply{Code: 250, Enhanced: "2.0.0"}, ""},
		{policy.Reply{Code: 550, Enhanced: "5.0.0"}, ""},
		{policy.Reply{Code: 554, Enhanced: "5.999.999"}, ""},
		{policy.Reply{Code: 550, Enhanced: "5.10.100"}, ""},
		{policy.Reply{Code: 550}, ""},
		{policy.Reply{Code: 199}, "not between 200 and 599"},
		{policy.Reply{Code: 600}, "not between 200 and 599"},
		// strconv.Atoi takes a sign and leading zeros: RFC 3463 does not.
		{policy.Reply{Code: 550, Enhanced: "5.+7.1"}, `the subject "+7" is not a number`},
		{policy.Reply{Code: 550, Enhanced: "5.-0.1"}, `the subject "-0" is not a number`},
		{policy.Reply{Code: 550, Enhanced: "5.7.+1"}, `the detail "+1" is not a number`},
		{policy.Reply{Code: 550, Enhanced: "+5.7.1"}, `the class "+5" is not a number`},
		{policy.Reply{Code: 550, Enhanced: "5.07.001"}, `the subject "07" has a leading zero`},
		{policy.Reply{Code: 550, Enhanced: "5.7.01"}, `the detail "01" has a leading zero`},
		{policy.Reply{Code: 550, Enhanced: "05.7.1"}, `the class "05" has a leading zero`},
		{policy.Reply{Code: 550, Enhanced: "5.1000.1"}, `the subject "1000" is not a number of 1 to 3 digits`},
		{policy.Reply{Code: 550, Enhanced: "5.7.1000"}, `the detail "1000" is not a number of 1 to 3 digits`},
		{policy.Reply{Code: 550, Enhanced: "5..1"}, `the subject "" is not a number`},
		{policy.Reply{Code: 550, Enhanced: "5.7.1 "}, `the detail "1 " is not a number`},
		{policy.Reply{Code: 550, Enhanced: "5.٧.1"}, `is not a number`},
		{policy.Reply{Code: 550, Enhanced: "5.7"}, "is not class.subject.detail"},
		{policy.Reply{Code: 550, Enhanced: "5.7.1.1"}, "is not class.subject.detail"},
		{policy.Reply{Code: 350, Enhanced: "3.0.0"}, "class must be 2, 4 or 5"},
		{policy.Reply{Code: 550, Enhanced: "4.7.1"}, `disagrees with reply code 550 (class 4 vs 5xx)`},
		{policy.Reply{Code: 550, Enhanced: "5.7.1", Text: "a\r\nb"}, "one line"},
	}
	for _, tc := range tests {
		err := tc.r.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: %v", tc.r, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: error %v, want one with %q", tc.r, err, tc.want)
		}
	}
}
