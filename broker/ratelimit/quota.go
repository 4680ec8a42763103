package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// DailyCounter takes one unit of a daily cap, atomically across replicas
// for shared stores. Days are Paris days (Day); cap 0 means no cap (the
// call is still counted, so a cap set later in the day sees it). When the
// cap is reached, retryAfter is the time until the next Paris midnight. An
// error means the count is unknown: the caller fails closed.
type DailyCounter interface {
	Take(ctx context.Context, key string, cap int, now time.Time) (ok bool, retryAfter time.Duration, err error)
}

// InFlight refuses a second identical call while one is in flight. A key
// held is free again when its release runs or, if the holder died without
// releasing, when ttl has passed. release is safe to call more than once
// and never frees a key another holder took after expiry. An error means
// the guard is unknown: the caller fails closed.
type InFlight interface {
	Acquire(ctx context.Context, key string, ttl time.Duration) (release func(), ok bool, err error)
}

// Seeder is the optional capability of a DailyCounter whose counts live
// in the process (Daily): the broker seeds today's counts from the audit
// log at start. Shared stores keep their counts and need no seeding.
type Seeder interface {
	Seed(day string, counts map[string]int, now time.Time)
}

// ErrEmptyKey refuses a quota operation without a key: it would merge
// every caller into one counter.
var ErrEmptyKey = errors.New("quota key is empty")

// CheckTake validates the arguments of DailyCounter.Take, for every
// implementation alike.
func CheckTake(ctx context.Context, key string, dailyCap int) error {
	if key == "" {
		return ErrEmptyKey
	}
	if dailyCap < 0 {
		return fmt.Errorf("daily cap %d is negative", dailyCap)
	}
	return ctx.Err()
}

// CheckAcquire validates the arguments of InFlight.Acquire, for every
// implementation alike.
func CheckAcquire(ctx context.Context, key string, ttl time.Duration) error {
	if key == "" {
		return ErrEmptyKey
	}
	if ttl <= 0 {
		return fmt.Errorf("in-flight ttl %v is not positive", ttl)
	}
	return ctx.Err()
}

// MemInFlight is the in-memory InFlight of one replica.
type MemInFlight struct {
	now func() time.Time

	mu    sync.Mutex
	held  map[string]memHold
	next  uint64
	sweep time.Time
}

type memHold struct {
	token   uint64
	expires time.Time
}

var _ InFlight = (*MemInFlight)(nil)

// NewMemInFlight returns an empty guard reading time from clock (nil:
// time.Now), so tests can expire holds without sleeping.
func NewMemInFlight(clock func() time.Time) *MemInFlight {
	if clock == nil {
		clock = time.Now
	}
	return &MemInFlight{now: clock, held: map[string]memHold{}}
}

// Acquire holds key for at most ttl unless it is already held.
func (f *MemInFlight) Acquire(ctx context.Context, key string, ttl time.Duration) (func(), bool, error) {
	if err := CheckAcquire(ctx, key, ttl); err != nil {
		return nil, false, err
	}
	now := f.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	if h, busy := f.held[key]; busy && now.Before(h.expires) {
		return nil, false, nil
	}
	if now.Sub(f.sweep) >= time.Minute {
		// Holders that died without releasing: bounded memory.
		for k, h := range f.held {
			if !now.Before(h.expires) {
				delete(f.held, k)
			}
		}
		f.sweep = now
	}
	f.next++
	token := f.next
	f.held[key] = memHold{token: token, expires: now.Add(ttl)}
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.held[key].token == token {
				delete(f.held, key)
			}
		})
	}, true, nil
}
