package boltreg

import (
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/relais-broker/relais/broker/registry"
)

// update runs fn in one write transaction that also bumps the registry
// version and derives the next snapshot: the current one with fn's delta
// applied, or the file read back in full if the snapshot is not the
// version just before (a change made outside this Store). The snapshot is
// served once the commit succeeded, never before.
func (s *Store) update(fn func(tx *bolt.Tx) (registry.Delta, error)) error {
	s.wmu.Lock() // keeps the served snapshot current for the next delta
	defer s.wmu.Unlock()
	var next *registry.Snapshot
	err := s.db.Update(func(tx *bolt.Tx) error {
		delta, err := fn(tx)
		if err != nil {
			return err
		}
		version := readVersion(tx)
		if err := bumpVersion(tx); err != nil {
			return err
		}
		if cur := s.Snapshot(); cur.Version() == version {
			next = cur.Apply(version+1, delta)
			return nil
		}
		next, err = load(tx)
		return err
	})
	if err != nil {
		return err
	}
	s.Swap(next)
	return nil
}

// AddConsumer registers c, active unless c.Status says otherwise.
func (s *Store) AddConsumer(_ context.Context, c registry.Consumer) (registry.Consumer, error) {
	c, err := registry.NewConsumer(c, s.now())
	if err != nil {
		return registry.Consumer{}, err
	}
	err = s.update(func(tx *bolt.Tx) (registry.Delta, error) {
		b := tx.Bucket(bucketConsumers)
		if b.Get([]byte(c.SIRET)) != nil {
			return registry.Delta{}, fmt.Errorf("consumer %s: %w", c.SIRET, registry.ErrExists)
		}
		return registry.Delta{Consumers: []registry.Consumer{c}}, putConsumer(b, c)
	})
	if err != nil {
		return registry.Consumer{}, err
	}
	return c, nil
}

func putConsumer(b *bolt.Bucket, c registry.Consumer) error {
	v, err := encodeConsumer(c)
	if err != nil {
		return err
	}
	return b.Put([]byte(c.SIRET), v)
}

// SetConsumerStatus suspends or resumes a consumer.
func (s *Store) SetConsumerStatus(_ context.Context, siret string, st registry.Status) (registry.Consumer, error) {
	if err := registry.CheckStatus(st); err != nil {
		return registry.Consumer{}, err
	}
	var c registry.Consumer
	err := s.update(func(tx *bolt.Tx) (registry.Delta, error) {
		b := tx.Bucket(bucketConsumers)
		raw := b.Get([]byte(siret))
		if raw == nil {
			return registry.Delta{}, fmt.Errorf("consumer %s: %w", siret, registry.ErrNotFound)
		}
		old, err := decodeConsumer(raw)
		if err != nil {
			return registry.Delta{}, err
		}
		if c, err = registry.ChangeStatus(old, st, s.now()); err != nil {
			return registry.Delta{}, err
		}
		return registry.Delta{Consumers: []registry.Consumer{c}}, putConsumer(b, c)
	})
	if err != nil {
		return registry.Consumer{}, err
	}
	return c, nil
}

// AddGrant validates and stores g with a new id.
func (s *Store) AddGrant(_ context.Context, g registry.Grant) (registry.Grant, error) {
	g, err := registry.NewGrant(s.cat, g, s.now())
	if err != nil {
		return registry.Grant{}, err
	}
	err = s.update(func(tx *bolt.Tx) (registry.Delta, error) {
		if tx.Bucket(bucketConsumers).Get([]byte(g.Consumer)) == nil {
			return registry.Delta{}, registry.ErrUnregistered(g.Consumer)
		}
		return registry.Delta{Grants: []registry.Grant{g}}, putGrant(tx.Bucket(bucketGrants), g)
	})
	if err != nil {
		return registry.Grant{}, err
	}
	return g, nil
}

func putGrant(b *bolt.Bucket, g registry.Grant) error {
	v, err := encodeGrant(g)
	if err != nil {
		return err
	}
	return b.Put([]byte(g.ID), v)
}

// RevokeGrant ends a grant now; it stays in the file for history.
func (s *Store) RevokeGrant(_ context.Context, id string) (registry.Grant, error) {
	return s.changeGrant(id, func(g registry.Grant) (registry.Grant, error) {
		return registry.RevokeGrant(g, s.now())
	})
}

// ExtendGrant moves a grant's end to notAfter (later or earlier, never
// into the past).
func (s *Store) ExtendGrant(_ context.Context, id string, notAfter time.Time) (registry.Grant, error) {
	return s.changeGrant(id, func(g registry.Grant) (registry.Grant, error) {
		return registry.ExtendGrant(g, notAfter, s.now())
	})
}

