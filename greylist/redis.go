package greylist

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisStore keeps greylist state in Redis, shared by every gateway that
// uses the same Redis and KeyPrefix. It works on a single node, through
// Sentinel and on a Cluster: one decision is one EVALSHA of a Lua script
// whose keys share one hash slot (see the package documentation).
type RedisStore struct {
	c      redis.UniversalClient
	prefix string
	owned  bool
}

// decideScript is the decision, atomic in Redis. Times are Unix
// milliseconds: Redis' own clock (TIME) when ARGV[1] is negative, which is
// how the daemon calls it, so that gateways sharing Redis agree on first
// sightings and delays however their clocks drift (a gateway six minutes
// ahead would otherwise pass a retry sent one second after a first try on
// another); else the time passed in (tests, with a fake clock). It mirrors
// MemoryStore.Decide.
//
//	KEYS[1] triplet hash  {f = first seen, p = passed at or 0}
//	KEYS[2] network auto-allow hash  {c = passes counted, h = last counted, u = allowed until}
//	KEYS[3] network operator allow string  (allowed until)
//	ARGV    now, delay, retry window, pass TTL, auto-allow after, count interval
//
// It returns {code, first seen, at, passes, became auto-allowed, now}, at
// being the retry time of a deferral, or when a pass or allow ends.
var decideScript = redis.NewScript(serverNow + `
local delay = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local passttl = tonumber(ARGV[4])
local need = tonumber(ARGV[5])
local interval = tonumber(ARGV[6])

local op = tonumber(redis.call('GET', KEYS[3]) or 0) or 0
if op > now then return {6, 0, op, 0, 0, now} end

local a = redis.call('HMGET', KEYS[2], 'c', 'h', 'u')
local cnt = tonumber(a[1]) or 0
local last = tonumber(a[2]) or 0
local au = tonumber(a[3]) or 0
if au > now then
  redis.call('HSET', KEYS[2], 'u', now + passttl)
  redis.call('PEXPIRE', KEYS[2], passttl)
  return {7, 0, now + passttl, cnt, 0, now}
end
if last + passttl <= now then cnt = 0; last = 0 end
if au > 0 then cnt = 0; last = 0; au = 0 end

local t = redis.call('HMGET', KEYS[1], 'f', 'p')
local f = tonumber(t[1])
local p = tonumber(t[2]) or 0
local code
if not f then code = 1
elseif p > 0 then
  if now < p + passttl then code = 5 else code = 1 end
elseif now >= f + window then code = 1
elseif now < f + delay then code = 2
else code = 4 end

if code == 1 then
  redis.call('HSET', KEYS[1], 'f', now, 'p', 0)
  redis.call('PEXPIRE', KEYS[1], window)
  return {code, now, now + delay, cnt, 0, now}
end
if code == 2 then return {2, f, f + delay, cnt, 0, now} end

redis.call('HSET', KEYS[1], 'p', now)
redis.call('PEXPIRE', KEYS[1], passttl)
local became = 0
if need > 0 and (last == 0 or now - last >= interval) then
  cnt = cnt + 1
  last = now
  if cnt >= need then au = now + passttl; became = 1 end
  redis.call('HSET', KEYS[2], 'c', cnt, 'h', last, 'u', au)
  redis.call('PEXPIRE', KEYS[2], passttl)
end
return {code, f, now + passttl, cnt, became, now}
`)

// serverNow starts a script: now is ARGV[1], or Redis' clock when that is
// negative. Scripts are replicated by their effects (the only way from
// Redis 7; asked for explicitly on older servers), so reading TIME before
// writing is allowed.
const serverNow = `
if redis.replicate_commands then redis.replicate_commands() end
local now = tonumber(ARGV[1])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end`

// allowScript sets an operator allow for ARGV[2] ms from now.
//
//	KEYS[1] operator allow string; ARGV now, length
var allowScript = redis.NewScript(serverNow + `
local d = tonumber(ARGV[2])
redis.call('SET', KEYS[1], now + d, 'PX', d)
return 1
`)

// releaseScript marks one triplet passed, keeping its first-seen time if
// it is still live.
//
//	KEYS[1] triplet hash; ARGV now, pass TTL, retry window
var releaseScript = redis.NewScript(serverNow + `
local passttl = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local t = redis.call('HMGET', KEYS[1], 'f', 'p')
local f = tonumber(t[1])
local p = tonumber(t[2]) or 0
local live = f and ((p > 0 and now < p + passttl) or (p == 0 and now < f + window))
if not live then f = now end
redis.call('HSET', KEYS[1], 'f', f, 'p', now)
redis.call('PEXPIRE', KEYS[1], passttl)
return 1
`)

