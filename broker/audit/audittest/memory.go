// Package audittest is the conformance suite every audit storage
// (auditlog.Storage: bbolt, PostgreSQL) passes, with helpers for storage
// tests (populating a log, verifying a storage's export) and Memory, an
// in-memory Storage for tests of the code above storages.
package audittest

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/audit/auditlog"
	"github.com/relais-broker/relais/broker/audit/seal"
)

// Memory is an in-memory auditlog.Storage for tests: it keeps the sealed
// bytes and follows the contract (Follow in Commit, boundary on Purge).
type Memory struct {
	mu     sync.Mutex
	recs   []seal.Sealed // by seq
	cps    []seal.Checkpoint
	head   seal.Head
	closed bool
}

var _ auditlog.Storage = (*Memory)(nil)

var errClosed = errors.New("audittest: storage closed")

// Head implements auditlog.Storage.
func (m *Memory) Head(context.Context) (seal.Head, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return seal.Head{}, errClosed
	}
	return m.head, nil
}

// Commit implements auditlog.Storage.
func (m *Memory) Commit(ctx context.Context, recs []seal.Sealed, cps []seal.Checkpoint) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errClosed
	}
	h, err := auditlog.Follow(m.head, recs, cps)
	if err != nil {
		return err
	}
	for _, r := range recs {
		r.Raw = append([]byte(nil), r.Raw...)
		m.recs = append(m.recs, r)
	}
	m.cps = append(m.cps, cps...)
	m.head = h
	return nil
}

func (m *Memory) records() ([]audit.Record, error) {
	out := make([]audit.Record, 0, len(m.recs))
	for _, r := range m.recs {
		s, err := seal.Unseal(r.Raw)
		if err != nil {
			return nil, err
		}
		out = append(out, s.Record)
	}
	return out, nil
}

// Query implements auditlog.Storage.
func (m *Memory) Query(_ context.Context, f audit.Filter) ([]audit.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if f.Limit <= 0 {
		f.Limit = audit.DefaultLimit
	}
	all, err := m.records()
	var out []audit.Record
	for _, r := range all {
		if len(out) < f.Limit && f.Match(r) {
			out = append(out, r)
		}
	}
	return out, err
}

// Subject implements auditlog.Storage.
func (m *Memory) Subject(_ context.Context, pseudonym string) ([]audit.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	all, err := m.records()
	var out []audit.Record
	for _, r := range all {
		if r.Subject == pseudonym && pseudonym != "" {
			out = append(out, r)
		}
	}
	return out, err
}

// Export implements auditlog.Storage.
func (m *Memory) Export(ctx context.Context, fn func(seal.Entry) error) error {
	m.mu.Lock()
	recs, cps := append([]seal.Sealed(nil), m.recs...), append([]seal.Checkpoint(nil), m.cps...)
	m.mu.Unlock()
	return MergeExport(ctx, recs, cps, fn)
}

// MergeExport calls fn with records and checkpoints (each sorted by seq,
// one chain) in export order: boundary first, each checkpoint after the
// record of its seq. Storages that read the two lists apart may use it.
func MergeExport(ctx context.Context, recs []seal.Sealed, cps []seal.Checkpoint, fn func(seal.Entry) error) error {
	var boundary uint64
	for _, c := range cps {
		if c.Boundary {
			boundary = max(boundary, c.Seq)
		}
	}
	i := 0
	for _, c := range cps {
		for ; i < len(recs) && recs[i].Seq <= c.Seq; i++ {
			if recs[i].Seq <= boundary {
				continue
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(seal.RecordEntry(recs[i].Raw)); err != nil {
				return err
			}
		}
		if err := fn(seal.CheckpointEntry(c)); err != nil {
			return err
		}
	}
	for ; i < len(recs); i++ {
		if recs[i].Seq <= boundary {
			continue
		}
		if err := fn(seal.RecordEntry(recs[i].Raw)); err != nil {
			return err
		}
	}
	return nil
}

// Purge implements auditlog.Storage.
func (m *Memory) Purge(_ context.Context, before time.Time, boundary func(chain string, seq uint64, head string) (seal.Checkpoint, error)) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for n < len(m.recs) && m.recs[n].Record.Time.Before(before) {
		n++
	}
	if n == 0 {
		return 0, nil
	}
	last := m.recs[n-1]
	cp, err := boundary(last.Chain, last.Seq, last.Hash)
	if err != nil {
		return 0, err
	}
	m.recs = append([]seal.Sealed(nil), m.recs[n:]...)
	kept := []seal.Checkpoint{cp}
	for _, c := range m.cps {
		if c.Seq > last.Seq {
			kept = append(kept, c)
		}
	}
	m.cps = kept
	m.head.LastCheckpoint = max(m.head.LastCheckpoint, cp.Seq)
	return n, nil
}

// Close implements auditlog.Storage.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}

// Reopen returns a storage on the same data, as if the process restarted.
func (m *Memory) Reopen() *Memory {
	m.mu.Lock()
	defer m.mu.Unlock()
	return &Memory{recs: append([]seal.Sealed(nil), m.recs...), cps: append([]seal.Checkpoint(nil), m.cps...), head: m.head}
}
