package boltreg

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/relais-broker/relais/broker/registry"
)

// snapshot is an immutable copy of what the broker reads on every call.
type snapshot struct {
	consumers map[string]registry.Consumer
	// grants holds unrevoked grants by consumer, then service.
	grants map[string]map[string][]registry.Grant
}

// reload rebuilds the snapshot from the file; called after every commit.
func (s *Store) reload() error {
	next := &snapshot{consumers: map[string]registry.Consumer{}, grants: map[string]map[string][]registry.Grant{}}
	err := s.db.View(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketConsumers).ForEach(func(k, v []byte) error {
			c, err := decodeConsumer(v)
			if err != nil {
				return fmt.Errorf("consumer %s: %w", k, err)
			}
			next.consumers[c.SIRET] = c
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketGrants).ForEach(func(k, v []byte) error {
			g, err := decodeGrant(v)
			if err != nil {
				return fmt.Errorf("grant %s: %w", k, err)
			}
			if !g.RevokedAt.IsZero() {
				return nil
			}
			bySvc := next.grants[g.Consumer]
			if bySvc == nil {
				bySvc = map[string][]registry.Grant{}
				next.grants[g.Consumer] = bySvc
			}
			bySvc[g.Service] = append(bySvc[g.Service], g)
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("registry: corrupt record: %w", err)
	}
	s.snap.Store(next)
	return nil
}

// Consumer implements registry.Reader from the snapshot.
func (s *Store) Consumer(_ context.Context, siret string) (registry.Consumer, error) {
	c, ok := s.snap.Load().consumers[siret]
	if !ok {
		return registry.Consumer{}, registry.ErrNotFound
	}
	return c, nil
}

// Grants implements registry.Reader from the snapshot: the consumer's
// unrevoked grants for service, whatever their window. The slice is
// shared: callers must not modify it.
func (s *Store) Grants(_ context.Context, siret, service string) ([]registry.Grant, error) {
	return s.snap.Load().grants[siret][service], nil
}