// clock returns the now that stored times compare with (Redis' own with
// p.ServerClock, else the caller's), and what to add to them to put them
// on the caller's clock.
func (s *RedisStore) clock(ctx context.Context, nowT time.Time, p Params) (now, shift int64, err error) {
	if !p.ServerClock {
		return msOf(nowT), 0, nil
	}
	t, err := s.c.Time(ctx).Result()
	if err != nil {
		return 0, 0, err
	}
	return msOf(t), msOf(nowT) - msOf(t), nil
}

// scriptNow is the scripts' ARGV[1]: -1 for Redis' own clock.
func scriptNow(now time.Time, p Params) int64 {
	if p.ServerClock {
		return -1
	}
	return msOf(now)
}

// NewRedisStore connects to Redis as configured: a cluster client when
// cfg.Cluster, a Sentinel failover client when cfg.MasterName is set, else
// a single-node client (the first address). It does not dial until used.
func NewRedisStore(cfg RedisConfig) (*RedisStore, error) {
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("greylist: redis: no addresses")
	}
	if strings.ContainsAny(cfg.KeyPrefix, "{}") {
		return nil, errors.New("greylist: redis: key_prefix must not contain { or }")
	}
	dial := cfg.DialTimeout.D()
	if dial <= 0 {
		dial = time.Second
	}
	opts := &redis.UniversalOptions{
		Addrs:            cfg.Addrs,
		MasterName:       cfg.MasterName,
		Username:         cfg.Username,
		Password:         cfg.Password,
		SentinelPassword: cfg.SentinelPassword,
		DB:               cfg.DB,
		PoolSize:         cfg.PoolSize,
		DialTimeout:      dial,
		// Every call carries the decision's deadline; make the client
		// honour it on the socket, and fail fast rather than retry a dial
		// that the deadline will cut anyway.
		ContextTimeoutEnabled: true,
		DialerRetries:         1,
		ReadTimeout:           2 * time.Second,
		WriteTimeout:          2 * time.Second,
		ClientName:            "gatewayd-greylist",
		DisableIdentity:       true,
		// RESP2: with RESP3 (go-redis's default) the client peeks at the
		// socket for push notifications before every command, one more
		// read per decision (a sixth of a decision's CPU in
		// BenchmarkDecisionRedis); the store needs no pushes.
		Protocol: 2,
	}
	var c redis.UniversalClient
	switch {
	case cfg.Cluster:
		c = redis.NewClusterClient(opts.Cluster())
	case cfg.MasterName != "":
		c = redis.NewFailoverClient(opts.Failover())
	default:
		opts.Addrs = opts.Addrs[:1]
		c = redis.NewClient(opts.Simple())
	}
	s := NewRedisStoreClient(c, cfg.KeyPrefix)
	s.owned = true
	return s, nil
}

// NewRedisStoreClient uses an existing client; Close does not close it.
func NewRedisStoreClient(c redis.UniversalClient, keyPrefix string) *RedisStore {
	return &RedisStore{c: c, prefix: keyPrefix}
}

// Client returns the underlying client.
func (s *RedisStore) Client() redis.UniversalClient { return s.c }

// Name returns "redis".
func (s *RedisStore) Name() string { return "redis" }

// Close closes the client if NewRedisStore made it.
func (s *RedisStore) Close() error {
	if s.owned {
		return s.c.Close()
	}
	return nil
}

// Keys returns the full keys (KeyPrefix included) a decision on t uses:
// triplet, auto-allow, operator allow. They share one Cluster hash slot.
func (s *RedisStore) Keys(t Normalized) []string {
	return []string{s.prefix + TripletKey(t), s.prefix + AutoKey(t.Network), s.prefix + OperatorKey(t.Network)}
}

// Decide runs the decision script: one round trip.
func (s *RedisStore) Decide(ctx context.Context, t Normalized, now time.Time, p Params) (Outcome, error) {
	res, err := decideScript.Run(ctx, s.c, s.Keys(t),
		scriptNow(now, p), durMS(p.Delay), durMS(p.RetryWindow), durMS(p.PassTTL),
		p.AutoAllowAfter, durMS(p.AutoAllowInterval)).Int64Slice()
	if err != nil {
		return Outcome{}, fmt.Errorf("decide: %w", err)
	}
	if len(res) != 6 {
		return Outcome{}, fmt.Errorf("decide: script returned %d values", len(res))
	}
	if p.ServerClock {
		// Times come back on Redis' clock: moved onto ours, so that "try
		// again in N seconds" counts from our now, whatever the skew.
		shift := msOf(now) - res[5]
		for _, i := range []int{1, 2} {
			if res[i] > 0 {
				res[i] += shift
			}
		}
	}
	return outcomeOf(res[0], res[1], res[2], res[3], res[4]), nil
}

