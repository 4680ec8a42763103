package boltreg

import (
	"context"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/relais-broker/relais/broker/registry"
)

// keyRegistryVersion holds the registry version (registry.Versioned), 8
// bytes big-endian, bumped in every write transaction. A file written
// before it existed reads as version 0.
var keyRegistryVersion = []byte("registry_version")

func readVersion(tx *bolt.Tx) uint64 {
	if v := tx.Bucket(bucketMeta).Get(keyRegistryVersion); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func bumpVersion(tx *bolt.Tx) error {
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], readVersion(tx)+1)
	return tx.Bucket(bucketMeta).Put(keyRegistryVersion, v[:])
}

// load builds the snapshot of what tx sees.
func load(tx *bolt.Tx) (*registry.Snapshot, error) {
	var (
		consumers []registry.Consumer
		grants    []registry.Grant
		revoked   []string
	)
	err := tx.Bucket(bucketConsumers).ForEach(func(k, v []byte) error {
		c, err := decodeConsumer(v)
		if err != nil {
			return fmt.Errorf("consumer %s: %w", k, err)
		}
		consumers = append(consumers, c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("registry: corrupt record: %w", err)
	}
	err = tx.Bucket(bucketGrants).ForEach(func(k, v []byte) error {
		g, err := decodeGrant(v)
		if err != nil {
			return fmt.Errorf("grant %s: %w", k, err)
		}
		grants = append(grants, g)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("registry: corrupt record: %w", err)
	}
	err = tx.Bucket(bucketCredentials).ForEach(func(k, v []byte) error {
		r, err := decodeCredential(v)
		if err != nil {
			return fmt.Errorf("credential %s: %w", k, err)
		}
		if r.Status == registry.CredentialRevoked {
			revoked = append(revoked, r.Serial)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("registry: corrupt record: %w", err)
	}
	return registry.NewSnapshot(readVersion(tx), consumers, grants, revoked), nil
}

// Reload implements registry.Versioned: a full reload from the file. The
// store reloads after each of its own commits; one process owns the file,
// so Reload is only needed after a change made outside this Store.
func (s *Store) Reload(context.Context) error {
	var next *registry.Snapshot
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		next, err = load(tx)
		return err
	})
	if err != nil {
		return err
	}
	s.Swap(next)
	return nil
}

// Credential implements registry.RevocationReader: the record by its key.
func (s *Store) Credential(_ context.Context, serial string) (registry.CredentialRecord, error) {
	if err := registry.CheckSerial(serial); err != nil {
		return registry.CredentialRecord{}, err
	}
	var (
		r     registry.CredentialRecord
		found bool
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketCredentials).Get([]byte(serial))
		if raw == nil {
			return nil
		}
		found = true
		var err error
		r, err = decodeCredential(raw)
		return err
	})
	switch {
	case err != nil:
		return registry.CredentialRecord{}, err
	case !found:
		return registry.CredentialRecord{}, fmt.Errorf("credential %s: %w", serial, registry.ErrNotFound)
	}
	return r, nil
}
