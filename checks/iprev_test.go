package checks

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestIPRevNamesInParallel: the addresses of the PTR names are asked
// together, not one name after the other: with ten names whose servers do
// not answer, one after the other took ten DNS timeouts (50 s by default)
// in the session that looks iprev up in place, past the backstop that
// bounds the checks it waits for. Here every name's query must reach the
// server before any lookup has timed out, and the name that confirms the
// address is reported, the first in PTR order.
func TestIPRevNamesInParallel(t *testing.T) {
	srv := startDNS(t)
	srv.AddRR(t, "test. 300 IN SOA ns.test. h.test. 1 3600 600 86400 300")
	names := []string{"n0.test.", "n1.test.", "n2.test.", "n3.test."}
	for _, n := range names {
		srv.AddRR(t, "10.2.0.192.in-addr.arpa. 60 IN PTR "+n)
	}
	srv.AddRR(t, "n2.test. 60 IN A 192.0.2.10")
	srv.AddRR(t, "n3.test. 60 IN A 192.0.2.10")
	var releases []func()
	for _, n := range names {
		releases = append(releases, srv.Hold(n))
	}
	r := newResolver(t, srv, testTimeout)
	done := make(chan IPRevResult, 1)
	go func() { done <- IPRev(context.Background(), r, netip.MustParseAddr("192.0.2.10")) }()
	for {
		asked := 0
		for _, n := range names {
			if srv.QueryCount(n, dns.TypeA) > 0 {
				asked++
			}
		}
		if asked == len(names) {
			break
		}
		if r.Stats().Timeouts > 0 {
			t.Fatalf("a lookup timed out with %d of %d names asked: the names are asked one after the other", asked, len(names))
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, release := range releases {
		release()
	}
	got := <-done
	if got.Result != "pass" || got.Name != "n2.test" || len(got.Names) != len(names) {
		t.Errorf("IPRev = %+v, want pass by n2.test", got)
	}
}
