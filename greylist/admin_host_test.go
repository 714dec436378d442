package greylist

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A browser on the operator's host can reach a loopback listener through
// DNS rebinding: the request then comes from 127.0.0.1, same-origin for
// the page, so a JSON POST needs no preflight. Its Host names the
// attacker's domain; the admin endpoints must refuse it.
func TestAdminRefusesForeignHost(t *testing.T) {
	g := newGreylister(t, testConfig(), NewMemoryStore(10), newClock())
	h := AdminHandler(g)
	for _, host := range []string{"evil.example:9025", "evil.example", "127.0.0.1.nip.io:9025", "localhost.evil.example"} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/greylist/allow", strings.NewReader(`{"network":"192.0.2.1","for":"24h"}`))
		req.Header.Set("Content-Type", "application/json")
		req.RemoteAddr = "127.0.0.1:40000"
		req.Host = host
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusForbidden {
			t.Errorf("Host %q: %d, want 403", host, rec.Code)
		}
	}
	for _, host := range []string{"127.0.0.1:9025", "[::1]:9025", "localhost:9025", "localhost", "127.0.0.2"} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/greylist/counts", nil)
		req.RemoteAddr = "127.0.0.1:40000"
		req.Host = host
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Errorf("Host %q: %d, want 200", host, rec.Code)
		}
	}
}

// A request relayed by a proxy on the same host comes from loopback but
// is not the operator's: refuse anything carrying forwarding headers.
func TestAdminRefusesForwarded(t *testing.T) {
	g := newGreylister(t, testConfig(), NewMemoryStore(10), newClock())
	h := AdminHandler(g)
	for _, hdr := range []string{"X-Forwarded-For", "Forwarded", "X-Real-Ip"} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/greylist/counts", nil)
		req.RemoteAddr = "127.0.0.1:40000"
		req.Host = "127.0.0.1:9025"
		req.Header.Set(hdr, "for=198.51.100.7")
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", hdr, rec.Code)
		}
	}
}
