// Package boltrem keeps the reminders' records in a bbolt file: the
// embedded single-machine default. It passes remindertest.
package boltrem

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/relais-broker/relais/broker/reminders"
)

var bucket = []byte("reminders")

// Store is a reminders.Store in one bucket of a bbolt database; values
// are JSON, keyed by Record.Key.
type Store struct {
	db    *bolt.DB
	owned bool
}

var _ reminders.Store = (*Store)(nil)

// Open opens (creating) the bbolt file at path for the reminders alone.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("reminders store %s: %w", path, err)
	}
	s, err := New(db)
	if err != nil {
		db.Close()
		return nil, err
	}
	s.owned = true
	return s, nil
}

// New uses a bucket of an open database (shared with another store);
// Close then leaves the database open.
func New(db *bolt.DB) (*Store, error) {
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	}); err != nil {
		return nil, fmt.Errorf("reminders store: %w", err)
	}
	return &Store{db: db}, nil
}

// Close closes the file if Open opened it.
func (s *Store) Close() error {
	if s.owned {
		return s.db.Close()
	}
	return nil
}

// stored is the JSON form, times truncated to the microsecond (the
// precision the PostgreSQL store keeps too).
type stored struct {
	Kind, Consumer, Ref, Service string
	NotAfter                     time.Time
	Step, Attempts, Recipients   int
	State, LastError             string
	FirstAttempt, LastAttempt    time.Time
	SentAt                       time.Time `json:",omitzero"`
}

func micro(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC().Truncate(time.Microsecond)
}

// Get implements reminders.Store.
func (s *Store) Get(_ context.Context, key string) (reminders.Record, error) {
	var r reminders.Record
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucket).Get([]byte(key))
		if v == nil {
			return reminders.ErrNotFound
		}
		return decode(v, &r)
	})
	return r, err
}

// Put implements reminders.Store.
func (s *Store) Put(_ context.Context, r reminders.Record) error {
	if err := reminders.Validate(r); err != nil {
		return err
	}
	v, err := json.Marshal(stored{Kind: r.Kind, Consumer: r.Consumer, Ref: r.Ref, Service: r.Service, NotAfter: micro(r.NotAfter), Step: r.Step,
		Attempts: r.Attempts, Recipients: r.Recipients, State: r.State, LastError: r.LastError,
		FirstAttempt: micro(r.FirstAttempt), LastAttempt: micro(r.LastAttempt), SentAt: micro(r.SentAt)})
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put([]byte(r.Key()), v) })
}

func decode(v []byte, r *reminders.Record) error {
	var st stored
	if err := json.Unmarshal(v, &st); err != nil {
		return fmt.Errorf("reminders store: corrupt record: %w", err)
	}
	*r = reminders.Record{Kind: st.Kind, Consumer: st.Consumer, Ref: st.Ref, Service: st.Service, NotAfter: st.NotAfter, Step: st.Step,
		State: st.State, Attempts: st.Attempts, FirstAttempt: st.FirstAttempt, LastAttempt: st.LastAttempt, SentAt: st.SentAt,
		Recipients: st.Recipients, LastError: st.LastError}
	return nil
}

// List implements reminders.Store.
func (s *Store) List(_ context.Context) ([]reminders.Record, error) {
	var out []reminders.Record
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(_, v []byte) error {
			var r reminders.Record
			if err := decode(v, &r); err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	reminders.SortRecords(out)
	return out, nil
}

// Purge implements reminders.Store.
func (s *Store) Purge(_ context.Context, before time.Time) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		var old [][]byte
		if err := b.ForEach(func(k, v []byte) error {
			var r reminders.Record
			if err := decode(v, &r); err != nil {
				return err
			}
			if r.NotAfter.Before(before) {
				old = append(old, append([]byte(nil), k...))
			}
			return nil
		}); err != nil {
			return err
		}
		for _, k := range old {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(old)
		return nil
	})
	return n, err
}
