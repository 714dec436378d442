package greylist

import (
	"container/heap"
	"container/list"
	"context"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"
)

// MemoryStore is the in-process store, used when no Redis is configured:
// one gateway, state lost on restart (senders are then greylisted once
// more, nothing worse).
//
// It keeps the same records under the same keys as RedisStore, each with
// an expiry time measured on the Greylister's clock. Memory is bounded by
// a cap on entries (greylist.max_memory_entries): when a new entry would
// pass the cap, expired entries are dropped first (the soonest expired,
// wherever they are in the write order), and if none has expired the
// least recently written entry that is not an allow (operator, or a
// network auto-allowed now) is evicted. An evicted triplet is simply greylisted again on its next
// attempt. Expired entries are otherwise dropped when met, so memory use is
// bounded by the cap, not by expiry.
type MemoryStore struct {
	mu    sync.Mutex
	max   int
	m     map[string]*memEntry
	order *list.List // of *memEntry, least recently written first
	byExp expHeap    // the same entries, soonest expiry first
}

type memEntry struct {
	key string
	exp int64 // Unix ms; the entry is gone at and after exp
	// triplet: first seen, passed at (0 while pending)
	first, passed int64
	// auto-allow record: count, last counted, allowed until
	count       int64
	last, until int64
	// operator allow: allowed until (in until)
	elem *list.Element
	hidx int // index in MemoryStore.byExp
}

// expHeap orders entries by expiry, so that the cap drops expired entries
// wherever they are in the write order.
type expHeap []*memEntry

func (h expHeap) Len() int           { return len(h) }
func (h expHeap) Less(i, j int) bool { return h[i].exp < h[j].exp }
func (h expHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hidx, h[j].hidx = i, j
}
func (h *expHeap) Push(x any) {
	e := x.(*memEntry)
	e.hidx = len(*h)
	*h = append(*h, e)
}
func (h *expHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}

// evictScan is how many expired entries one eviction drops at most (the
// soonest expired first), so that a put at the cap stays short however
// many have expired.
const evictScan = 64

// NewMemoryStore returns an empty store capped at maxEntries (at least 1).
func NewMemoryStore(maxEntries int) *MemoryStore {
	return &MemoryStore{max: max(maxEntries, 1), m: make(map[string]*memEntry), order: list.New()}
}

// SetMax changes the cap on entries (at least 1), keeping what is held:
// the daemon's reload of greylist.max_memory_entries. Lowering it below
// the entries held evicts at once as a new entry at the cap would
// (expired first, then the least recently written that is not an allow);
// now is the Greylister's clock.
func (s *MemoryStore) SetMax(maxEntries int, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.max = max(maxEntries, 1)
	if len(s.m) > s.max {
		// evict makes room for one more entry: ask it for none more.
		s.max++
		s.evict(msOf(now))
		s.max--
	}
}

// Name returns "memory".
func (s *MemoryStore) Name() string { return "memory" }

// Close does nothing.
func (s *MemoryStore) Close() error { return nil }

