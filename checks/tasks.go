package checks

import (
	"time"

	"github.com/mxgate/gatewayd/internal/gopool"
)

// tasks runs the asynchronous lookups of the checks (a DNSBL zone, a DNS
// query whose asker may give up) on goroutines kept between lookups:
// miekg/dns unpacks deep, and a new goroutine's stack grew (a copy each
// time) on every uncached query. See internal/gopool.
var tasks = gopool.New(256, 10*time.Second, func(f func()) { f() })

// Go runs f on a kept goroutine; the gateway uses it for the checks it
// starts itself (SPF, reverse DNS).
func Go(f func()) { tasks.Go(f) }
