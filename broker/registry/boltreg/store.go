// Package boltreg is the registry of Relais in one bbolt file: consumers,
// grants and credential records (revocations included). Writes are
// validated by the rules shared with every store (package registry), then
// applied in a single transaction (all or nothing) that also bumps the
// registry version and builds the next snapshot; reads — on every broker
// call — are served from that immutable in-memory registry.Snapshot,
// swapped after each commit, so they never touch the disk and a change is
// seen at the very next call.
//
// One process owns the file (relaisd; relaisctl goes through the admin
// API): a second Open fails after one second with a clear message instead
// of waiting. A file that is not a Relais registry, or one written by a
// newer version, is refused and never modified.
package boltreg

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/registry"
)

// Schema of the file.
const (
	// magic marks a Relais registry in the meta bucket.
	magic = "relais-registry"
	// SchemaVersion is the layout this code writes. Older layouts are
	// migrated on open by the steps in migrations.
	SchemaVersion = 1
)

var (
	bucketMeta        = []byte("meta")
	bucketConsumers   = []byte("consumers")
	bucketGrants      = []byte("grants")
	bucketCredentials = []byte("credentials")
	keyMagic          = []byte("magic")
	keyVersion        = []byte("schema_version")
)

// migrations[v] upgrades a file from schema v to v+1 inside the open
// transaction. Empty while there is a single version; the mechanism is
// exercised by the version checks in Open.
var migrations = map[int]func(*bolt.Tx) error{}

// Options configure Open.
type Options struct {
	// Catalog validates services and scopes; catalog.Default() when nil.
	Catalog *catalog.Catalog
	// Clock stamps records and judges "in the past"; time.Now when nil.
	Clock func() time.Time
}

// Store is a bbolt-backed registry.Store. The embedded registry.Live
// answers the per-call reads and the listings from the snapshot.
type Store struct {
	registry.Live
	wmu sync.Mutex
	db  *bolt.DB
	cat *catalog.Catalog
	now func() time.Time
}

var _ registry.Store = (*Store)(nil)

// Open opens or creates (0600) the registry file at path.
func Open(path string, o Options) (*Store, error) {
	if o.Catalog == nil {
		o.Catalog = catalog.Default()
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	_, statErr := os.Stat(path)
	fresh := errors.Is(statErr, os.ErrNotExist)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("registry %s is locked by another process (is relaisd already running on it?)", path)
	case err != nil:
		return nil, fmt.Errorf("registry %s is not a readable registry file (%v); it was left untouched", path, err)
	}
	s := &Store{db: db, cat: o.Catalog, now: o.Clock}
	s.Clock = o.Clock
	if err := s.prepare(path, fresh); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.Reload(context.Background()); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// prepare creates the layout of a fresh file, or checks and migrates an
// existing one. A foreign or newer file is refused before any write.
func (s *Store) prepare(path string, fresh bool) error {
	var version int
	err := s.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			if fresh || isEmpty(tx) {
				version = 0
				return nil
			}
			return fmt.Errorf("registry %s is a bbolt file but not a Relais registry; it was left untouched", path)
		}
		if string(meta.Get(keyMagic)) != magic {
			return fmt.Errorf("registry %s is a bbolt file but not a Relais registry; it was left untouched", path)
		}
		v, err := strconv.Atoi(string(meta.Get(keyVersion)))
		if err != nil || v < 1 {
			return fmt.Errorf("registry %s has an unreadable schema version %q; it was left untouched", path, meta.Get(keyVersion))
		}
		if v > SchemaVersion {
			return fmt.Errorf("registry %s has schema version %d, newer than this relaisd understands (%d); upgrade relaisd — the file was left untouched", path, v, SchemaVersion)
		}
		version = v
		return nil
	})
	if err != nil || version == SchemaVersion {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketConsumers, bucketGrants, bucketCredentials} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		for v := max(version, 1); v < SchemaVersion; v++ {
			step, ok := migrations[v]
			if !ok {
				return fmt.Errorf("registry %s: no migration from schema %d", path, v)
			}
			if err := step(tx); err != nil {
				return fmt.Errorf("registry %s: migration from schema %d: %w", path, v, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put(keyMagic, []byte(magic)); err != nil {
			return err
		}
		return meta.Put(keyVersion, []byte(strconv.Itoa(SchemaVersion)))
	})
}

func isEmpty(tx *bolt.Tx) bool {
	empty := true
	_ = tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
	return empty
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }
