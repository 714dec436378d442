package greylist

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// AdminHandler serves the operator operations as small JSON endpoints,
// for the daemon's loopback admin listener. Mount it unchanged:
//
//	mux.Handle("/greylist/", greylist.AdminHandler(g))
//
// Endpoints:
//
//	GET  /greylist/show?network=IP|CIDR[&sender=S&recipient=R]  → State
//	GET  /greylist/counts                                       → Counts
//	POST /greylist/release  {"network":..,"sender":..,"recipient":..} → Released
//	POST /greylist/allow    {"network":..,"for":"24h"}          → Allowance ("for":"0" removes)
//
// POST bodies must be Content-Type application/json, which a web page
// cannot send cross-origin without a preflight, and every request must
// come from a loopback address and name localhost or a loopback address in
// its Host (which a DNS-rebinding page cannot); others get 403. Errors are
// {"error":"..."} with 400 for a bad request and 500 for a store failure.
func AdminHandler(op Operator) http.Handler {
	mux := http.NewServeMux()
	h := &adminHandler{op: op}
	mux.HandleFunc("GET /greylist/show", h.show)
	mux.HandleFunc("GET /greylist/counts", h.counts)
	mux.HandleFunc("POST /greylist/release", h.release)
	mux.HandleFunc("POST /greylist/allow", h.allow)
	return loopbackOnly(mux)
}

type adminHandler struct{ op Operator }

// AllowRequest is the body of POST /greylist/allow.
type AllowRequest struct {
	Network string   `json:"network"`
	For     Duration `json:"for"`
}

type errorBody struct {
	Error string `json:"error"`
}

func loopbackOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		ip, perr := netip.ParseAddr(host)
		if err != nil || perr != nil || !ip.Unmap().IsLoopback() {
			writeJSON(w, http.StatusForbidden, errorBody{"greylist admin: loopback clients only"})
			return
		}
		// A page in a browser on this host reaches a loopback listener
		// through DNS rebinding: the request comes from 127.0.0.1, and is
		// same-origin for the page, so a JSON POST needs no preflight. Its
		// Host still names the page's domain.
		// A reverse proxy on this host (publishing the metrics, say) also
		// connects from loopback, for clients anywhere: what it relays is
		// not the operator's.
		for _, h := range []string{"Forwarded", "X-Forwarded-For", "X-Real-Ip", "Via"} {
			if r.Header.Get(h) != "" {
				writeJSON(w, http.StatusForbidden, errorBody{"greylist admin: proxied requests refused"})
				return
			}
		}
		if !loopbackHost(r.Host) {
			writeJSON(w, http.StatusForbidden, errorBody{"greylist admin: Host must be localhost or a loopback address"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// loopbackHost reports whether a request's Host names this host's
// loopback: "localhost" or a loopback address, with or without a port.
// An empty Host (HTTP/1.0) is accepted: browsers always send one.
func loopbackHost(h string) bool {
	if h == "" {
		return true
	}
	host := h
	if hh, _, err := net.SplitHostPort(h); err == nil {
		host = hh
	} else if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		host = h[1 : len(h)-1]
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Zone() == "" && ip.Unmap().IsLoopback()
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	if errors.Is(err, ErrBadQuery) {
		code = http.StatusBadRequest
	}
	writeJSON(w, code, errorBody{err.Error()})
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/json" {
		writeJSON(w, http.StatusUnsupportedMediaType, errorBody{"want Content-Type application/json"})
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{"bad JSON body: " + err.Error()})
		return false
	}
	return true
}

func (h *adminHandler) show(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	st, err := h.op.Show(r.Context(), Query{Network: q.Get("network"), Sender: q.Get("sender"), Recipient: q.Get("recipient")})
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (h *adminHandler) counts(w http.ResponseWriter, r *http.Request) {
	c, err := h.op.Counts(r.Context())
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (h *adminHandler) release(w http.ResponseWriter, r *http.Request) {
	var q Query
	if !readJSON(w, r, &q) {
		return
	}
	res, err := h.op.Release(r.Context(), q)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (h *adminHandler) allow(w http.ResponseWriter, r *http.Request) {
	var req AllowRequest
	if !readJSON(w, r, &req) {
		return
	}
	res, err := h.op.Allow(r.Context(), Query{Network: req.Network}, req.For.D())
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// AdminClient performs operator operations through a running gateway's
// AdminHandler, so they apply to its store even when that is the
// in-process memory store.
type AdminClient struct {
	base string
	hc   *http.Client
}

// NewAdminClient talks to the admin listener at base
// ("http://127.0.0.1:8025"). A nil hc uses a client with a 30s timeout.
func NewAdminClient(base string, hc *http.Client) (*AdminClient, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("greylist: admin address %q: want http://HOST:PORT", base)
	}
	if hc == nil {
		hc = &http.Client{Timeout: opTimeout}
	}
	return &AdminClient{base: strings.TrimSuffix(base, "/"), hc: hc}, nil
}

func (c *AdminClient) do(ctx context.Context, method, path string, body, out any) error {
	ctx, cancel := opContext(ctx)
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("greylist: admin: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return fmt.Errorf("greylist: admin: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("greylist: admin: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("greylist: admin: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e errorBody
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			if resp.StatusCode == http.StatusBadRequest {
				return fmt.Errorf("%w: admin: %s", ErrBadQuery, e.Error)
			}
			return fmt.Errorf("greylist: admin: %s: %s", resp.Status, e.Error)
		}
		return fmt.Errorf("greylist: admin: %s", resp.Status)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("greylist: admin: bad answer: %w", err)
	}
	return nil
}

// Show asks GET /greylist/show.
func (c *AdminClient) Show(ctx context.Context, q Query) (State, error) {
	v := url.Values{"network": {q.Network}}
	if q.Sender != "" {
		v.Set("sender", q.Sender)
	}
	if q.Recipient != "" {
		v.Set("recipient", q.Recipient)
	}
	var st State
	err := c.do(ctx, http.MethodGet, "/greylist/show?"+v.Encode(), nil, &st)
	return st, err
}

// Release asks POST /greylist/release.
func (c *AdminClient) Release(ctx context.Context, q Query) (Released, error) {
	var r Released
	err := c.do(ctx, http.MethodPost, "/greylist/release", q, &r)
	return r, err
}

// Allow asks POST /greylist/allow.
func (c *AdminClient) Allow(ctx context.Context, q Query, d time.Duration) (Allowance, error) {
	if q.Sender != "" || q.Recipient != "" {
		return Allowance{}, fmt.Errorf("%w: allow takes a network only", ErrBadQuery)
	}
	var a Allowance
	err := c.do(ctx, http.MethodPost, "/greylist/allow", AllowRequest{Network: q.Network, For: Duration(d)}, &a)
	return a, err
}

// Counts asks GET /greylist/counts.
func (c *AdminClient) Counts(ctx context.Context) (Counts, error) {
	var n Counts
	err := c.do(ctx, http.MethodGet, "/greylist/counts", nil, &n)
	return n, err
}
