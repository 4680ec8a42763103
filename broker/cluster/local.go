package cluster

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Local is the Membership and Leaser of a broker that runs alone (the
// embedded bbolt mode): it is the only replica, Live is always 1, and a
// lease is always held — only two Runs of one lease name in this process
// exclude each other. Exclusivity of the process itself comes from the
// bbolt file locks.
type Local struct {
	clock func() time.Time

	mu     sync.Mutex
	self   *Replica
	joined time.Time
	left   chan struct{}

	leaseMu sync.Mutex
	leases  map[string]chan struct{} // one-token semaphore per lease name
}

var (
	_ Membership = (*Local)(nil)
	_ Leaser     = (*Local)(nil)
)

// NewLocal returns the membership of a lone process reading time from
// clock (nil: time.Now).
func NewLocal(clock func() time.Time) *Local {
	if clock == nil {
		clock = time.Now
	}
	return &Local{clock: clock, left: make(chan struct{}), leases: map[string]chan struct{}{}}
}

// Join records r as this process.
func (l *Local) Join(ctx context.Context, r Replica) error {
	if err := ValidateReplica(r); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.self != nil {
		return fmt.Errorf("%w as %q", ErrJoined, l.self.ID)
	}
	if l.isLeft() {
		return fmt.Errorf("%w: this membership has left", ErrNotJoined)
	}
	l.self, l.joined = &r, l.clock()
	return nil
}

func (l *Local) isLeft() bool {
	select {
	case <-l.left:
		return true
	default:
		return false
	}
}

func (l *Local) joinedCheck() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.self == nil || l.isLeft() {
		return ErrNotJoined
	}
	return nil
}

// Run waits until ctx is done or Leave is called: a lone process has no
// one to beat for.
func (l *Local) Run(ctx context.Context) error {
	l.mu.Lock()
	joined := l.self != nil
	l.mu.Unlock()
	if !joined {
		return ErrNotJoined
	}
	select {
	case <-ctx.Done():
	case <-l.left:
	}
	return nil
}

// Beat does nothing but check that the replica joined.
func (l *Local) Beat(ctx context.Context) error { return l.joinedCheck() }

// Live is 1: this process.
func (l *Local) Live(time.Time) int { return 1 }

// List is this process alone (empty before Join and after Leave).
func (l *Local) List(ctx context.Context) ([]Member, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.self == nil || l.isLeft() {
		return nil, nil
	}
	return []Member{{Replica: *l.self, LastBeat: l.clock(), Live: true, Self: true}}, nil
}

// Leave ends the membership; Run returns.
func (l *Local) Leave(context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.isLeft() {
		close(l.left)
	}
	return nil
}

// Lease returns the lease called name in this process.
func (l *Local) Lease(name string) Lease { return &localLease{l: l, name: name} }

type localLease struct {
	l       *Local
	name    string
	running atomic.Bool
	held    atomic.Bool
}

func (l *Local) semaphore(name string) chan struct{} {
	l.leaseMu.Lock()
	defer l.leaseMu.Unlock()
	s, ok := l.leases[name]
	if !ok {
		s = make(chan struct{}, 1)
		l.leases[name] = s
	}
	return s
}

func (ll *localLease) Run(ctx context.Context, job func(ctx context.Context) error) error {
	if err := ValidateName("lease name", ll.name); err != nil {
		return err
	}
	if job == nil {
		return fmt.Errorf("%w: lease %s has no job", ErrInvalid, ll.name)
	}
	if !ll.running.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: %s", ErrLeaseRunning, ll.name)
	}
	defer ll.running.Store(false)
	sem := ll.l.semaphore(ll.name)
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return nil
	}
	defer func() { <-sem }()
	ll.held.Store(true)
	err := job(ctx)
	ll.held.Store(false)
	if ctx.Err() != nil || err == nil {
		return nil
	}
	return fmt.Errorf("lease %s: job: %w", ll.name, err)
}

func (ll *localLease) Held() bool { return ll.held.Load() }
