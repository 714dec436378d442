// Package greylist decides whether a recipient of an inbound message is
// greylisted: deferred with a temporary failure on first sight of its
// triplet, and accepted when the sending MTA retries after a delay, as real
// MTAs do and most spam software does not. It keeps state in Redis, shared
// by several gateways, or in memory for a single one.
//
// The package returns decisions; the gateway writes the SMTP replies (451
// 4.7.1 with the retry time for Defer) and the decision log.
//
// # Rules
//
// The triplet is the client network (the address grouped into a /24 for
// IPv4 and a /64 for IPv6, configurable), the envelope sender normalised
// by NormalizeSender (lower case, +extension, SRS, BATV and per-message
// bounce parts removed, the null sender as "<>") and the recipient in lower
// case. The rules follow postgrey:
//
//   - First sight of a triplet: Defer, RetryAt = first sight + delay.
//   - Retry before the delay: Defer; the first-sight time is kept.
//   - Retry after the delay and before the retry window ends (both
//     measured from first sight): Pass, and the triplet is remembered as
//     passed for pass_ttl, refreshed on every later pass.
//   - Retry after the window, or after a pass expired: starts over as a
//     first sight (Defer, reason "first_seen"), as the record has expired.
//   - Every pass counts towards the client network's auto-allow, at most
//     once per auto_allow_interval. When the count reaches
//     auto_allow_after, the network is auto-allowed for every triplet for
//     pass_ttl, refreshed on every message.
//   - Static allow lists (allow_cidrs, allow_domains on the client's
//     verified name or the sender's domain, allow_recipients) are checked
//     first, without a store round trip. An operator allow (Allow) is
//     checked next, in the store.
//
// Times come from the Greylister's clock (WithClock) and are passed to the
// store, so tests step a fake clock over delays and windows.
//
// # Failure
//
// A decision has a deadline (greylist.deadline, 300ms). When the store
// fails or is too slow, the decision has Reason "store_error" and Err set,
// and is a Pass flagged FailOpen (fail_mode open, the default) or a Defer
// (fail_mode closed); both are counted. The Redis client reconnects by
// itself when Redis returns; nothing needs restarting.
//
// # Redis keys
//
// Every key starts with greylist.redis.key_prefix (default empty). The
// client network, in CIDR form, is a Cluster hash tag, so all keys of one
// decision live in one hash slot and one decision is one EVALSHA:
//
//	gl:{<net>}:t:<sender>:<rcpt>  hash f=first seen, p=passed at (0 while pending),
//	                              Unix ms. TTL: retry window while pending,
//	                              pass_ttl after a pass.
//	gl:{<net>}:a                  hash c=passes counted, h=last counted, u=auto-allowed
//	                              until (0 if not). TTL pass_ttl, refreshed.
//	gl:{<net>}:m                  string: operator allow until, Unix ms. TTL: the allow's length.
//
// For example gl:{192.0.2.0/24}:t:alice@example.org:bob@example.net and
// gl:{2001:db8:1:2::/64}:a. A ':' or '%' inside the sender or recipient
// is written %3a or %25, so no two triplets share a key. Every key carries a TTL, so Redis cleans up by
// itself; the times inside the values decide, and decisions take them
// from Redis' clock (TIME), so gateways sharing Redis agree however their
// own clocks drift (a fake clock given with WithClock is used instead, for
// tests). Show, Release of a network and Counts use SCAN (on
// every master of a cluster): operator commands, not mail-path calls.
//
// The memory store uses the same keys in a map, with the same expiry,
// capped at greylist.max_memory_entries (see MemoryStore).
//
// # Use
//
//	cfg := greylist.DefaultConfig()          // or decoded from YAML
//	g, err := greylist.Open(cfg, greylist.WithMetrics(m))
//	d, err := g.Check(ctx, greylist.Triplet{IP: ip, Sender: from, Recipient: rcpt})
//	if d.Action == greylist.Defer { /* 451 4.7.1 ... retry after d.RetryAt */ }
//
// Operator operations (Show, Release, Allow, Counts) are methods of
// Greylister, served over HTTP by AdminHandler and called remotely with
// AdminClient.
package greylist
