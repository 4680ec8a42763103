package ratelimit

import (
	"context"
	"sync"
	"time"
	_ "time/tzdata" // the day boundary is Paris time, whatever the host's zone files
)

// Paris is the time zone whose midnight resets daily quotas.
var Paris = mustLoad("Europe/Paris")

func mustLoad(name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return loc
}

// Daily is the in-memory DailyCounter of one replica: it counts calls per
// key (consumer × service) per day, Paris time, against the grants' daily
// caps. Counts can be seeded at start (from the audit log), so a restart
// does not reset them.
type Daily struct {
	mu     sync.Mutex
	day    string
	counts map[string]int
}

var (
	_ DailyCounter = (*Daily)(nil)
	_ Seeder       = (*Daily)(nil)
)

// NewDaily returns an empty counter.
func NewDaily() *Daily { return &Daily{counts: map[string]int{}} }

// Day is the Paris calendar day of t, as counters key it.
func Day(t time.Time) string { return t.In(Paris).Format(time.DateOnly) }

// NextMidnight is the next Paris midnight after t.
func NextMidnight(t time.Time) time.Time {
	p := t.In(Paris)
	return time.Date(p.Year(), p.Month(), p.Day()+1, 0, 0, 0, 0, Paris)
}

// Take counts one call for key if the cap allows it (0: no cap, the call
// is still counted). When it does not, it returns the time until the
// counters reset (the next Paris midnight).
func (d *Daily) Take(ctx context.Context, key string, dailyCap int, now time.Time) (ok bool, retryAfter time.Duration, err error) {
	if err := CheckTake(ctx, key, dailyCap); err != nil {
		return false, 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if day := Day(now); day != d.day {
		d.day, d.counts = day, map[string]int{}
	}
	if dailyCap > 0 && d.counts[key] >= dailyCap {
		return false, NextMidnight(now).Sub(now), nil
	}
	d.counts[key]++
	return true, 0, nil
}

// Seed adds counts for day (ignored if day is not today at now): a
// replica restores its counts from the audit log at start.
func (d *Daily) Seed(day string, counts map[string]int, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if day != Day(now) {
		return
	}
	if d.day != day {
		d.day, d.counts = day, map[string]int{}
	}
	for k, n := range counts {
		d.counts[k] += n
	}
}

// Count is key's count today at now.
func (d *Daily) Count(key string, now time.Time) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if Day(now) != d.day {
		return 0
	}
	return d.counts[key]
}
