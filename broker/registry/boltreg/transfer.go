package boltreg

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/relais-broker/relais/broker/registry"
)

// Export implements registry.Transfer from one read transaction.
func (s *Store) Export(context.Context) (registry.Contents, error) {
	var c registry.Contents
	err := s.db.View(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketConsumers).ForEach(func(k, v []byte) error {
			cn, err := decodeConsumer(v)
			if err != nil {
				return fmt.Errorf("registry: corrupt record: consumer %s: %w", k, err)
			}
			c.Consumers = append(c.Consumers, cn)
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketGrants).ForEach(func(k, v []byte) error {
			g, err := decodeGrant(v)
			if err != nil {
				return fmt.Errorf("registry: corrupt record: grant %s: %w", k, err)
			}
			c.Grants = append(c.Grants, g)
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketCredentials).ForEach(func(k, v []byte) error {
			r, err := decodeCredential(v)
			if err != nil {
				return fmt.Errorf("registry: corrupt record: credential %s: %w", k, err)
			}
			c.Credentials = append(c.Credentials, r)
			return nil
		})
	})
	if err != nil {
		return registry.Contents{}, err
	}
	registry.SortContents(&c)
	return c, nil
}

// Restore implements registry.Transfer: into an empty file only, in one
// transaction.
func (s *Store) Restore(_ context.Context, in registry.Contents) error {
	c, err := registry.CheckContents(s.cat, in)
	if err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) (registry.Delta, error) {
		for _, name := range [][]byte{bucketConsumers, bucketGrants, bucketCredentials} {
			if k, _ := tx.Bucket(name).Cursor().First(); k != nil {
				return registry.Delta{}, fmt.Errorf("registry: restore: the target registry is not empty (it holds %s): %w", name, registry.ErrExists)
			}
		}
		cb, gb, rb := tx.Bucket(bucketConsumers), tx.Bucket(bucketGrants), tx.Bucket(bucketCredentials)
		var d registry.Delta
		for _, cn := range c.Consumers {
			if err := putConsumer(cb, cn); err != nil {
				return registry.Delta{}, err
			}
		}
		for _, g := range c.Grants {
			if err := putGrant(gb, g); err != nil {
				return registry.Delta{}, err
			}
		}
		for _, r := range c.Credentials {
			if err := putCredential(rb, r); err != nil {
				return registry.Delta{}, err
			}
			if r.Status == registry.CredentialRevoked {
				d.Revoked = append(d.Revoked, r.Serial)
			}
		}
		d.Consumers, d.Grants = c.Consumers, c.Grants
		return d, nil
	})
}
