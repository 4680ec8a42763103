package registry

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Snapshot is an immutable copy of the registry, built by a store from
// its storage after each commit and read by every call: lookups are map
// reads, never I/O, so authorization costs the same on every store and
// keeps working while storage is down.
type Snapshot struct {
	version   uint64
	consumers map[string]Consumer
	// sorted holds every consumer by SIRET, for ListConsumers.
	sorted []Consumer
	// all holds every grant (revoked ones too) by consumer, then id.
	all []Grant
	// live holds unrevoked grants by consumer, then service.
	live    map[string]map[string][]Grant
	revoked map[string]struct{}
}

// NewSnapshot builds the snapshot of version from everything a store
// holds: consumers, grants (revoked ones too) and the serials of the
// revoked credentials. It takes ownership of the slices.
func NewSnapshot(version uint64, consumers []Consumer, grants []Grant, revokedSerials []string) *Snapshot {
	s := &Snapshot{
		version:   version,
		consumers: make(map[string]Consumer, len(consumers)),
		sorted:    consumers,
		all:       grants,
		live:      make(map[string]map[string][]Grant, len(consumers)),
		revoked:   make(map[string]struct{}, len(revokedSerials)),
	}
	slices.SortFunc(s.sorted, func(a, b Consumer) int { return strings.Compare(a.SIRET, b.SIRET) })
	for _, c := range consumers {
		s.consumers[c.SIRET] = c
	}
	slices.SortFunc(s.all, compareGrants)
	for _, g := range s.all {
		if g.RevokedAt.IsZero() {
			addLive(s.live, g)
		}
	}
	for _, serial := range revokedSerials {
		s.revoked[serial] = struct{}{}
	}
	return s
}

// Delta is what one committed write changed: consumers and grants
// created or replaced (matched by SIRET, and by consumer and id: a grant
// never changes consumer) and serials revoked.
type Delta struct {
	Consumers []Consumer
	Grants    []Grant
	Revoked   []string
}

// Apply returns the snapshot of version: s with d applied, sharing with s
// what d did not touch (s is not modified). A store applies the delta of
// its write to the snapshot of the version just before, so that a write
// costs a copy of the maps instead of a reload of the whole registry.
func (s *Snapshot) Apply(version uint64, d Delta) *Snapshot {
	n := &Snapshot{version: version, consumers: s.consumers, sorted: s.sorted, all: s.all, live: s.live, revoked: s.revoked}
	if len(d.Consumers) > 0 {
		n.consumers = make(map[string]Consumer, len(s.consumers)+len(d.Consumers))
		for k, v := range s.consumers {
			n.consumers[k] = v
		}
		for _, c := range d.Consumers {
			n.consumers[c.SIRET] = c
		}
		n.sorted = upsertSorted(s.sorted, d.Consumers, func(a, b Consumer) int { return strings.Compare(a.SIRET, b.SIRET) })
	}
	if len(d.Grants) > 0 {
		n.all = upsertSorted(s.all, d.Grants, compareGrants)
		n.live = make(map[string]map[string][]Grant, len(s.live)+1)
		for k, v := range s.live {
			n.live[k] = v
		}
		touched := map[string]bool{}
		for _, g := range d.Grants {
			touched[g.Consumer] = true
		}
		for siret := range touched {
			delete(n.live, siret)
			lo, _ := slices.BinarySearchFunc(n.all, siret, func(g Grant, siret string) int { return strings.Compare(g.Consumer, siret) })
			for _, g := range n.all[lo:] {
				if g.Consumer != siret {
					break
				}
				if g.RevokedAt.IsZero() {
					addLive(n.live, g)
				}
			}
		}
	}
	if len(d.Revoked) > 0 {
		n.revoked = make(map[string]struct{}, len(s.revoked)+len(d.Revoked))
		for k := range s.revoked {
			n.revoked[k] = struct{}{}
		}
		for _, serial := range d.Revoked {
			n.revoked[serial] = struct{}{}
		}
	}
	return n
}

// upsertSorted returns a fresh copy of sorted (ordered by cmp) in which
// each of changes replaces its equal or is merged in place; of equal
// changes the last wins.
func upsertSorted[T any](sorted, changes []T, cmp func(a, b T) int) []T {
	ch := slices.Clone(changes)
	slices.Reverse(ch)
	slices.SortStableFunc(ch, cmp)
	ch = slices.CompactFunc(ch, func(a, b T) bool { return cmp(a, b) == 0 })
	out := make([]T, 0, len(sorted)+len(ch))
	i, j := 0, 0
	for i < len(sorted) && j < len(ch) {
		switch c := cmp(sorted[i], ch[j]); {
		case c < 0:
			out = append(out, sorted[i])
			i++
		case c > 0:
			out = append(out, ch[j])
			j++
		default:
			out = append(out, ch[j])
			i, j = i+1, j+1
		}
	}
	out = append(out, sorted[i:]...)
	return append(out, ch[j:]...)
}

