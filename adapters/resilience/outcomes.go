package resilience

import (
	"slices"
	"time"
)

// outcomes keeps the last outcomes of a source in a ring, for Status.
type outcomes struct {
	ring [1024]outcome
	next int
	full bool
}

type outcome struct {
	at      time.Time
	latency time.Duration
	failed  bool
}

func (o *outcomes) add(at time.Time, latency time.Duration, failed bool) {
	o.ring[o.next] = outcome{at: at, latency: latency, failed: failed}
	o.next = (o.next + 1) % len(o.ring)
	if o.next == 0 {
		o.full = true
	}
}

// summary covers the outcomes since: count, error ratio, p50 and p99.
func (o *outcomes) summary(since time.Time) (calls int, errRatio float64, p50, p99 time.Duration) {
	n := o.next
	if o.full {
		n = len(o.ring)
	}
	var lat []time.Duration
	failed := 0
	for _, x := range o.ring[:n] {
		if x.at.Before(since) {
			continue
		}
		lat = append(lat, x.latency)
		if x.failed {
			failed++
		}
	}
	if len(lat) == 0 {
		return 0, 0, 0, 0
	}
	slices.Sort(lat)
	pick := func(q float64) time.Duration { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
	return len(lat), float64(failed) / float64(len(lat)), pick(0.5), pick(0.99)
}
