package checks

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/mxgate/gatewayd/internal/dnstest"
	"github.com/mxgate/gatewayd/internal/fakeclock"
)

// startDNS starts the test DNS server with zone files from testdata/.
func startDNS(t testing.TB, zones ...string) *dnstest.Server {
	t.Helper()
	var paths []string
	for _, z := range zones {
		paths = append(paths, filepath.Join("testdata", z))
	}
	return dnstest.Start(t, paths...)
}

// testTimeout is the per-lookup timeout of the test resolvers: long
// enough never to expire on loopback, short enough to keep timeout
// tests quick.
const testTimeout = 2 * time.Second

// newResolver returns a resolver that asks srv.
func newResolver(t testing.TB, srv *dnstest.Server, timeout time.Duration, opts ...ResolverOption) *Resolver {
	t.Helper()
	if timeout == 0 {
		timeout = testTimeout
	}
	r, err := NewResolver(DNSConfig{Servers: []string{srv.Addr()}, Timeout: timeout}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func newFakeClock() *fakeclock.Clock {
	return fakeclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
}