func (s *Store) changeGrant(id string, change func(registry.Grant) (registry.Grant, error)) (registry.Grant, error) {
	var g registry.Grant
	err := s.update(func(tx *bolt.Tx) (registry.Delta, error) {
		b := tx.Bucket(bucketGrants)
		raw := b.Get([]byte(id))
		if raw == nil {
			return registry.Delta{}, fmt.Errorf("grant %s: %w", id, registry.ErrNotFound)
		}
		old, err := decodeGrant(raw)
		if err != nil {
			return registry.Delta{}, err
		}
		if g, err = change(old); err != nil {
			return registry.Delta{}, err
		}
		return registry.Delta{Grants: []registry.Grant{g}}, putGrant(b, g)
	})
	if err != nil {
		return registry.Grant{}, err
	}
	return g, nil
}

// PutCredential records an issued, renewed or revoked certificate; a
// revocation is final.
func (s *Store) PutCredential(_ context.Context, r registry.CredentialRecord) error {
	if _, err := registry.NewCredential(nil, r, s.now()); err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) (registry.Delta, error) {
		b := tx.Bucket(bucketCredentials)
		old, err := getCredential(b, r.Serial)
		if err != nil {
			return registry.Delta{}, err
		}
		next, err := registry.NewCredential(old, r, s.now())
		if err != nil {
			return registry.Delta{}, err
		}
		var d registry.Delta
		if next.Status == registry.CredentialRevoked {
			d.Revoked = []string{next.Serial}
		}
		return d, putCredential(b, next)
	})
}

// RevokeCredentials marks serials revoked in one transaction.
func (s *Store) RevokeCredentials(_ context.Context, serials ...string) ([]registry.CredentialRecord, error) {
	serials, err := registry.CheckSerials(serials)
	if err != nil {
		return nil, err
	}
	out := make([]registry.CredentialRecord, len(serials))
	err = s.update(func(tx *bolt.Tx) (registry.Delta, error) {
		b := tx.Bucket(bucketCredentials)
		for i, serial := range serials {
			old, err := getCredential(b, serial)
			if err != nil {
				return registry.Delta{}, err
			}
			out[i] = registry.RevokeCredential(old, serial, s.now())
			if err := putCredential(b, out[i]); err != nil {
				return registry.Delta{}, err
			}
		}
		return registry.Delta{Revoked: serials}, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func getCredential(b *bolt.Bucket, serial string) (*registry.CredentialRecord, error) {
	raw := b.Get([]byte(serial))
	if raw == nil {
		return nil, nil
	}
	r, err := decodeCredential(raw)
	if err != nil {
		return nil, fmt.Errorf("registry: corrupt record: credential %s: %w", serial, err)
	}
	return &r, nil
}

func putCredential(b *bolt.Bucket, r registry.CredentialRecord) error {
	v, err := encodeCredential(r)
	if err != nil {
		return err
	}
	return b.Put([]byte(r.Serial), v)
}

// ListCredentials returns the credential records of subject (all when
// empty), newest first. It scans the bucket: the bbolt registry is for
// one machine, where the records number in the thousands.
func (s *Store) ListCredentials(_ context.Context, subject string) ([]registry.CredentialRecord, error) {
	var out []registry.CredentialRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCredentials).ForEach(func(_, v []byte) error {
			r, err := decodeCredential(v)
			if err == nil && (subject == "" || r.Subject == subject) {
				out = append(out, r)
			}
			return err
		})
	})
	registry.SortCredentials(out)
	return out, err
}

// Import adds consumers and grants in one transaction (all or nothing),
// validating each as AddConsumer and AddGrant do: for onboarding in bulk
// and for seeding the dev registry.
func (s *Store) Import(_ context.Context, consumers []registry.Consumer, grants []registry.Grant) ([]registry.Grant, error) {
	cs, gs, err := registry.NewImport(s.cat, consumers, grants, s.now())
	if err != nil {
		return nil, err
	}
	err = s.update(func(tx *bolt.Tx) (registry.Delta, error) {
		cb, gb := tx.Bucket(bucketConsumers), tx.Bucket(bucketGrants)
		for _, c := range cs {
			if cb.Get([]byte(c.SIRET)) != nil {
				return registry.Delta{}, fmt.Errorf("consumer %s: %w", c.SIRET, registry.ErrExists)
			}
			if err := putConsumer(cb, c); err != nil {
				return registry.Delta{}, err
			}
		}
		for _, g := range gs {
			if cb.Get([]byte(g.Consumer)) == nil {
				return registry.Delta{}, registry.ErrUnregistered(g.Consumer)
			}
			if err := putGrant(gb, g); err != nil {
				return registry.Delta{}, err
			}
		}
		return registry.Delta{Consumers: cs, Grants: gs}, nil
	})
	if err != nil {
		return nil, err
	}
	return gs, nil
}
