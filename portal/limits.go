package portal

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter is a token bucket per client address, bounded in the number of
// addresses it remembers; it reads an injected clock.
type limiter struct {
	mu    sync.Mutex
	every rate.Limit
	burst int
	max   int
	now   func() time.Time
	ips   map[string]*bucket
}

type bucket struct {
	l    *rate.Limiter
	seen time.Time
}

// forgetAfter is how long an address is remembered after its last request.
const forgetAfter = 10 * time.Minute

func newLimiters(l Limits, now func() time.Time) (login, pages *limiter) {
	if l.LoginsPerMinute <= 0 {
		l.LoginsPerMinute = 10
	}
	if l.PagesPerSecond <= 0 {
		l.PagesPerSecond = 5
	}
	if l.PagesBurst <= 0 {
		l.PagesBurst = 30
	}
	if l.MaxClients <= 0 {
		l.MaxClients = 10000
	}
	mk := func(r rate.Limit, b int) *limiter {
		return &limiter{every: r, burst: b, max: l.MaxClients, now: now, ips: map[string]*bucket{}}
	}
	return mk(rate.Limit(float64(l.LoginsPerMinute)/60), l.LoginsPerMinute), mk(rate.Limit(l.PagesPerSecond), l.PagesBurst)
}

// allow takes one token of ip's bucket; a new address when the table is
// full (after forgetting the idle ones) is refused: fail closed.
func (l *limiter) allow(ip string) bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.ips[ip]
	if !ok {
		if len(l.ips) >= l.max {
			for k, v := range l.ips {
				if now.Sub(v.seen) >= forgetAfter {
					delete(l.ips, k)
				}
			}
			if len(l.ips) >= l.max {
				return false
			}
		}
		b = &bucket{l: rate.NewLimiter(l.every, l.burst)}
		l.ips[ip] = b
	}
	b.seen = now
	return b.l.AllowN(now, 1)
}
