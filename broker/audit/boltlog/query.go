package boltlog

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/relais-broker/relais/broker/audit"
)

// Filter selects records; zero fields match everything.
type Filter struct {
	Consumer, Method, Code string
	From, To               time.Time
	// Limit bounds the answer (1000 when zero).
	Limit int
}

func (f Filter) match(r audit.Record) bool {
	return (f.Consumer == "" || r.Consumer == f.Consumer) && (f.Method == "" || r.Method == f.Method) &&
		(f.Code == "" || r.Code == f.Code) && (f.From.IsZero() || !r.Time.Before(f.From)) && (f.To.IsZero() || r.Time.Before(f.To))
}

// Query returns the records matching f, oldest first.
func (l *Log) Query(_ context.Context, f Filter) ([]audit.Record, error) {
	if f.Limit <= 0 {
		f.Limit = 1000
	}
	var out []audit.Record
	err := l.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRecords).Cursor()
		for k, v := c.First(); k != nil && len(out) < f.Limit; k, v = c.Next() {
			var s stored
			if err := json.Unmarshal(v, &s); err != nil {
				return err
			}
			if f.match(s.Record) {
				out = append(out, s.Record)
			}
		}
		return nil
	})
	return out, err
}

// Subject returns the accesses to the subject with this pseudonym, oldest
// first, through the subject index (no full scan).
func (l *Log) Subject(_ context.Context, pseudonym string) ([]audit.Record, error) {
	var out []audit.Record
	prefix := []byte(pseudonym + "/")
	err := l.db.View(func(tx *bolt.Tx) error {
		recs := tx.Bucket(bucketRecords)
		c := tx.Bucket(bucketBySubject).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			raw := recs.Get(k[len(prefix):])
			if raw == nil {
				continue // purged
			}
			var s stored
			if err := json.Unmarshal(raw, &s); err != nil {
				return err
			}
			out = append(out, s.Record)
		}
		return nil
	})
	return out, err
}

// Purge deletes the records older than the retention and leaves a signed
// boundary checkpoint at the last deleted record, so that Verify still
// passes on what remains. It returns how many records were deleted.
func (l *Log) Purge(_ context.Context) (int, error) {
	cutoff := l.opts.Clock().Add(-l.opts.Retention)
	n := 0
	err := l.db.Update(func(tx *bolt.Tx) error {
		recs, idx := tx.Bucket(bucketRecords), tx.Bucket(bucketBySubject)
		var last stored
		c := recs.Cursor()
		for k, v := c.First(); k != nil; k, v = c.First() {
			var s stored
			if err := json.Unmarshal(v, &s); err != nil {
				return err
			}
			if !s.Record.Time.Before(cutoff) {
				break
			}
			if s.Record.Subject != "" {
				if err := idx.Delete(subjectKey(s.Record.Subject, s.Seq)); err != nil {
					return err
				}
			}
			if err := c.Delete(); err != nil {
				return err
			}
			last, n = s, n+1
		}
		if n == 0 {
			return nil
		}
		// Checkpoints up to the boundary are superseded by it.
		cps := tx.Bucket(bucketCheckpoints).Cursor()
		for k, _ := cps.First(); k != nil && binary.BigEndian.Uint64(k) <= last.Seq; k, _ = cps.First() {
			if err := cps.Delete(); err != nil {
				return err
			}
		}
		return putCheckpoint(tx, l.opts.SigningKey, checkpoint{Seq: last.Seq, Head: last.Hash, Time: l.opts.Clock().UTC(), Boundary: true})
	})
	return n, err
}