// netState reads the network's auto-allow and operator records.
func (s *RedisStore) netState(ctx context.Context, n netip.Prefix, now int64, p Params, st *State) error {
	pipe := s.c.Pipeline()
	a := pipe.HMGet(ctx, s.prefix+AutoKey(n), "c", "h", "u")
	m := pipe.Get(ctx, s.prefix+OperatorKey(n))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	av := a.Val()
	if len(av) == 3 {
		cnt, last, u := toInt(av[0]), toInt(av[1]), toInt(av[2])
		if u > now {
			st.AutoAllowedUntil = timeOf(u)
		}
		if u > now || last+durMS(p.PassTTL) > now {
			st.Passes, st.LastCounted = int(cnt), timeOf(last)
		}
	}
	if u, err := strconv.ParseInt(m.Val(), 10, 64); err == nil && u > now {
		st.OperatorAllowedUntil = timeOf(u)
	}
	return nil
}

func toInt(v any) int64 {
	s, _ := v.(string)
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// Show reports a network and its triplets. Listing a network scans the
// keyspace (SCAN MATCH on every master): fine for an operator, not for the
// mail path.
func (s *RedisStore) Show(ctx context.Context, q Normalized, nowT time.Time, p Params, limit int) (State, error) {
	now, shift, err := s.clock(ctx, nowT, p)
	if err != nil {
		return State{}, fmt.Errorf("show: %w", err)
	}
	st := State{Network: q.Network.String(), Triplets: []TripletState{}}
	if err := s.netState(ctx, q.Network, now, p, &st); err != nil {
		return State{}, fmt.Errorf("show: %w", err)
	}
	var keys []string
	if q.Sender != "" || q.Recipient != "" {
		keys = []string{s.prefix + TripletKey(q)}
	} else {
		keys, err = s.scan(ctx, globEscape(s.prefix+netTag(q.Network))+":t:*")
		if err != nil {
			return State{}, fmt.Errorf("show: %w", err)
		}
	}
	recs, err := s.readTriplets(ctx, keys)
	if err != nil {
		return State{}, fmt.Errorf("show: %w", err)
	}
	for _, r := range recs {
		if !tripletLive(r.first, r.passed, now, p) {
			continue
		}
		if limit > 0 && len(st.Triplets) >= limit {
			st.Truncated = true
			break
		}
		key := strings.TrimPrefix(r.key, s.prefix)
		_, _, rest, _ := keyKind(key)
		snd, rcpt := splitTriplet(rest)
		st.Triplets = append(st.Triplets, tripletState(key, snd, rcpt, r.first, r.passed, p))
	}
	st.shift(shift) // the times, read on Redis' clock, onto ours
	return st, nil
}

type tripletRec struct {
	key           string
	first, passed int64
}

// readTriplets reads triplet hashes in pipelined batches, sorted by key.
func (s *RedisStore) readTriplets(ctx context.Context, keys []string) ([]tripletRec, error) {
	sort.Strings(keys)
	out := make([]tripletRec, 0, len(keys))
	for len(keys) > 0 {
		batch := keys[:min(len(keys), 500)]
		keys = keys[len(batch):]
		pipe := s.c.Pipeline()
		cmds := make([]*redis.SliceCmd, len(batch))
		for i, k := range batch {
			cmds[i] = pipe.HMGet(ctx, k, "f", "p")
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
		for i, c := range cmds {
			v := c.Val()
			if len(v) != 2 || v[0] == nil {
				continue
			}
			out = append(out, tripletRec{key: batch[i], first: toInt(v[0]), passed: toInt(v[1])})
		}
	}
	return out, nil
}

// scan returns every key matching pattern, from every master of a
// cluster.
func (s *RedisStore) scan(ctx context.Context, pattern string) ([]string, error) {
	var keys []string
	seen := map[string]bool{}
	one := func(ctx context.Context, c redis.Cmdable) ([]string, error) {
		var out []string
		var cursor uint64
		for {
			ks, next, err := c.Scan(ctx, cursor, pattern, 1000).Result()
			if err != nil {
				return nil, err
			}
			out = append(out, ks...)
			if next == 0 {
				return out, nil
			}
			cursor = next
		}
	}
	if cc, ok := s.c.(*redis.ClusterClient); ok {
		ch := make(chan []string, 64)
		done := make(chan struct{})
		go func() {
			for ks := range ch {
				keys = append(keys, ks...)
			}
			close(done)
		}()
		err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			ks, err := one(ctx, c)
			if err == nil {
				ch <- ks
			}
			return err
		})
		close(ch)
		<-done
		if err != nil {
			return nil, err
		}
	} else {
		ks, err := one(ctx, s.c)
		if err != nil {
			return nil, err
		}
		keys = ks
	}
	out := keys[:0]
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out, nil
}

