package policy

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/expr-lang/expr/vm"

	"github.com/mxgate/gatewayd/checks"
)

// Env is what a rule condition sees: one variable per field, by the name in
// its expr tag, and the functions below. Conditions are type-checked
// against it when the rules load, so a misspelt name or a comparison of a
// string with a number is a load error, not a surprise in production.
//
// Variables of checks that did not run (or cannot have run yet at the
// stage) read as empty: "" strings, false, zero numbers, empty lists, and
// a zone that was not asked reads as not listed with status "".
type Env struct {
	Stage string `expr:"stage"` // "connect", "helo", "mail", "rcpt" or "data"

	ClientIP   string `expr:"client_ip"` // "192.0.2.7", "2001:db8::1"
	ClientPort int    `expr:"client_port"`
	// ClientName is the verified (forward-confirmed) reverse name of the
	// client, "" when there is none.
	ClientName string `expr:"client_name"`
	Helo       string `expr:"helo"`
	TLS        bool   `expr:"tls"`
	TLSVersion string `expr:"tls_version"` // "TLS1.3", "" without TLS

	MailFrom       string `expr:"mail_from"`        // "" for the null sender
	MailFromDomain string `expr:"mail_from_domain"` // lower case
	NullSender     bool   `expr:"null_sender"`

	Rcpt       string   `expr:"rcpt"`        // the recipient judged (rcpt stage)
	RcptDomain string   `expr:"rcpt_domain"` // lower case
	Rcpts      []string `expr:"rcpts"`       // recipients accepted so far

	// DNSBL is the result of each IP zone (block and allow lists) by zone
	// name: dnsbl["zen.spamhaus.org"].listed.
	DNSBL map[string]Zone `expr:"dnsbl"`
	// DomainBL is the result of each domain zone by zone name and then by
	// what was looked up ("helo", "mail_from", "from"):
	// domainbl["dbl.spamhaus.org"]["mail_from"].listed.
	DomainBL map[string]map[string]Zone `expr:"domainbl"`

	IPRev    IPRev  `expr:"iprev"`
	SPF      SPF    `expr:"spf"`
	DKIM     DKIM   `expr:"dkim"`
	DMARC    DMARC  `expr:"dmarc"`
	Greylist string `expr:"greylist"` // "", "pass", "defer", "allowed", "autoallowed", "failopen"

	Size int64 `expr:"size"` // message size in octets (data stage)
	// Score is the score so far: what the gateway passed in Facts.Score
	// plus what the rules of this stage added before this one.
	Score float64 `expr:"score"`

	// header(name) is the first value of the header field name ("" when
	// absent), unfolded and trimmed; headers(name) all of them, up to
	// the first maxHeaderValues (1000).
	HeaderFn  func(string) string   `expr:"header"`
	HeadersFn func(string) []string `expr:"headers"`
	// in_list(list, value) tests value against a named list. The list
	// name must be a literal string naming a declared list.
	InListFn func(string, string) bool `expr:"in_list"`
	// ip_in(ip, "192.0.2.0/24") tests an address against a network (or
	// an address) given as a literal string.
	IPInFn func(string, string) bool `expr:"ip_in"`
	// dnsbl_listed(zone) is dnsbl[zone].listed; dnsbl_code(zone, codes)
	// is true when the zone lists the client with a code in codes, a
	// literal, comma-separated list of addresses, ranges
	// ("127.0.0.4-127.0.0.7") and bitmasks ("mask:0x04").
	DNSBLListedFn func(string) bool         `expr:"dnsbl_listed"`
	DNSBLCodeFn   func(string, string) bool `expr:"dnsbl_code"`
	// dkim_pass_domain(d) is true when a DKIM signature with d= equal to
	// d (case-insensitive) verified.
	DKIMPassDomainFn func(string) bool `expr:"dkim_pass_domain"`
	// domain_match(name, parent) is true when name is parent or one of
	// its subdomains (case-insensitive).
	DomainMatchFn func(string, string) bool `expr:"domain_match"`

	facts *Facts
	eng   *Engine
	vm    vm.VM
	// dnsbl is the storage of DNSBL, kept from one evaluation to the
	// next, and dnsblKeys the zones filled in by this one.
	dnsbl     map[string]Zone
	dnsblKeys []string
	// hdrFew holds the values of the fields of the first few names
	// header() and headers() ask for in an evaluation (each name as
	// asked), each found by one pass over the header section that makes
	// strings of that name's fields only. Past hdrFewMax names, hdr holds
	// the values of every field by lower-case name, made in one pass, so
	// that a closure asking for many names (headers(n) for each n of a
	// list) costs one parse, not one per name. Values are at most
	// maxHeaderValues a name.
	hdrFew []hdrValues
	hdr    map[string][]string
}

