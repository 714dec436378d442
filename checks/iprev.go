package checks

import (
	"context"
	"net"
	"net/netip"
	"strings"
)

// IPRevResult is the outcome of the reverse DNS check of the client IP
// (RFC 8601 section 3, "iprev"): forward-confirmed reverse DNS.
type IPRevResult struct {
	Result string     `json:"result,omitempty"` // "pass", "fail", "temperror" or "permerror"
	IP     netip.Addr `json:"ip,omitempty"`     // the client IP
	// Name is the first PTR name whose addresses include IP (pass), or
	// the first PTR name (fail).
	Name   string   `json:"name,omitempty"`
	Names  []string `json:"names,omitempty"` // the PTR names, at most 10
	Reason string   `json:"reason,omitempty"`
}

// maxPTRNames bounds the PTR names whose addresses are looked up (as RFC
// 7208 section 4.6.4 does for the ptr mechanism).
const maxPTRNames = 10

// IPRev checks that a PTR name of ip resolves back to ip (RFC 8601
// section 3): pass if one does, fail if none does, permerror if there is
// no PTR record (NXDOMAIN or NODATA: RFC 8601 section 2.7.3 keeps fail for
// names that do not resolve back), temperror if a lookup failed for now.
func IPRev(ctx context.Context, res *Resolver, ip netip.Addr) IPRevResult {
	ip = ip.Unmap()
	r := IPRevResult{IP: ip}
	names, err := res.LookupAddr(ctx, ip.String())
	if err == nil && len(names) == 0 {
		err = &net.DNSError{Err: "no PTR record", Name: ip.String(), IsNotFound: true}
	}
	if err != nil {
		if de, ok := err.(*net.DNSError); ok && de.IsNotFound {
			// RFC 8601 section 2.7.3: no PTR data published for the
			// address is permerror; fail is for PTR names that do not
			// resolve back to it.
			r.Result, r.Reason = "permerror", "no PTR record"
			return r
		}
		if de, ok := err.(*net.DNSError); ok && de.Temporary() {
			r.Result, r.Reason = "temperror", err.Error()
			return r
		}
		r.Result, r.Reason = "permerror", err.Error()
		return r
	}
	if len(names) > maxPTRNames {
		names = names[:maxPTRNames]
	}
	r.Names = names
	// Ask the client's address family alone (RFC 8601 section 3: "A or
	// AAAA as appropriate"): the other family cannot confirm the address,
	// and its failure must not hide ours (an IPv6 client whose AAAA lookup
	// timed out is temperror, though the A lookup answered). It also halves
	// the queries.
	lookup := res.LookupA
	if ip.Is6() {
		lookup = res.LookupAAAA
	}
	// The names are asked together, answers taken in PTR order: one after
	// the other, names whose servers do not answer took a DNS timeout each
	// (ten of them: 50 s at the default timeout), and iprev is looked up in place in
	// the session, with no other bound. The first name is asked in this
	// goroutine; a single name, the usual case, costs no goroutine.
	type fwd struct {
		addrs []netip.Addr
		err   error
	}
	results := make([]chan fwd, len(names))
	for i := 1; i < len(names); i++ {
		ch := make(chan fwd, 1)
		results[i] = ch
		n := names[i]
		tasks.Go(func() {
			addrs, err := lookup(ctx, n)
			ch <- fwd{addrs, err}
		})
	}
	var tempErr error
	for i, n := range names {
		var f fwd
		if i == 0 {
			f.addrs, f.err = lookup(ctx, n)
		} else {
			f = <-results[i]
		}
		addrs, err := f.addrs, f.err
		if err != nil {
			if de, ok := err.(*net.DNSError); ok && de.Temporary() {
				tempErr = err
			}
			continue
		}
		for _, a := range addrs {
			if a.Unmap() == ip {
				r.Result, r.Name = "pass", strings.TrimSuffix(n, ".")
				return r
			}
		}
	}
	if tempErr != nil {
		r.Result, r.Reason = "temperror", tempErr.Error()
		return r
	}
	r.Result, r.Reason = "fail", "no PTR name resolves to "+ip.String()
	if len(names) > 0 {
		r.Name = strings.TrimSuffix(names[0], ".")
	}
	return r
}
