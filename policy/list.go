package policy

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"slices"
	"strings"
)

// ListType is the kind of entries a named list holds, which decides how a
// value is matched against it.
type ListType string

// The list types.
const (
	// ListCIDR holds IPv4 and IPv6 networks ("192.0.2.0/24",
	// "2001:db8::/32") and single addresses ("192.0.2.7"). A value matches
	// when it is an address inside one of them; IPv4-mapped IPv6 addresses
	// match as IPv4.
	ListCIDR ListType = "cidr"
	// ListDomain holds domain names: "example.com" matches that name
	// only, "*.example.com" its subdomains only, ".example.com" the name
	// and its subdomains. Case-insensitive, a trailing dot is ignored.
	ListDomain ListType = "domain"
	// ListAddress holds mail addresses, matched exactly but without
	// regard to case.
	ListAddress ListType = "address"
	// ListRegex holds RE2 regular expressions (Go's regexp syntax), one
	// per line, unanchored: add ^ and $ to match a whole value. A value
	// matches when any of them matches.
	ListRegex ListType = "regex"
)

// ParseListType returns the list type named s.
func ParseListType(s string) (ListType, error) {
	switch t := ListType(s); t {
	case ListCIDR, ListDomain, ListAddress, ListRegex:
		return t, nil
	}
	return "", fmt.Errorf("unknown list type %q (want cidr, domain, address or regex)", s)
}

// List is a named set of entries that conditions test values against with
// in_list(name, value). It is immutable once built and safe for concurrent
// use.
type List struct {
	Name   string
	Type   ListType
	Source string // the file it was read from, "" for inline entries
	n      int
	m      matcher
}

// Len is the number of entries the list was built from.
func (l *List) Len() int { return l.n }

// Contains reports whether v matches an entry of the list.
func (l *List) Contains(v string) bool { return l.m.contains(v) }

type matcher interface{ contains(string) bool }

// ListEntry is one entry of a list with the place it comes from (for error
// messages).
type ListEntry struct {
	Value  string
	Line   int // 1-based
	Column int // 1-based
}

// ReadListEntries reads a list file: one entry per line, blank lines and
// lines starting with "#" ignored. Except in regex lists, "#" after
// white space starts a comment that runs to the end of the line (a regex
// may contain "#", so there only whole-line comments exist).
func ReadListEntries(r io.Reader, typ ListType) ([]ListEntry, error) {
	var out []ListEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	line := 0
	for sc.Scan() {
		line++
		raw := sc.Text()
		if typ != ListRegex {
			if i := strings.Index(raw, "#"); i == 0 || (i > 0 && (raw[i-1] == ' ' || raw[i-1] == '\t')) {
				raw = raw[:i]
			}
		}
		v := strings.TrimRight(raw, " \t\r")
		trimmed := strings.TrimLeft(v, " \t")
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		out = append(out, ListEntry{Value: trimmed, Line: line, Column: len(v) - len(trimmed) + 1})
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("line %d: %w", line+1, err)
	}
	return out, nil
}

// EntryError is a bad list entry.
type EntryError struct {
	Entry ListEntry
	Err   error
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("%d:%d: %v", e.Entry.Line, e.Entry.Column, e.Err)
}

// BuildList builds a list of type typ from entries. It returns every bad
// entry (as *EntryError), and a list of the good ones.
func BuildList(name string, typ ListType, entries []ListEntry) (*List, []error) {
	var errs []error
	bad := func(e ListEntry, format string, args ...any) {
		errs = append(errs, &EntryError{Entry: e, Err: fmt.Errorf(format, args...)})
	}
	l := &List{Name: name, Type: typ}
	switch typ {
	case ListCIDR:
		var b cidrBuilder
		for _, e := range entries {
			p, err := parseNetwork(e.Value)
			if err != nil {
				bad(e, "%v", err)
				continue
			}
			b.add(p)
			l.n++
		}
		l.m = b.build()
	case ListDomain:
		m := &domainSet{exact: map[string]struct{}{}, subs: map[string]struct{}{}, self: map[string]struct{}{}}
		for _, e := range entries {
			v := strings.ToLower(strings.TrimSuffix(e.Value, "."))
			set := m.exact
			switch {
			case strings.HasPrefix(v, "*."):
				v, set = v[2:], m.subs
			case strings.HasPrefix(v, "."):
				v, set = v[1:], m.self
			}
			if err := checkDomain(v); err != nil {
				bad(e, "%v", err)
				continue
			}
			set[v] = struct{}{}
			l.n++
		}
		l.m = m
	case ListAddress:
		m := addressSet{}
		for _, e := range entries {
			v := strings.ToLower(strings.Trim(e.Value, "<>"))
			at := strings.LastIndexByte(v, '@')
			if at <= 0 || at == len(v)-1 || strings.ContainsAny(v, " \t") {
				bad(e, "%q is not a mail address (local@domain)", e.Value)
				continue
			}
			m[v] = struct{}{}
			l.n++
		}
		l.m = m
	case ListRegex:
		var parts []string
		for _, e := range entries {
			if _, err := regexp.Compile(e.Value); err != nil {
				bad(e, "bad regular expression: %v", err)
				continue
			}
			parts = append(parts, "(?:"+e.Value+")")
			l.n++
		}
		if len(parts) == 0 {
			l.m = nothing{}
			break
		}
		// One alternation is faster than a loop over expressions, and RE2
		// keeps it linear in the length of the value.
		re, err := regexp.Compile(strings.Join(parts, "|"))
		if err != nil {
			errs = append(errs, fmt.Errorf("combining the expressions: %w", err))
			l.m = nothing{}
			break
		}
		l.m = regexMatcher{re}
	default:
		errs = append(errs, fmt.Errorf("unknown list type %q", typ))
		l.m = nothing{}
	}
	return l, errs
}

// ParseList reads and builds a list in one step (see ReadListEntries and
// BuildList); the error joins every bad entry.
func ParseList(name string, typ ListType, r io.Reader) (*List, error) {
	entries, err := ReadListEntries(r, typ)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", name, err)
	}
	l, errs := BuildList(name, typ, entries)
	if len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		return nil, fmt.Errorf("list %s: %s", name, strings.Join(msgs, "; "))
	}
	return l, nil
}

type nothing struct{}

func (nothing) contains(string) bool { return false }

type regexMatcher struct{ re *regexp.Regexp }

func (m regexMatcher) contains(v string) bool { return m.re.MatchString(v) }

type addressSet map[string]struct{}

func (m addressSet) contains(v string) bool {
	_, ok := m[strings.ToLower(strings.Trim(v, "<>"))]
	return ok
}

// domainSet matches a name against exact names, "subdomains of" and "name
// and subdomains of" entries: one map lookup per label of the value.
type domainSet struct {
	exact, subs, self map[string]struct{}
}

func (m *domainSet) contains(v string) bool {
	v = strings.TrimSuffix(v, ".")
	if hasUpper(v) {
		v = strings.ToLower(v)
	}
	if _, ok := m.exact[v]; ok {
		return true
	}
	if _, ok := m.self[v]; ok {
		return true
	}
	if len(m.subs) == 0 && len(m.self) == 0 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] != '.' {
			continue
		}
		parent := v[i+1:]
		if _, ok := m.subs[parent]; ok {
			return true
		}
		if _, ok := m.self[parent]; ok {
			return true
		}
	}
	return false
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

// checkDomain accepts LDH names with underscores (as seen in the DNS) and
// A-labels; it is a sanity check, not full validation.
func checkDomain(d string) error {
	if d == "" || len(d) > 253 {
		return fmt.Errorf("%q is not a domain name", d)
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("%q is not a domain name (empty or long label)", d)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("%q is not a domain name (character %q)", d, c)
			}
		}
	}
	return nil
}

// parseNetwork parses a CIDR or a single address (a /32 or /128), without
// IPv6 zones. Host bits set under the mask are ignored: "192.0.2.1/24" is
// 192.0.2.0/24. IPv4-mapped IPv6 networks are turned into IPv4 ones.
func parseNetwork(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		p, err = netip.ParsePrefix(s)
		if err != nil {
			return p, fmt.Errorf("%q is not a network: %v", s, err)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return p, fmt.Errorf("%q is not an address or network", s)
		}
		if a.Zone() != "" {
			return p, fmt.Errorf("%q: zones are not allowed", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// cidrSet is a set of networks kept as sorted, merged, disjoint address
// intervals, one table per family; Contains is one binary search, so
// 100,000 networks cost about 17 comparisons. The standard library has no
// prefix set, and a sorted interval table is a few dozen lines with no
// pointer chasing (a radix trie would use more memory for the same
// logarithmic lookups), hence our own.
type cidrSet struct {
	v4 []span4
	v6 []span6
}

type span4 struct{ lo, hi uint32 }

// u128 is an IPv6 address as two big-endian halves.
type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || a.hi == b.hi && a.lo < b.lo }

func (a u128) next() (u128, bool) { // a+1, and whether it overflowed
	if a.lo != ^uint64(0) {
		return u128{a.hi, a.lo + 1}, false
	}
	if a.hi != ^uint64(0) {
		return u128{a.hi + 1, 0}, false
	}
	return u128{}, true
}

type span6 struct{ lo, hi u128 }

type cidrBuilder struct {
	v4 []span4
	v6 []span6
}

func (b *cidrBuilder) add(p netip.Prefix) {
	if p.Addr().Is4() {
		a := p.Addr().As4()
		lo := binary.BigEndian.Uint32(a[:])
		hi := lo | uint32((uint64(1)<<(32-p.Bits()))-1)
		b.v4 = append(b.v4, span4{lo, hi})
		return
	}
	lo := addr128(p.Addr())
	hostBits := 128 - p.Bits()
	hi := lo
	switch {
	case hostBits >= 64:
		hi.lo = ^uint64(0)
		if hostBits == 128 {
			hi.hi = ^uint64(0)
		} else {
			hi.hi |= (uint64(1) << (hostBits - 64)) - 1
		}
	case hostBits > 0:
		hi.lo |= (uint64(1) << hostBits) - 1
	}
	b.v6 = append(b.v6, span6{lo, hi})
}

func addr128(a netip.Addr) u128 {
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func (b *cidrBuilder) build() *cidrSet {
	s := &cidrSet{}
	slices.SortFunc(b.v4, func(x, y span4) int { return cmp.Compare(x.lo, y.lo) })
	for _, sp := range b.v4 {
		if n := len(s.v4); n > 0 && (s.v4[n-1].hi == ^uint32(0) || sp.lo <= s.v4[n-1].hi+1) {
			s.v4[n-1].hi = max(s.v4[n-1].hi, sp.hi)
			continue
		}
		s.v4 = append(s.v4, sp)
	}
	slices.SortFunc(b.v6, func(x, y span6) int {
		if x.lo == y.lo {
			return 0
		}
		if x.lo.less(y.lo) {
			return -1
		}
		return 1
	})
	for _, sp := range b.v6 {
		if n := len(s.v6); n > 0 {
			last := &s.v6[n-1]
			nx, over := last.hi.next()
			if over || !nx.less(sp.lo) { // sp.lo <= last.hi+1: overlapping or adjacent
				if last.hi.less(sp.hi) {
					last.hi = sp.hi
				}
				continue
			}
		}
		s.v6 = append(s.v6, sp)
	}
	s.v4 = slices.Clip(s.v4)
	s.v6 = slices.Clip(s.v6)
	return s
}

func (s *cidrSet) contains(v string) bool {
	a, err := netip.ParseAddr(v)
	if err != nil {
		return false
	}
	return s.containsAddr(a)
}

func (s *cidrSet) containsAddr(a netip.Addr) bool {
	a = a.Unmap()
	if a.Is4() {
		b := a.As4()
		x := binary.BigEndian.Uint32(b[:])
		// The first span that starts above x; the one before it is the
		// only one that can hold x.
		lo, hi := 0, len(s.v4)
		for lo < hi {
			m := int(uint(lo+hi) >> 1)
			if s.v4[m].lo <= x {
				lo = m + 1
			} else {
				hi = m
			}
		}
		return lo > 0 && x <= s.v4[lo-1].hi
	}
	if !a.Is6() {
		return false
	}
	x := addr128(a)
	lo, hi := 0, len(s.v6)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if !x.less(s.v6[m].lo) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo > 0 && !s.v6[lo-1].hi.less(x)
}