// hdrValues are the values of the fields named name.
type hdrValues struct {
	name string
	vals []string
}

// hdrFewMax is how many names are looked up one pass each (the shipped
// rules ask for two) before the whole section is parsed.
const hdrFewMax = 4

// maxHeaderValues is the most values headers(name) gives: the first
// ones. A closure over them stays bounded; one over headers("To") within
// one over headers("Cc"), its square, is refused at load (condcost.go).
const maxHeaderValues = 1000

// Zone is one DNSBL or DNSWL zone's answer (checks.ZoneResult).
type Zone struct {
	Zone    string   `expr:"zone"`
	Kind    string   `expr:"kind"` // "ip" or "domain"
	Type    string   `expr:"type"` // "block" or "allow"
	Subject string   `expr:"subject"`
	Status  string   `expr:"status"` // "listed", "notlisted", "temperror", "zoneerror", "" when not asked
	Listed  bool     `expr:"listed"` // status == "listed": never true on a zone error
	Codes   []string `expr:"codes"`  // the answer codes, "127.0.0.2"
	Reason  string   `expr:"reason"` // the listing's TXT record, or the zone's reason
	Weight  float64  `expr:"weight"`
	Error   string   `expr:"error"`
}

// IPRev is the reverse DNS check (checks.IPRevResult).
type IPRev struct {
	Result string   `expr:"result"` // "pass", "fail", "temperror", "permerror", "" when not run
	Name   string   `expr:"name"`
	Names  []string `expr:"names"`
}

// SPF is the SPF result (checks.SPFResult).
type SPF struct {
	Result    string `expr:"result"` // "pass", "fail", "softfail", "neutral", "none", "temperror", "permerror", "" when not run
	Domain    string `expr:"domain"`
	Identity  string `expr:"identity"` // "mailfrom" or "helo"
	Mechanism string `expr:"mechanism"`
}

// DKIM is the DKIM result (checks.DKIMResult).
type DKIM struct {
	Pass       bool      `expr:"pass"`       // at least one signature verified
	Domains    []string  `expr:"domains"`    // d= of the signatures that verified, lower case
	Signatures []DKIMSig `expr:"signatures"` // every signature in header order
	Error      string    `expr:"error"`
}

// DKIMSig is one DKIM signature.
type DKIMSig struct {
	Domain     string `expr:"domain"`
	Selector   string `expr:"selector"`
	Algorithm  string `expr:"algorithm"`
	Identifier string `expr:"identifier"`
	Result     string `expr:"result"` // "pass", "fail", "neutral", "temperror", "permerror"
	Reason     string `expr:"reason"`
}

// DMARC is the DMARC result (checks.DMARCResult).
type DMARC struct {
	Result        string `expr:"result"` // "pass", "fail", "none", "temperror", "permerror", "" when not run
	Domain        string `expr:"domain"` // the From domain
	OrgDomain     string `expr:"org_domain"`
	Policy        string `expr:"policy"`  // the published p= (or sp=)
	Applied       string `expr:"applied"` // on fail, after pct: "none", "quarantine", "reject"; else ""
	Pct           int    `expr:"pct"`
	SPFAligned    bool   `expr:"spf_aligned"`
	DKIMAligned   bool   `expr:"dkim_aligned"`
	FromAddresses int    `expr:"from_addresses"`
	Reason        string `expr:"reason"`
}

// facets are the parts of Env that cost something to fill; a stage fills
// only those its conditions use.
type facets uint8

const (
	useDNSBL facets = 1 << iota
	useDomainBL
	useDKIM
	useIPRev
	useAll facets = 0xff
)

func newEnv(e *Engine) *Env {
	env := &Env{eng: e}
	env.HeaderFn = env.header
	env.HeadersFn = env.headers
	env.InListFn = env.inList
	env.IPInFn = env.ipIn
	env.DNSBLListedFn = env.dnsblListed
	env.DNSBLCodeFn = env.dnsblCode
	env.DKIMPassDomainFn = env.dkimPassDomain
	env.DomainMatchFn = domainMatch
	return env
}

