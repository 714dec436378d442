package checks

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestResolverLookups(t *testing.T) {
	srv := startDNS(t, "dns.zone")
	r := newResolver(t, srv, 0)
	ctx := context.Background()

	txt, err := r.LookupTXT(ctx, "long.cache.example")
	if err != nil || !slices.Equal(txt, []string{"five minutes"}) {
		t.Errorf("LookupTXT(long) = %q, %v", txt, err)
	}
	txt, err = r.LookupTXT(ctx, "split.cache.example")
	if err != nil || !slices.Equal(txt, []string{"v=spf1 -all"}) {
		t.Errorf("LookupTXT(split) = %q, %v; want the strings joined", txt, err)
	}
	txt, err = r.LookupTXT(ctx, "escaped.cache.example")
	if want := "quote \" backslash \\ byte \xe9 end"; err != nil || !slices.Equal(txt, []string{want}) {
		t.Errorf("LookupTXT(escaped) = %q, %v; want %q", txt, err, want)
	}

	ips, err := r.LookupIP(ctx, "host.cache.example")
	want := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("2001:db8::1")}
	slices.SortFunc(ips, netip.Addr.Compare)
	if err != nil || !slices.Equal(ips, want) {
		t.Errorf("LookupIP(host) = %v, %v", ips, err)
	}
	ipas, err := r.LookupIPAddr(ctx, "only4.cache.example")
	if err != nil || len(ipas) != 1 || ipas[0].IP.String() != "192.0.2.3" {
		t.Errorf("LookupIPAddr(only4) = %v, %v", ipas, err)
	}
	ips, err = r.LookupA(ctx, "alias.cache.example")
	if err != nil || len(ips) != 2 {
		t.Errorf("LookupA(alias) through CNAME = %v, %v", ips, err)
	}
	mxs, err := r.LookupMX(ctx, "mx.cache.example")
	if err != nil || len(mxs) != 2 || mxs[0].Host != "primary.cache.example." || mxs[0].Pref != 10 {
		t.Errorf("LookupMX = %v, %v", mxs, err)
	}
	names, err := r.LookupAddr(ctx, "192.0.2.1")
	if err != nil || !slices.Equal(names, []string{"host.cache.example."}) {
		t.Errorf("LookupAddr = %v, %v", names, err)
	}
	nss, err := r.LookupNS(ctx, "ns2.cache.example")
	if err != nil || !slices.Equal(nss, []string{"ns.cache.example."}) {
		t.Errorf("LookupNS = %v, %v", nss, err)
	}
}

// TestResolverNameCase: names fold case on ASCII letters only (RFC 4343
// section 3). Any other byte is asked as it is and keys its own cache
// entry: "\u00c9" and "\u00e9" are two names, and a byte that is not UTF-8
// is not U+FFFD.
func TestResolverNameCase(t *testing.T) {
	srv := startDNS(t, "dns.zone")
	srv.AddRR(t, `\255.cache.example. 300 IN TXT "byte ff"`)
	srv.AddRR(t, `\195\137.cache.example. 300 IN TXT "upper e acute"`)
	srv.AddRR(t, `\195\169.cache.example. 300 IN TXT "lower e acute"`)
	r := newResolver(t, srv, 0)
	ctx := context.Background()

	for _, c := range []struct{ name, want string }{
		{"\xff.Cache.Example", "byte ff"},
		{"\u00c9.CACHE.example", "upper e acute"},
		{"\u00e9.cache.example", "lower e acute"},
		{"LONG.Cache.example", "five minutes"},
	} {
		txt, err := r.LookupTXT(ctx, c.name)
		if err != nil || !slices.Equal(txt, []string{c.want}) {
			t.Errorf("LookupTXT(%q) = %q, %v; want %q", c.name, txt, err, c.want)
		}
		if !r.Cached(c.name, dns.TypeTXT) {
			t.Errorf("Cached(%q) = false after its lookup", c.name)
		}
	}
	if r.Cached("\u00e9.cache.example", dns.TypeA) || r.Cached("\xfe.cache.example", dns.TypeTXT) {
		t.Error("Cached true for names never asked")
	}
	// ASCII letters still fold: the same name in lower case is a hit.
	if _, err := r.LookupTXT(ctx, "long.cache.example"); err != nil {
		t.Fatal(err)
	}
	if n := srv.QueryCount("long.cache.example", dns.TypeTXT); n != 1 {
		t.Errorf("long.cache.example asked %d times, want 1 (LONG.Cache.example cached it)", n)
	}
	if n := srv.QueryCount("\xef\xbf\xbd.cache.example", dns.TypeTXT); n != 0 {
		t.Errorf("U+FFFD asked %d times in place of byte 0xff", n)
	}
}

