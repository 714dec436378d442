package greylist

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// opsSuite exercises the operator operations through any Operator: the
// Greylister itself or an AdminClient in front of it. clk drives g.
func opsSuite(t *testing.T, g *Greylister, op Operator, clk *fakeClock) {
	ctx := context.Background()

	check(t, g, "192.0.2.1", from, to)
	check(t, g, "192.0.2.2", "carol+x@example.com", to)
	check(t, g, "198.51.100.1", from, to)
	clk.Advance(time.Minute)

	// Show a network: both triplets, pending.
	st, err := op.Show(ctx, Query{Network: "192.0.2.77"})
	if err != nil {
		t.Fatal(err)
	}
	if st.Network != "192.0.2.0/24" || len(st.Triplets) != 2 {
		t.Fatalf("show network: %+v", st)
	}
	for _, tr := range st.Triplets {
		if tr.Status != StatusPending || tr.RetryAt.IsZero() || tr.FirstSeen.IsZero() || tr.Recipient != to {
			t.Errorf("pending triplet: %+v", tr)
		}
	}
	if st.Triplets[0].Sender != "alice@example.org" || st.Triplets[1].Sender != "carol@example.com" {
		t.Errorf("senders %q %q", st.Triplets[0].Sender, st.Triplets[1].Sender)
	}
	// Show one triplet, named with raw addresses.
	st, err = op.Show(ctx, Query{Network: "192.0.2.0/24", Sender: "Carol+y@Example.com", Recipient: "BOB@example.net"})
	if err != nil || len(st.Triplets) != 1 || st.Triplets[0].Sender != "carol@example.com" {
		t.Fatalf("show triplet: %+v %v", st, err)
	}

	// Counts.
	c, err := op.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.Triplets != 3 || c.Pending != 3 || c.Passed != 0 {
		t.Fatalf("counts %+v", c)
	}

	// Release one triplet: it passes at once, before the delay.
	r, err := op.Release(ctx, Query{Network: "198.51.100.1", Sender: from, Recipient: to})
	if err != nil || r.Released != 1 || r.Network != "198.51.100.0/24" {
		t.Fatalf("release triplet: %+v %v", r, err)
	}
	if d := check(t, g, "198.51.100.9", from, to); d.Action != Pass || d.Reason != ReasonKnown {
		t.Errorf("released triplet: %+v", d)
	}
	// Release a triplet never seen: it passes on first sight.
	if _, err := op.Release(ctx, Query{Network: "198.51.100.1", Recipient: to}); err != nil {
		t.Fatal(err)
	}
	if d := check(t, g, "198.51.100.9", "<>", to); d.Action != Pass {
		t.Errorf("pre-released null-sender triplet: %+v", d)
	}

	// Release a whole network: both pending triplets.
	r, err = op.Release(ctx, Query{Network: "192.0.2.0/24"})
	if err != nil || r.Released != 2 {
		t.Fatalf("release network: %+v %v", r, err)
	}
	if d := check(t, g, "192.0.2.3", "carol@example.com", to); d.Action != Pass {
		t.Errorf("after network release: %+v", d)
	}
	c, _ = op.Counts(ctx)
	if c.Triplets != 4 || c.Passed != 4 || c.Pending != 0 {
		t.Errorf("counts after release %+v", c)
	}
	// Nothing pending left to release.
	if r, _ := op.Release(ctx, Query{Network: "192.0.2.0/24"}); r.Released != 0 {
		t.Errorf("second network release released %d", r.Released)
	}

	// Allow a network for a day.
	a, err := op.Allow(ctx, Query{Network: "203.0.113.50"}, 24*time.Hour)
	if err != nil || a.Network != "203.0.113.0/24" || !a.Until.Equal(clk.Now().Add(24*time.Hour)) {
		t.Fatalf("allow: %+v %v", a, err)
	}
	if d := check(t, g, "203.0.113.1", from, to); d.Action != Allowed || d.Reason != ReasonOperatorAllow {
		t.Errorf("allowed network: %+v", d)
	}
	st, _ = op.Show(ctx, Query{Network: "203.0.113.0/24"})
	if !st.OperatorAllowedUntil.Equal(a.Until) {
		t.Errorf("show allowed network: %+v", st)
	}
	c, _ = op.Counts(ctx)
	if c.OperatorAllowedNetworks != 1 {
		t.Errorf("counts with an allow: %+v", c)
	}
	// It ends by itself...
	clk.Advance(24*time.Hour + time.Second)
	if d := check(t, g, "203.0.113.1", from, to); d.Action != Defer {
		t.Errorf("expired allow: %+v", d)
	}
	// ...or when removed.
	if _, err := op.Allow(ctx, Query{Network: "203.0.113.0/24"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := op.Allow(ctx, Query{Network: "203.0.113.0/24"}, 0); err != nil {
		t.Fatal(err)
	}
	if d := check(t, g, "203.0.113.1", from, to); d.Action == Allowed {
		t.Errorf("removed allow still in force: %+v", d)
	}

	// Bad queries.
	for _, q := range []Query{{}, {Network: "nonsense"}, {Network: "192.0.2.0/16"}, {Network: "192.0.2.1", Sender: from}} {
		if _, err := op.Show(ctx, q); !errors.Is(err, ErrBadQuery) {
			t.Errorf("Show(%+v): err %v, want ErrBadQuery", q, err)
		}
	}
	if _, err := op.Allow(ctx, Query{Network: "192.0.2.1", Recipient: to}, time.Hour); !errors.Is(err, ErrBadQuery) {
		t.Errorf("Allow with a recipient: %v", err)
	}
}

func TestOperatorOps(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind.name, func(t *testing.T) {
			clk := newClock()
			g := newGreylister(t, testConfig(), kind.new(t), clk)
			opsSuite(t, g, g, clk)
		})
	}
}

func TestAdminHandler(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind.name, func(t *testing.T) {
			clk := newClock()
			g := newGreylister(t, testConfig(), kind.new(t), clk)
			srv := httptest.NewServer(AdminHandler(g))
			t.Cleanup(srv.Close)
			ac, err := NewAdminClient(srv.URL, srv.Client())
			if err != nil {
				t.Fatal(err)
			}
			opsSuite(t, g, ac, clk)
		})
	}
}

func TestAdminHandlerGuards(t *testing.T) {
	g := newGreylister(t, testConfig(), NewMemoryStore(10), newClock())
	h := AdminHandler(g)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	// A form post (what a web page can send cross-origin) is refused.
	resp, err := http.Post(srv.URL+"/greylist/allow", "application/x-www-form-urlencoded", strings.NewReader("network=192.0.2.1&for=1h"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("form post: %s", resp.Status)
	}
	// Wrong method.
	resp, err = http.Get(srv.URL + "/greylist/release")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET release: %s", resp.Status)
	}
	// Unknown fields and bad JSON.
	resp, err = http.Post(srv.URL+"/greylist/release", "application/json", strings.NewReader(`{"net":"192.0.2.1"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("unknown field: %s", resp.Status)
	}
	// Bad duration.
	resp, err = http.Post(srv.URL+"/greylist/allow", "application/json", strings.NewReader(`{"network":"192.0.2.1","for":"soon"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad duration: %s", resp.Status)
	}
	// Not from loopback.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/greylist/counts", nil)
	req.RemoteAddr = "192.0.2.1:4000"
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Errorf("non-loopback client: %d", rec.Code)
	}
	// A store failure is a 500 with the message.
	if _, err := NewAdminClient("ftp://x", nil); err == nil {
		t.Error("NewAdminClient accepted ftp://")
	}
}

func TestAdminStoreError(t *testing.T) {
	srv, g, _ := faultSetup(t, FailOpen)
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(AdminHandler(g))
	t.Cleanup(hs.Close)
	ac, _ := NewAdminClient(hs.URL, hs.Client())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := ac.Counts(ctx)
	if err == nil || errors.Is(err, ErrBadQuery) || !strings.Contains(err.Error(), "500") {
		t.Errorf("counts with Redis down: %v", err)
	}
}