// fill sets the variables from f. Maps and slices of facets not in use are
// left empty.
func (env *Env) fill(f *Facts, use facets) {
	env.facts = f
	env.clearHeaders()
	env.Stage = string(f.Stage)
	env.ClientIP = ""
	if f.ClientIP.IsValid() {
		env.ClientIP = f.ClientIP.Unmap().String()
	}
	env.ClientPort = f.ClientPort
	env.ClientName = f.ClientName
	env.Helo = f.Helo
	env.TLS = f.TLS
	env.TLSVersion = f.TLSVersion
	env.MailFrom = f.MailFrom
	env.MailFromDomain = f.MailFromDomain
	env.NullSender = f.NullSender
	env.Rcpt = f.Rcpt
	env.RcptDomain = f.RcptDomain
	env.Rcpts = f.Rcpts
	env.Greylist = f.Greylist
	env.Size = f.Size
	env.Score = f.Score

	env.DNSBL = nil
	if use&useDNSBL != 0 && len(f.DNSBL) > 0 {
		// The map is the Env's own, kept from one evaluation to the next:
		// a Zone is big enough that the map holds it out of line, and
		// storing to a key already there reuses that storage.
		m := env.dnsbl
		if m == nil {
			m = make(map[string]Zone, len(f.DNSBL))
			env.dnsbl = m
		}
		keys := env.dnsblKeys[:0]
		for k, z := range f.DNSBL {
			m[k] = zoneOf(z)
			keys = append(keys, k)
		}
		if len(m) > len(f.DNSBL) {
			for k := range m {
				if _, ok := f.DNSBL[k]; !ok {
					delete(m, k)
				}
			}
		}
		env.DNSBL, env.dnsblKeys = m, keys
	}
	env.DomainBL = nil
	if use&useDomainBL != 0 && len(f.DomainBL) > 0 {
		env.DomainBL = make(map[string]map[string]Zone, len(f.DomainBL))
		for k, m := range f.DomainBL {
			mm := make(map[string]Zone, len(m))
			for what, z := range m {
				mm[what] = zoneOf(z)
			}
			env.DomainBL[k] = mm
		}
	}
	env.IPRev = IPRev{}
	if f.IPRev != nil {
		env.IPRev = IPRev{Result: f.IPRev.Result, Name: f.IPRev.Name, Names: f.IPRev.Names}
	}
	env.SPF = SPF{}
	if f.SPF != nil {
		env.SPF = SPF{Result: string(f.SPF.Result), Domain: f.SPF.Domain, Identity: f.SPF.Identity, Mechanism: f.SPF.Mechanism}
	}
	env.DKIM = DKIM{}
	if f.DKIM != nil && use&useDKIM != 0 {
		d := DKIM{Pass: f.DKIM.Pass(), Error: f.DKIM.Err, Signatures: make([]DKIMSig, len(f.DKIM.Signatures))}
		for i, s := range f.DKIM.Signatures {
			d.Signatures[i] = DKIMSig{Domain: s.Domain, Selector: s.Selector, Algorithm: s.Algorithm,
				Identifier: s.Identifier, Result: string(s.Result), Reason: s.Reason}
			if s.Result == checks.DKIMPass {
				d.Domains = append(d.Domains, strings.ToLower(s.Domain))
			}
		}
		env.DKIM = d
	}
	env.DMARC = DMARC{}
	if f.DMARC != nil {
		m := f.DMARC
		env.DMARC = DMARC{Result: string(m.Result), Domain: m.Domain, OrgDomain: m.OrgDomain, Policy: m.Policy,
			Applied: m.Applied, Pct: m.Pct, SPFAligned: m.SPFAligned, DKIMAligned: m.DKIMAligned,
			FromAddresses: m.FromAddresses, Reason: m.Reason}
	}
}

// clear drops the references to the facts so a pooled Env keeps nothing
// of a finished evaluation alive.
func (env *Env) clear() {
	env.facts = nil
	env.clearHeaders()
	env.Rcpts = nil
	env.DNSBL = nil
	for _, k := range env.dnsblKeys {
		env.dnsbl[k] = Zone{} // keep the keys (zone names) and their storage, not the answers
	}
	env.dnsblKeys = env.dnsblKeys[:0]
	env.DomainBL = nil
	env.IPRev = IPRev{}
	env.DKIM = DKIM{}
}