// globEscape quotes the glob characters of SCAN MATCH.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Release marks a triplet, or every pending triplet of a network, passed.
func (s *RedisStore) Release(ctx context.Context, q Normalized, nowT time.Time, p Params) (int, error) {
	now, _, err := s.clock(ctx, nowT, p)
	if err != nil {
		return 0, fmt.Errorf("release: %w", err)
	}
	args := []any{scriptNow(nowT, p), durMS(p.PassTTL), durMS(p.RetryWindow)}
	if q.Sender != "" || q.Recipient != "" {
		if err := releaseScript.Run(ctx, s.c, []string{s.prefix + TripletKey(q)}, args...).Err(); err != nil {
			return 0, fmt.Errorf("release: %w", err)
		}
		return 1, nil
	}
	keys, err := s.scan(ctx, globEscape(s.prefix+netTag(q.Network))+":t:*")
	if err != nil {
		return 0, fmt.Errorf("release: %w", err)
	}
	recs, err := s.readTriplets(ctx, keys)
	if err != nil {
		return 0, fmt.Errorf("release: %w", err)
	}
	n := 0
	for _, r := range recs {
		if r.passed != 0 || !tripletLive(r.first, r.passed, now, p) {
			continue
		}
		if err := releaseScript.Run(ctx, s.c, []string{r.key}, args...).Err(); err != nil {
			return n, fmt.Errorf("release: %w", err)
		}
		n++
	}
	return n, nil
}

// Allow sets or, with until not after now, removes an operator allow.
// The allow's end is counted from the decisions' clock (Redis' own with
// p.ServerClock), so that a gateway whose clock is behind does not set an
// allow that has already ended.
func (s *RedisStore) Allow(ctx context.Context, network netip.Prefix, untilT, nowT time.Time, p Params) error {
	key := s.prefix + OperatorKey(network)
	d := untilT.Sub(nowT)
	var err error
	if d < time.Millisecond {
		err = s.c.Del(ctx, key).Err()
	} else {
		err = allowScript.Run(ctx, s.c, []string{key}, scriptNow(nowT, p), durMS(d)).Err()
	}
	if err != nil {
		return fmt.Errorf("allow: %w", err)
	}
	return nil
}

// Counts scans every greylist key (SCAN on every master) and classifies
// it. Its cost grows with the keyspace: an operator command, not a metric
// to poll every few seconds.
func (s *RedisStore) Counts(ctx context.Context, nowT time.Time, p Params) (Counts, error) {
	now, _, err := s.clock(ctx, nowT, p)
	if err != nil {
		return Counts{}, fmt.Errorf("counts: %w", err)
	}
	keys, err := s.scan(ctx, globEscape(s.prefix)+"gl:{*")
	if err != nil {
		return Counts{}, fmt.Errorf("counts: %w", err)
	}
	var c Counts
	var tkeys []string
	var akeys, mkeys []string
	for _, k := range keys {
		kind, _, _, ok := keyKind(strings.TrimPrefix(k, s.prefix))
		if !ok {
			continue
		}
		switch kind {
		case 't':
			tkeys = append(tkeys, k)
		case 'a':
			akeys = append(akeys, k)
		case 'm':
			mkeys = append(mkeys, k)
		}
	}
	recs, err := s.readTriplets(ctx, tkeys)
	if err != nil {
		return Counts{}, fmt.Errorf("counts: %w", err)
	}
	for _, r := range recs {
		// Liveness by stored times: keys expire by Redis' clock, but the
		// rules run on the caller's.
		if !tripletLive(r.first, r.passed, now, p) {
			continue
		}
		c.Triplets++
		if r.passed > 0 {
			c.Passed++
		} else {
			c.Pending++
		}
	}
	for len(akeys) > 0 || len(mkeys) > 0 {
		ab := akeys[:min(len(akeys), 500)]
		akeys = akeys[len(ab):]
		mb := mkeys[:min(len(mkeys), 500)]
		mkeys = mkeys[len(mb):]
		pipe := s.c.Pipeline()
		acmds := make([]*redis.SliceCmd, len(ab))
		for i, k := range ab {
			acmds[i] = pipe.HMGet(ctx, k, "c", "h", "u")
		}
		mcmds := make([]*redis.StringCmd, len(mb))
		for i, k := range mb {
			mcmds[i] = pipe.Get(ctx, k)
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return Counts{}, fmt.Errorf("counts: %w", err)
		}
		for _, cmd := range acmds {
			v := cmd.Val()
			if len(v) != 3 {
				continue
			}
			if toInt(v[2]) > now {
				c.AutoAllowedNetworks++
			} else if toInt(v[0]) > 0 && toInt(v[1])+durMS(p.PassTTL) > now {
				c.CountingNetworks++
			}
		}
		for _, cmd := range mcmds {
			if u, err := strconv.ParseInt(cmd.Val(), 10, 64); err == nil && u > now {
				c.OperatorAllowedNetworks++
			}
		}
	}
	return c, nil
}