// TestSameName: the question of an answer matches ours when the names are
// equal but for ASCII case, in wire form; other case foldings are other
// names.
func TestSameName(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"Host.Example.", "host.example.", true},
		{"a\\032b.example.", "a b.example.", true},
		{"\\255.example.", "\xff.example.", true},
		{"k.example.", "\u212a.example.", false},
		{"\u00e9.example.", "\u00c9.example.", false},
		{"host.example.", "hosts.example.", false},
	} {
		if got := sameName(c.a, c.b); got != c.want {
			t.Errorf("sameName(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

// TestResolverErrors checks the error semantics the SPF and go-msgauth
// libraries depend on: unwrapped *net.DNSError, IsNotFound for NXDOMAIN
// and NODATA, IsTimeout/Temporary for timeouts, Temporary for SERVFAIL.
func TestResolverErrors(t *testing.T) {
	srv := startDNS(t, "dns.zone")
	srv.Timeout("slow.cache.example")
	srv.ServFail("broken.cache.example")
	r := newResolver(t, srv, 300*time.Millisecond)
	ctx := context.Background()

	cases := []struct {
		name                         string
		notFound, timeout, temporary bool
	}{
		{"nope.cache.example", true, false, false},   // NXDOMAIN
		{"host.cache.example", true, false, false},   // NODATA (no TXT)
		{"slow.cache.example", false, true, true},    // no answer
		{"broken.cache.example", false, false, true}, // SERVFAIL
		{"bad..name.example", true, false, false},    // invalid name
		{strings.Repeat("a", 64) + ".cache.example", true, false, false},
	}
	for _, c := range cases {
		_, err := r.LookupTXT(ctx, c.name)
		de, ok := err.(*net.DNSError)
		if !ok {
			t.Errorf("%s: error %T %v, want *net.DNSError", c.name, err, err)
			continue
		}
		if de.IsNotFound != c.notFound || de.IsTimeout != c.timeout || de.Temporary() != c.temporary {
			t.Errorf("%s: %v: notfound %v timeout %v temporary %v; want %v %v %v", c.name, de,
				de.IsNotFound, de.IsTimeout, de.Temporary(), c.notFound, c.timeout, c.temporary)
		}
		// go-msgauth's test: a net.Error whose Temporary() is true.
		var ne net.Error = de
		if ne.Temporary() != c.temporary {
			t.Errorf("%s: net.Error Temporary() = %v", c.name, ne.Temporary())
		}
	}
	// The TXTLookup adapter keeps the type.
	_, err := r.TXTLookup(ctx)("slow.cache.example")
	if ne, ok := err.(net.Error); !ok || !ne.Temporary() || !ne.Timeout() {
		t.Errorf("TXTLookup timeout: %T %v", err, err)
	}

	// The caller's own deadline ends its wait with a timeout error.
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = r.LookupTXT(cctx, "slow.cache.example")
	if de, ok := err.(*net.DNSError); !ok || !de.IsTimeout {
		t.Errorf("caller deadline: %T %v, want a timeout *net.DNSError", err, err)
	}
	st := r.Stats()
	if st.Timeouts < 3 || st.Errors < 1 {
		t.Errorf("Stats = %+v, want timeouts and errors counted", st)
	}
}

// TestResolverLookupIPPartial: when one address type fails for now,
// LookupIP fails for now too, though the other type answered; the type
// that answered is still there alone.
func TestResolverLookupIPPartial(t *testing.T) {
	srv := startDNS(t, "dns.zone")
	srv.Timeout("host.cache.example", dns.TypeAAAA)
	srv.ServFail("only4.cache.example")
	r := newResolver(t, srv, 300*time.Millisecond)
	ctx := context.Background()

	ips, err := r.LookupIP(ctx, "host.cache.example")
	if de, ok := err.(*net.DNSError); !ok || !de.IsTimeout || !de.Temporary() {
		t.Errorf("LookupIP(host), AAAA timing out = %v, %T %v; want a timeout", ips, err, err)
	}
	ipas, err := r.LookupIPAddr(ctx, "only4.cache.example")
	if de, ok := err.(*net.DNSError); !ok || !de.Temporary() {
		t.Errorf("LookupIPAddr(only4), SERVFAIL = %v, %T %v; want a temporary error", ipas, err, err)
	}
	if ips, err := r.LookupA(ctx, "host.cache.example"); err != nil || len(ips) != 2 {
		t.Errorf("LookupA(host) = %v, %v", ips, err)
	}
	// Not found in one type only is no error.
	srv.Clear("host.cache.example")
	srv.Remove("only4.cache.example")
	srv.AddRR(t, "only4.cache.example. 300 IN A 192.0.2.3")
	if ips, err := r.LookupIP(ctx, "only4.cache.example"); err != nil || len(ips) != 1 {
		t.Errorf("LookupIP(only4) = %v, %v; want its A", ips, err)
	}
}

func TestResolverCacheTTL(t *testing.T) {
	srv := startDNS(t, "dns.zone")
	clock := newFakeClock()
	r := newResolver(t, srv, 0, WithClock(clock.Now))
	ctx := context.Background()

	lookup := func(name string) {
		t.Helper()
		if _, err := r.LookupTXT(ctx, name); err != nil {
			t.Fatalf("LookupTXT(%s): %v", name, err)
		}
	}
	count := func() int { return srv.QueryCount("short.cache.example", dns.TypeTXT) }

	lookup("short.cache.example") // TTL 30
	lookup("short.cache.example")
	if count() != 1 {
		t.Fatalf("queries after 2 lookups = %d, want 1 (cached)", count())
	}
	clock.Advance(29 * time.Second)
	lookup("short.cache.example")
	if count() != 1 {
		t.Errorf("queries at 29s = %d, want 1 (TTL 30 not expired)", count())
	}
	clock.Advance(2 * time.Second)
	lookup("short.cache.example")
	if count() != 2 {
		t.Errorf("queries at 31s = %d, want 2 (TTL 30 expired)", count())
	}
	st := r.Stats()
	if st.CacheHits != 2 || st.CacheMisses != 2 {
		t.Errorf("Stats = %+v, want 2 hits and 2 misses", st)
	}
}

func TestResolverNegativeCache(t *testing.T) {
	srv := startDNS(t, "dns.zone")
	srv.AddRR(t, "nosoa.example. IN A 192.0.2.99")
	clock := newFakeClock()
	r := newResolver(t, srv, 0, WithClock(clock.Now))
	ctx := context.Background()

	cases := []struct {
		name  string
		qtype uint16
		kind  string
	}{
		{"nope.cache.example", dns.TypeTXT, "NXDOMAIN"},
		{"host.cache.example", dns.TypeMX, "NODATA"},
	}
	for _, c := range cases {
		for range 2 {
			if _, err := r.Query(ctx, c.name, c.qtype); err != nil {
				t.Fatal(err)
			}
		}
		if n := srv.QueryCount(c.name, c.qtype); n != 1 {
			t.Errorf("%s: %d queries, want 1 (negative answer cached)", c.kind, n)
		}
	}
	// min(SOA TTL 3600, MINIMUM 60) = 60 s.
	clock.Advance(59 * time.Second)
	for _, c := range cases {
		resp, _ := r.Query(ctx, c.name, c.qtype)
		if !resp.Cached {
			t.Errorf("%s at 59s: not cached", c.kind)
		}
	}
	clock.Advance(2 * time.Second)
	for _, c := range cases {
		r.Query(ctx, c.name, c.qtype)
		if n := srv.QueryCount(c.name, c.qtype); n != 2 {
			t.Errorf("%s at 61s: %d queries, want 2 (expired)", c.kind, n)
		}
	}
	// Without SOA a negative answer is not cached (RFC 2308 section 5).
	for range 2 {
		r.Query(ctx, "other.example", dns.TypeA)
	}
	if n := srv.QueryCount("other.example", dns.TypeA); n != 2 {
		t.Errorf("NXDOMAIN without SOA: %d queries, want 2 (not cached)", n)
	}
}

// TestResolverNegativeTTLCap: a negative answer is kept at most 3 hours
// (RFC 2308 section 5), whatever its zone's SOA says; a positive one up to
// a day.
func TestResolverNegativeTTLCap(t *testing.T) {
	srv := startDNS(t, "dns.zone")
	srv.AddRR(t, "longneg.example. 172800 IN SOA ns.longneg.example. hostmaster.longneg.example. 1 3600 600 864000 172800")
	srv.AddRR(t, "here.longneg.example. 172800 IN A 192.0.2.7")
	clock := newFakeClock()
	r := newResolver(t, srv, 0, WithClock(clock.Now))
	ctx := context.Background()
	for _, name := range []string{"gone.longneg.example", "here.longneg.example"} {
		if _, err := r.Query(ctx, name, dns.TypeA); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(3*time.Hour - time.Second)
	for _, name := range []string{"gone.longneg.example", "here.longneg.example"} {
		if resp, _ := r.Query(ctx, name, dns.TypeA); !resp.Cached {
			t.Errorf("%s: not cached just under 3 h", name)
		}
	}
	clock.Advance(2 * time.Second)
	if resp, _ := r.Query(ctx, "gone.longneg.example", dns.TypeA); resp.Cached {
		t.Error("NXDOMAIN with a 2-day SOA MINIMUM still cached after 3 h")
	}
	if resp, _ := r.Query(ctx, "here.longneg.example", dns.TypeA); !resp.Cached {
		t.Error("a positive answer with a 2-day TTL not cached after 3 h")
	}
}

func TestResolverCacheBound(t *testing.T) {
	srv := startDNS(t, "dns.zone")
	r, err := NewResolver(DNSConfig{Servers: []string{srv.Addr()}, Timeout: testTimeout, CacheSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, n := range []string{"long", "short", "split"} {
		r.LookupTXT(ctx, n+".cache.example")
	}
	if st := r.Stats(); st.CacheEntries != 2 {
		t.Errorf("CacheEntries = %d, want 2", st.CacheEntries)
	}
	r.LookupTXT(ctx, "long.cache.example") // evicted: asked again
	if n := srv.QueryCount("long.cache.example", dns.TypeTXT); n != 2 {
		t.Errorf("evicted entry: %d queries, want 2", n)
	}
}

// TestResolverCacheLargeAnswer: an answer whose cache entry would keep more
// than maxCacheEntryBytes of heap is answered but not cached. This one, 64
// KB over TCP of 65,000 empty strings, kept 1.1 MB: a client naming random
// subdomains of a wildcard could fill the cache with them.
func TestResolverCacheLargeAnswer(t *testing.T) {
	srv := startDNS(t, "dns.zone")
	srv.AddRecords(&dns.TXT{Hdr: dns.RR_Header{Name: "*.huge.cache.example.", Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 86400},
		Txt: make([]string, 65000)})
	// 40 TXT records of 62 characters (TestResolverTCPRetry's) are cached.
	for i := range 40 {
		srv.AddRR(t, `many.cache.example. 300 IN TXT "`+strings.Repeat(string(rune('a'+i%26)), 60)+"-"+string(rune('A'+i%26))+`"`)
	}
	r := newResolver(t, srv, 0)
	ctx := context.Background()

	for range 2 {
		resp, err := r.Query(ctx, "x.huge.cache.example", dns.TypeTXT)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Answer) != 1 || len(resp.Answer[0].(*dns.TXT).Txt) != 65000 || resp.Cached {
			t.Fatalf("Query(huge) = %d records, cached %v; want the answer, not from the cache", len(resp.Answer), resp.Cached)
		}
	}
	if st := r.Stats(); st.CacheEntries != 0 || st.CacheBytes != 0 || st.TCPRetries != 2 {
		t.Errorf("Stats = %+v; want nothing cached and the answer asked twice", st)
	}
	for range 2 {
		if txt, err := r.LookupTXT(ctx, "many.cache.example"); err != nil || len(txt) != 40 {
			t.Fatalf("LookupTXT(many) = %d records, %v", len(txt), err)
		}
	}
	if st := r.Stats(); st.CacheEntries != 1 || st.CacheBytes > maxCacheEntryBytes || st.TCPRetries != 3 {
		t.Errorf("Stats = %+v; want the 40 records cached", st)
	}
}

// TestResolverCacheBytes: the cache evicts past cacheBytesPerEntry per
// entry of CacheSize, whatever the number of entries.
func TestResolverCacheBytes(t *testing.T) {
	srv := startDNS(t, "dns.zone")
	for i := range 30 { // about 10 KB in the cache
		srv.AddRR(t, `*.big.cache.example. 300 IN TXT "`+strconv.Itoa(i)+strings.Repeat("x", 200)+`"`)
	}
	r, err := NewResolver(DNSConfig{Servers: []string{srv.Addr()}, Timeout: testTimeout, CacheSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, n := range []string{"a", "b", "c"} {
		if txt, err := r.LookupTXT(ctx, n+".big.cache.example"); err != nil || len(txt) != 30 {
			t.Fatalf("LookupTXT(%s.big) = %d records, %v", n, len(txt), err)
		}
		if st := r.Stats(); st.CacheEntries != 1 || st.CacheBytes > 8*cacheBytesPerEntry {
			t.Errorf("after %s.big: Stats = %+v; want one entry within %d bytes", n, st, 8*cacheBytesPerEntry)
		}
	}
	r.LookupTXT(ctx, "a.big.cache.example") // evicted: asked again
	if n := srv.QueryCount("a.big.cache.example", dns.TypeTXT); n != 4 {
		t.Errorf("evicted entry: %d queries (UDP and TCP), want 4", n)
	}
	r.LookupTXT(ctx, "a.big.cache.example")
	if n := srv.QueryCount("a.big.cache.example", dns.TypeTXT); n != 4 {
		t.Errorf("cached entry: %d queries, want still 4", n)
	}
}

// TestResolverSharesQuery holds the one query at the server until every
// asker has joined it, then checks the server saw exactly one.
func TestResolverSharesQuery(t *testing.T) {
	srv := startDNS(t, "dns.zone")
	r, err := NewResolver(DNSConfig{Servers: []string{srv.Addr()}, Timeout: 10 * time.Second, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	release := srv.Hold("long.cache.example")
	const askers = 20
	var wg sync.WaitGroup
	errs := make(chan error, askers)
	for range askers {
		wg.Go(func() {
			txt, err := r.LookupTXT(context.Background(), "long.cache.example")
			if err == nil && len(txt) != 1 {
				err = os.ErrInvalid
			}
			errs <- err
		})
	}
	for r.Stats().Shared < askers-1 {
		time.Sleep(time.Millisecond)
	}
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := srv.QueryCount("long.cache.example", dns.TypeTXT); n != 1 {
		t.Errorf("server got %d queries for %d concurrent askers, want 1", n, askers)
	}
}

func TestResolverTCPRetry(t *testing.T) {
	srv := startDNS(t, "dns.zone")
	var want []string
	for i := range 40 {
		s := strings.Repeat(string(rune('a'+i%26)), 60) + "-" + string(rune('A'+i%26))
		srv.AddRR(t, `big.cache.example. 300 IN TXT "`+s+`"`)
		want = append(want, s)
	}
	r := newResolver(t, srv, 0)
	txt, err := r.LookupTXT(context.Background(), "big.cache.example")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(txt)
	slices.Sort(want)
	if !slices.Equal(txt, want) {
		t.Errorf("got %d TXT records, want %d", len(txt), len(want))
	}
	if st := r.Stats(); st.TCPRetries != 1 || st.Queries != 2 {
		t.Errorf("Stats = %+v, want 1 TCP retry and 2 queries", st)
	}
}

// TestResolverFailover: the first server never answers this name; the
// second does.
func TestResolverFailover(t *testing.T) {
	a := startDNS(t, "dns.zone")
	b := startDNS(t, "dns.zone")
	a.Timeout("long.cache.example")
	r, err := NewResolver(DNSConfig{Servers: []string{a.Addr(), b.Addr()}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	txt, err := r.LookupTXT(context.Background(), "long.cache.example")
	if err != nil || len(txt) != 1 {
		t.Errorf("LookupTXT = %q, %v; want the second server's answer", txt, err)
	}
}

func TestResolverResolvConf(t *testing.T) {
	old := resolvConfPath
	defer func() { resolvConfPath = old }()
	dir := t.TempDir()
	resolvConfPath = filepath.Join(dir, "resolv.conf")
	os.WriteFile(resolvConfPath, []byte("nameserver 127.0.0.1\nnameserver ::1\n"), 0o644)
	r, err := NewResolver(DNSConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Servers(); !slices.Equal(got, []string{"127.0.0.1:53", "[::1]:53"}) {
		t.Errorf("Servers() = %v", got)
	}
	resolvConfPath = filepath.Join(dir, "missing")
	if _, err := NewResolver(DNSConfig{}); err == nil {
		t.Error("NewResolver without servers nor resolv.conf: no error")
	}
}

func FuzzUnescapeTXT(f *testing.F) {
	f.Add(`plain`)
	f.Add(`a\"b\\c\233d\`)
	f.Add(`\999\12`)
	f.Fuzz(func(t *testing.T, s string) {
		u := unescapeTXT(s)
		if len(u) > len(s) {
			t.Errorf("unescapeTXT(%q) = %q is longer", s, u)
		}
		if !strings.Contains(s, `\`) && u != s {
			t.Errorf("unescapeTXT(%q) = %q changed a string without escapes", s, u)
		}
	})
}

// TestQueryPanicEndsFlight: a panic during a query run in the asker's
// goroutine (recovered further up, as a session recovers) still ends the
// query's flight, so later askers of the name are answered, not joined to
// a flight that never ends.
func TestQueryPanicEndsFlight(t *testing.T) {
	srv := startDNS(t, "dns.zone")
	r := newResolver(t, srv, 0)
	addr := srv.Addr()
	good := r.pools[addr]
	r.pools[addr] = nil // exchange panics on the nil pool
	func() {
		defer func() {
			if recover() == nil {
				t.Error("no panic")
			}
		}()
		r.Query(context.WithoutCancel(context.Background()), "host.cache.example", dns.TypeA)
	}()
	r.pools[addr] = good
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := r.Query(ctx, "host.cache.example", dns.TypeA); err != nil {
		t.Fatalf("query after a recovered panic: %v", err)
	}
}

// BenchmarkResolverCache measures the two paths of a lookup with the
// cache on: a hit, the path of every repeated lookup, and a miss that
// asks the server and fills the cache (a new name each time, so past the
// first thousand the cache also evicts an entry per lookup).
func BenchmarkResolverCache(b *testing.B) {
	srv := startDNS(b, "dns.zone")
	srv.AddRR(b, `*.wild.cache.example. 300 IN TXT "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all"`)
	r, err := NewResolver(DNSConfig{Servers: []string{srv.Addr()}, Timeout: testTimeout, CacheSize: 1000})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.Run("hit", func(b *testing.B) {
		if _, err := r.LookupTXT(ctx, "long.cache.example"); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.LookupTXT(ctx, "long.cache.example"); err != nil {
				b.Fatal(err)
			}
		}
	})
	n := 0
	b.Run("miss", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			n++
			if _, err := r.LookupTXT(ctx, "n"+strconv.Itoa(n)+".wild.cache.example"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDNSCachePut measures filling the cache apart from the network
// (which dominates BenchmarkResolverCache/miss): an SPF-sized TXT answer
// put under a new name each time, so the full cache also evicts.
func BenchmarkDNSCachePut(b *testing.B) {
	rr, err := dns.NewRR(`x.cache.example. 300 IN TXT "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 include:_spf.example.com -all"`)
	if err != nil {
		b.Fatal(err)
	}
	resp := &Response{Answer: []dns.RR{rr}, TTL: 300 * time.Second}
	keys := make([]cacheKey, 4096)
	for i := range keys {
		keys[i] = cacheKey{"n" + strconv.Itoa(i) + ".cache.example.", dns.TypeTXT}
	}
	c := newDNSCache(1000)
	expires := time.Now().Add(time.Hour)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c.put(keys[i%len(keys)], resp, expires)
		i++
	}
}