func zoneOf(z checks.ZoneResult) Zone {
	return Zone{Zone: z.Zone, Kind: z.Kind, Type: z.Type, Subject: z.Subject, Status: string(z.Status),
		Listed: z.Status == checks.Listed, Codes: z.Codes, Reason: z.Reason, Weight: z.Weight, Error: z.Error}
}

func (env *Env) header(name string) string {
	if v := env.headerValues(name); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (env *Env) headers(name string) []string {
	return env.headerValues(name)
}

// clearHeaders drops the header values of the last evaluation, keeping
// hdrFew's storage.
func (env *Env) clearHeaders() {
	clear(env.hdrFew)
	env.hdrFew, env.hdr = env.hdrFew[:0], nil
}

// headerValues returns the first maxHeaderValues values of the fields
// named name (case-insensitive), unfolded and trimmed, in order. Each
// name is looked up once per evaluation (see hdrFew).
func (env *Env) headerValues(name string) []string {
	if env.facts == nil {
		return nil
	}
	var v []string
	if env.hdr != nil {
		v = env.hdr[strings.ToLower(name)]
	} else if i := slices.IndexFunc(env.hdrFew, func(h hdrValues) bool { return h.name == name }); i >= 0 {
		v = env.hdrFew[i].vals
	} else if len(env.hdrFew) < hdrFewMax {
		v = checks.HeaderValues(env.facts.Header, name, maxHeaderValues)
		env.hdrFew = append(env.hdrFew, hdrValues{name, v})
	} else {
		m := map[string][]string{}
		for _, h := range checks.HeaderFields(env.facts.Header) {
			k := strings.ToLower(h.Name)
			if v := m[k]; len(v) < maxHeaderValues {
				m[k] = append(v, strings.TrimSpace(h.Value))
			}
		}
		env.hdr = m
		v = m[strings.ToLower(name)]
	}
	return v[:len(v):len(v)] // an append by the caller does not write into the cache
}

func (env *Env) inList(name, v string) bool {
	l := env.eng.lists[name]
	return l != nil && l.Contains(v)
}

func (env *Env) ipIn(ip, network string) bool {
	p, ok := env.eng.prefixes[network]
	if !ok {
		var err error
		if p, err = parseNetwork(network); err != nil {
			return false
		}
	}
	a, err := netip.ParseAddr(ip)
	return err == nil && p.Contains(a.Unmap())
}

func (env *Env) zoneResult(zone string) (checks.ZoneResult, bool) {
	if env.facts == nil {
		return checks.ZoneResult{}, false
	}
	z, ok := env.facts.DNSBL[zone]
	return z, ok
}

func (env *Env) dnsblListed(zone string) bool {
	z, ok := env.zoneResult(zone)
	return ok && z.Status == checks.Listed
}

func (env *Env) dnsblCode(zone, codes string) bool {
	z, ok := env.zoneResult(zone)
	if !ok || z.Status != checks.Listed {
		return false
	}
	filters, ok := env.eng.codes[codes]
	if !ok {
		var err error
		if filters, err = parseCodes(codes); err != nil {
			return false
		}
	}
	for _, c := range z.Codes {
		a, err := netip.ParseAddr(c)
		if err != nil {
			continue
		}
		for _, f := range filters {
			if f.Match(a) {
				return true
			}
		}
	}
	return false
}

func parseCodes(s string) ([]checks.CodeFilter, error) {
	var out []checks.CodeFilter
	for _, part := range strings.Split(s, ",") {
		f, err := checks.ParseCodeFilter(part)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

func (env *Env) dkimPassDomain(d string) bool {
	if env.facts == nil || env.facts.DKIM == nil {
		return false
	}
	d = strings.TrimSuffix(d, ".")
	for _, s := range env.facts.DKIM.Signatures {
		if s.Result == checks.DKIMPass && strings.EqualFold(strings.TrimSuffix(s.Domain, "."), d) {
			return true
		}
	}
	return false
}

func domainMatch(name, parent string) bool {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	parent = strings.ToLower(strings.TrimSuffix(parent, "."))
	if parent == "" || name == "" {
		return false
	}
	return name == parent || strings.HasSuffix(name, "."+parent)
}