func addLive(live map[string]map[string][]Grant, g Grant) {
	bySvc := live[g.Consumer]
	if bySvc == nil {
		bySvc = map[string][]Grant{}
		live[g.Consumer] = bySvc
	}
	bySvc[g.Service] = append(bySvc[g.Service], g)
}

func compareGrants(a, b Grant) int {
	if c := strings.Compare(a.Consumer, b.Consumer); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

// Version is the store version the snapshot was built from.
func (s *Snapshot) Version() uint64 { return s.version }

// Consumer returns the consumer with siret.
func (s *Snapshot) Consumer(siret string) (Consumer, bool) {
	c, ok := s.consumers[siret]
	return c, ok
}

// Grants returns the consumer's unrevoked grants for service, whatever
// their window. The slice is shared: callers must not modify it.
func (s *Snapshot) Grants(siret, service string) []Grant {
	return s.live[siret][service]
}

// Revoked reports whether serial has a revoked credential record.
func (s *Snapshot) Revoked(serial string) bool {
	_, ok := s.revoked[serial]
	return ok
}

// Consumers returns every consumer by SIRET, in a fresh slice.
func (s *Snapshot) Consumers() []Consumer {
	return slices.Clone(s.sorted)
}

// ListGrants returns the grants matching f at now, by consumer then id,
// in a fresh slice: revoked ones included unless f.ExpiringBefore is set,
// which keeps the unrevoked grants still valid at now that end before it.
func (s *Snapshot) ListGrants(f GrantFilter, now time.Time) []Grant {
	var out []Grant
	for _, g := range s.all {
		switch {
		case f.Consumer != "" && g.Consumer != f.Consumer,
			f.Service != "" && g.Service != f.Service,
			!f.ExpiringBefore.IsZero() && (!g.RevokedAt.IsZero() || !g.NotAfter.Before(f.ExpiringBefore) || !g.NotAfter.After(now)):
			continue
		}
		out = append(out, g)
	}
	return out
}

// Live holds a store's current snapshot and answers the per-call reads
// from it. Stores embed it, so both serve Reader, Revoked and the
// listings with this one implementation. The zero value serves an empty
// registry until the first Swap.
type Live struct {
	mu   sync.Mutex // serialises swaps
	snap atomic.Pointer[Snapshot]
	// Clock judges "still valid" in ListGrants; time.Now when nil.
	Clock func() time.Time
}

var empty = NewSnapshot(0, nil, nil, nil)

// Snapshot returns the snapshot being served.
func (l *Live) Snapshot() *Snapshot {
	if s := l.snap.Load(); s != nil {
		return s
	}
	return empty
}

// Swap serves next unless a snapshot of a later version is already being
// served (two writers finishing out of order), and reports whether it did.
func (l *Live) Swap(next *Snapshot) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur := l.snap.Load(); cur != nil && cur.version > next.version {
		return false
	}
	l.snap.Store(next)
	return true
}

// Version implements Versioned: the version of the snapshot being served.
func (l *Live) Version() uint64 { return l.Snapshot().version }

// Consumer implements Reader from the snapshot.
func (l *Live) Consumer(_ context.Context, siret string) (Consumer, error) {
	c, ok := l.Snapshot().Consumer(siret)
	if !ok {
		return Consumer{}, ErrNotFound
	}
	return c, nil
}

// Grants implements Reader from the snapshot. The slice is shared:
// callers must not modify it.
func (l *Live) Grants(_ context.Context, siret, service string) ([]Grant, error) {
	return l.Snapshot().Grants(siret, service), nil
}

// Revoked implements RevocationReader from the snapshot.
func (l *Live) Revoked(serial string) bool { return l.Snapshot().Revoked(serial) }

// IsRevoked is Revoked under the name authn.RevocationChecker uses, so a
// store can be handed to the TLS and call checks directly.
func (l *Live) IsRevoked(serial string) bool { return l.Snapshot().Revoked(serial) }

// ListConsumers returns every consumer by SIRET, from the snapshot.
func (l *Live) ListConsumers(context.Context) ([]Consumer, error) {
	return l.Snapshot().Consumers(), nil
}

// ListGrants returns the grants matching f, by consumer then id, from the
// snapshot.
func (l *Live) ListGrants(_ context.Context, f GrantFilter) ([]Grant, error) {
	now := time.Now
	if l.Clock != nil {
		now = l.Clock
	}
	return l.Snapshot().ListGrants(f, now()), nil
}

// SortCredentials orders credential records as ListCredentials returns
// them: newest first (by NotBefore), then by serial.
func SortCredentials(rs []CredentialRecord) {
	slices.SortFunc(rs, func(a, b CredentialRecord) int {
		if c := b.NotBefore.Compare(a.NotBefore); c != 0 {
			return c
		}
		return strings.Compare(a.Serial, b.Serial)
	})
}
