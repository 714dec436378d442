package policy_test

import (
	"strings"
	"testing"

	"github.com/mxgate/gatewayd/policy"
)

// TestTimeZones: a time zone in a condition is a literal the system knows,
// checked at load, and the loaded zone gives the same times as expr's own
// timezone() and date(..., zone).
func TestTimeZones(t *testing.T) {
	for _, tc := range []struct {
		cond, err string // err: "" loads and holds
	}{
		{`date("2024-01-01T00:00:00Z").In(timezone("Asia/Kolkata")).Hour() == 5`, ""},
		{`date("2024-01-01T00:00:00Z").In(timezone("Asia/Kolkata")).Minute() == 30`, ""},
		{`date("2024-07-01 12:00", "2006-01-02 15:04", "Europe/Berlin").Unix() == 1719828000`, ""},
		{`date("2024-01-01 12:00", "2006-01-02 15:04", "Europe/Berlin").Unix() == 1704106800`, ""},
		{`date(timezone("America/New_York"), "2024-01-01 00:00", "2006-01-02 15:04").Unix() == 1704085200`, ""},
		{`now(timezone("UTC")).Unix() > 0`, ""},
		{`date("2024-01-01 00:00", "2006-01-02 15:04").Unix() == 1704067200`, ""},
		{`now().In(timezone(helo)).Hour() >= 0`, "timezone: the time zone must be a literal string"},
		{`now().In(timezone("Mars/Olympus_Mons")).Hour() >= 0`, `timezone: unknown time zone "Mars/Olympus_Mons"`},
		{`now().In(timezone("../../etc/passwd")).Hour() >= 0`, "unknown time zone"},
		{`date("2024-01-01 00:00", "2006-01-02 15:04", helo).Year() > 0`, "date: the time zone must be a literal string"},
		{`date("2024-01-01 00:00", "2006-01-02 15:04", "Nowhere").Year() > 0`, `date: unknown time zone "Nowhere"`},
	} {
		condHolds(t, facts(policy.StageData), tc.cond, tc.err)
	}
}

// TestTimeZoneLoadedOnce: the zone of a condition is not read again at
// each evaluation. Reading it (expr's timezone() did, every time) is 17
// allocations and more; the method call and the date parsing around it
// are 5.
func TestTimeZoneLoadedOnce(t *testing.T) {
	allocs := func(cond string) float64 {
		e, err := loadCond(t, cond)
		if err != nil {
			t.Fatal(err)
		}
		f := facts(policy.StageData)
		return testing.AllocsPerRun(50, func() { e.Evaluate(f) })
	}
	plain := allocs(`now().Hour() >= 0`)
	for _, c := range []string{
		`now().In(timezone("Europe/Berlin")).Hour() >= 0`,
		`date("2024-07-01 12:00", "2006-01-02 15:04", "Europe/Berlin").Hour() >= 0`,
	} {
		if a := allocs(c); a > plain+10 {
			t.Errorf("%s: %v allocations an evaluation, %v without a zone", c, a, plain)
		}
	}
}

// A method called on a date patched with its zone takes its arguments as
// on any date: date(..., zone).In(timezone("UTC")) loaded and failed at
// every evaluation ("reflect: Call using time.Location as type
// *time.Location"), its rule never applying.
func TestTimeZonePatchedDateMethods(t *testing.T) {
	const berlin = `date("2024-01-01 00:00", "2006-01-02 15:04", "Europe/Berlin")`
	for _, c := range []string{
		berlin + `.In(timezone("UTC")).Hour() == 23`,
		berlin + `.In(timezone("Asia/Kolkata")).Minute() == 30`,
		berlin + `.Add(duration("1h")).In(timezone("UTC")).Hour() == 0`,
		berlin + `.Truncate(duration("1h")).Equal(` + berlin + `)`,
		berlin + `.Sub(date("2023-12-31 23:00", "2006-01-02 15:04", "UTC")).Hours() == 0`,
		`any(["x"], {` + berlin + `.In(timezone("UTC")).Hour() == 23})`,
	} {
		e, err := loadCond(t, c)
		if err != nil {
			t.Errorf("%s: %v", c, err)
			continue
		}
		if o := e.Evaluate(facts(policy.StageData)); len(o.Errors) > 0 || len(o.Reasons) != 1 {
			t.Errorf("%s: reasons %v, errors %v", c, reasons(o), o.Errors)
		}
	}
}

// date(zone, text, layout, "Zone") is expr's date with a location and a
// zone, the latter used: its zone was neither checked nor patched, so a
// zone from the message (helo) loaded and was looked up as a file name at
// every evaluation, and an unknown one failed every evaluation.
func TestTimeZoneDateFourArguments(t *testing.T) {
	f := facts(policy.StageData, helo("Europe/Berlin"))
	plainE, err := loadCond(t, `date(timezone("UTC"), "2024-01-01 12:00", "2006-01-02 15:04").Unix() > 0`)
	if err != nil {
		t.Fatal(err)
	}
	plain := testing.AllocsPerRun(20, func() { plainE.Evaluate(f) })
	for _, tc := range []struct{ cond, err string }{
		{`date(timezone("UTC"), "2024-01-01 00:00", "2006-01-02 15:04", helo).Year() > 0`, "date: the time zone must be a literal string"},
		{`date(timezone("UTC"), "2024-01-01 00:00", "2006-01-02 15:04", "Mars/Olympus_Mons").Year() > 0`, `date: unknown time zone "Mars/Olympus_Mons"`},
		{`date(timezone("UTC"), "2024-01-01 12:00", "2006-01-02 15:04", "Europe/Berlin").Unix() == 1704106800`, ""},
		{`date(timezone("UTC"), "2024-01-01 12:00", "2006-01-02 15:04", "Europe/Berlin").In(timezone("UTC")).Hour() == 11`, ""},
	} {
		e := condHolds(t, f, tc.cond, tc.err)
		if e == nil {
			continue
		}
		// Patched: no zone read at evaluation (see TestTimeZoneLoadedOnce).
		if a := testing.AllocsPerRun(20, func() { e.Evaluate(f) }); a > plain+10 {
			t.Errorf("%s: %v allocations an evaluation, %v without a zone", tc.cond, a, plain)
		}
	}
}

// condHolds loads cond as a rule's condition: with wantErr, the load must
// fail with an error holding it; else it must load and hold on f. It
// returns the engine of a condition that held, nil otherwise.
func condHolds(t *testing.T, f *policy.Facts, cond, wantErr string) *policy.Engine {
	t.Helper()
	e, err := loadCond(t, cond)
	switch {
	case wantErr != "":
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s: error %v, want %q", cond, err, wantErr)
		}
		return nil
	case err != nil:
		t.Errorf("%s: %v", cond, err)
		return nil
	}
	if o := e.Evaluate(f); len(o.Errors) > 0 || len(o.Reasons) != 1 {
		t.Errorf("%s: reasons %v, errors %v", cond, reasons(o), o.Errors)
		return nil
	}
	return e
}