// Len returns the number of entries held, expired ones included.
func (s *MemoryStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// get returns a live entry or nil, dropping it if expired.
func (s *MemoryStore) get(key string, now int64) *memEntry {
	e := s.m[key]
	if e == nil {
		return nil
	}
	if e.exp <= now {
		s.remove(e)
		return nil
	}
	return e
}

func (s *MemoryStore) remove(e *memEntry) {
	delete(s.m, e.key)
	s.order.Remove(e.elem)
	heap.Remove(&s.byExp, e.hidx)
}

// put stores e (new or existing) with its expiry and marks it the most
// recently written.
func (s *MemoryStore) put(e *memEntry, now int64) {
	if e.elem != nil && s.m[e.key] == e {
		s.order.MoveToBack(e.elem)
		heap.Fix(&s.byExp, e.hidx) // its expiry may have changed
		return
	}
	if len(s.m) >= s.max {
		s.evict(now)
	}
	e.elem = s.order.PushBack(e)
	heap.Push(&s.byExp, e)
	s.m[e.key] = e
}

func (s *MemoryStore) evict(now int64) {
	// Expired entries first, wherever they are in the write order: the
	// pending triplets of bots that never retry expire unmet, behind
	// passes written earlier that still live.
	freed := false
	for i := 0; i < evictScan && len(s.byExp) > 0 && s.byExp[0].exp <= now; i++ {
		s.remove(s.byExp[0])
		freed = true
	}
	// The least recently written entry goes, unless it is an allow: a
	// flood of new triplets must not push out the operator's allows, nor
	// the networks auto-allowed now, which are written rarely. Those met
	// are moved to the back; only a store of nothing but allows evicts
	// one.
	moved := 0
	for !freed || len(s.m) >= s.max {
		front := s.order.Front()
		if front == nil {
			return
		}
		e := front.Value.(*memEntry)
		if moved < len(s.m) && e.isAllow(now) {
			s.order.MoveToBack(front)
			moved++
			continue
		}
		s.remove(e)
		freed = true
	}
}

// isAllow reports whether e is an operator allow, or the auto-allow record
// of a network allowed now.
func (e *memEntry) isAllow(now int64) bool {
	// By the key's kind, not its end: a triplet's recipient may end in
	// ":m" or ":a" too.
	kind, _, _, _ := keyKind(e.key)
	return kind == 'm' || kind == 'a' && e.until > now
}

func (s *MemoryStore) entry(key string, now int64) *memEntry {
	if e := s.get(key, now); e != nil {
		return e
	}
	return &memEntry{key: key}
}

// Decide applies the rules; see the package documentation. It is the Go
// twin of the Redis Lua script.
func (s *MemoryStore) Decide(ctx context.Context, t Normalized, nowT time.Time, p Params) (Outcome, error) {
	if err := ctx.Err(); err != nil {
		return Outcome{}, err
	}
	now := msOf(nowT)
	delay, window, passTTL := durMS(p.Delay), durMS(p.RetryWindow), durMS(p.PassTTL)
	need, interval := int64(p.AutoAllowAfter), durMS(p.AutoAllowInterval)

	s.mu.Lock()
	defer s.mu.Unlock()

	if op := s.get(OperatorKey(t.Network), now); op != nil && op.until > now {
		return outcomeOf(codeOperatorAllow, 0, op.until, 0, 0), nil
	}

	akey := AutoKey(t.Network)
	a := s.get(akey, now)
	var cnt, last, until int64
	if a != nil {
		cnt, last, until = a.count, a.last, a.until
	}
	if until > now {
		a.until = now + passTTL
		a.exp = now + passTTL
		s.put(a, now)
		return outcomeOf(codeAutoAllow, 0, a.until, cnt, 0), nil
	}
	if last+passTTL <= now {
		cnt, last = 0, 0
	}
	if until > 0 { // auto-allow lapsed: count again from zero
		cnt, last, until = 0, 0, 0
	}

	tkey := TripletKey(t)
	tr := s.get(tkey, now)
	var code int64
	switch {
	case tr == nil:
		code = codeFirstSeen
	case tr.passed > 0:
		if now < tr.passed+passTTL {
			code = codeKnown
		} else {
			code = codeFirstSeen // the pass expired: start over
		}
	case now >= tr.first+window:
		code = codeFirstSeen // retried too late: start over
	case now < tr.first+delay:
		code = codeTooEarly
	default:
		code = codeRetried
	}

	switch code {
	case codeFirstSeen:
		if tr == nil {
			tr = &memEntry{key: tkey}
		}
		tr.first, tr.passed, tr.exp = now, 0, now+window
		s.put(tr, now)
		return outcomeOf(code, now, now+delay, cnt, 0), nil
	case codeTooEarly:
		return outcomeOf(code, tr.first, tr.first+delay, cnt, 0), nil
	}

	tr.passed, tr.exp = now, now+passTTL
	s.put(tr, now)
	var became int64
	if need > 0 && (last == 0 || now-last >= interval) {
		cnt, last = cnt+1, now
		if cnt >= need {
			until, became = now+passTTL, 1
		}
		if a == nil {
			a = &memEntry{key: akey}
		}
		a.count, a.last, a.until, a.exp = cnt, last, until, now+passTTL
		s.put(a, now)
	}
	return outcomeOf(code, tr.first, tr.passed+passTTL, cnt, became), nil
}

// Show reports a network and its triplets.
func (s *MemoryStore) Show(ctx context.Context, q Normalized, nowT time.Time, p Params, limit int) (State, error) {
	if err := ctx.Err(); err != nil {
		return State{}, err
	}
	now := msOf(nowT)
	s.mu.Lock()
	defer s.mu.Unlock()
	st := State{Network: q.Network.String(), Triplets: []TripletState{}}
	if op := s.get(OperatorKey(q.Network), now); op != nil && op.until > now {
		st.OperatorAllowedUntil = timeOf(op.until)
	}
	if a := s.get(AutoKey(q.Network), now); a != nil {
		st.Passes, st.LastCounted = int(a.count), timeOf(a.last)
		if a.until > now {
			st.AutoAllowedUntil = timeOf(a.until)
		}
	}
	if q.Sender != "" || q.Recipient != "" {
		key := TripletKey(q)
		if e := s.get(key, now); e != nil && tripletLive(e.first, e.passed, now, p) {
			st.Triplets = append(st.Triplets, tripletState(key, q.Sender, q.Recipient, e.first, e.passed, p))
		}
		return st, nil
	}
	prefix := netTag(q.Network) + ":t:"
	for _, e := range s.liveWithPrefix(prefix, now, p) {
		if limit > 0 && len(st.Triplets) >= limit {
			st.Truncated = true
			break
		}
		snd, rcpt := splitTriplet(strings.TrimPrefix(e.key, prefix))
		st.Triplets = append(st.Triplets, tripletState(e.key, snd, rcpt, e.first, e.passed, p))
	}
	return st, nil
}

// liveWithPrefix returns live triplet entries under prefix, sorted by key.
// It walks the whole map: operator operations are rare.
func (s *MemoryStore) liveWithPrefix(prefix string, now int64, p Params) []*memEntry {
	var out []*memEntry
	for k, e := range s.m {
		if strings.HasPrefix(k, prefix) && e.exp > now && tripletLive(e.first, e.passed, now, p) {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out
}

// Release marks a triplet, or every pending triplet of a network, passed.
func (s *MemoryStore) Release(ctx context.Context, q Normalized, nowT time.Time, p Params) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	now := msOf(nowT)
	passTTL := durMS(p.PassTTL)
	s.mu.Lock()
	defer s.mu.Unlock()
	release := func(e *memEntry) {
		if e.first == 0 {
			e.first = now
		}
		e.passed, e.exp = now, now+passTTL
		s.put(e, now)
	}
	if q.Sender != "" || q.Recipient != "" {
		e := s.entry(TripletKey(q), now)
		if !tripletLive(e.first, e.passed, now, p) {
			e.first, e.passed = 0, 0
		}
		release(e)
		return 1, nil
	}
	n := 0
	for _, e := range s.liveWithPrefix(netTag(q.Network)+":t:", now, p) {
		if e.passed == 0 {
			release(e)
			n++
		}
	}
	return n, nil
}

// Allow sets or, with until not after now, removes an operator allow.
func (s *MemoryStore) Allow(ctx context.Context, network netip.Prefix, untilT, nowT time.Time, _ Params) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now, until := msOf(nowT), msOf(untilT)
	s.mu.Lock()
	defer s.mu.Unlock()
	key := OperatorKey(network)
	if until <= now {
		if e := s.m[key]; e != nil {
			s.remove(e)
		}
		return nil
	}
	e := s.entry(key, now)
	e.until, e.exp = until, until
	s.put(e, now)
	return nil
}

// Counts counts live entries.
func (s *MemoryStore) Counts(ctx context.Context, nowT time.Time, p Params) (Counts, error) {
	if err := ctx.Err(); err != nil {
		return Counts{}, err
	}
	now := msOf(nowT)
	s.mu.Lock()
	defer s.mu.Unlock()
	var c Counts
	for k, e := range s.m {
		if e.exp <= now {
			continue
		}
		kind, _, _, _ := keyKind(k)
		switch kind {
		case 't':
			if !tripletLive(e.first, e.passed, now, p) {
				continue
			}
			c.Triplets++
			if e.passed > 0 {
				c.Passed++
			} else {
				c.Pending++
			}
		case 'a':
			if e.until > now {
				c.AutoAllowedNetworks++
			} else if e.count > 0 {
				c.CountingNetworks++
			}
		case 'm':
			if e.until > now {
				c.OperatorAllowedNetworks++
			}
		}
	}
	return c, nil
}
