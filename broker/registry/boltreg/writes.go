package boltreg

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/relais-broker/relais/broker/registry"
)

// update runs fn in one write transaction and refreshes the snapshot
// after a commit.
func (s *Store) update(fn func(tx *bolt.Tx) error) error {
	if err := s.db.Update(fn); err != nil {
		return err
	}
	return s.reload()
}

// AddConsumer registers c, active unless c.Status says otherwise.
func (s *Store) AddConsumer(_ context.Context, c registry.Consumer) (registry.Consumer, error) {
	if c.Status == "" {
		c.Status = registry.StatusActive
	}
	if err := s.checkConsumer(c); err != nil {
		return registry.Consumer{}, err
	}
	now := s.now().UTC()
	c.CreatedAt, c.UpdatedAt = now, now
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketConsumers)
		if b.Get([]byte(c.SIRET)) != nil {
			return fmt.Errorf("consumer %s: %w", c.SIRET, registry.ErrExists)
		}
		return putConsumer(b, c)
	})
	return c, err
}

func putConsumer(b *bolt.Bucket, c registry.Consumer) error {
	v, err := encodeConsumer(c)
	if err != nil {
		return err
	}
	return b.Put([]byte(c.SIRET), v)
}

// ListConsumers returns every consumer by SIRET.
func (s *Store) ListConsumers(context.Context) ([]registry.Consumer, error) {
	snap := s.snap.Load()
	out := make([]registry.Consumer, 0, len(snap.consumers))
	for _, c := range snap.consumers {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b registry.Consumer) int { return strings.Compare(a.SIRET, b.SIRET) })
	return out, nil
}

// SetConsumerStatus suspends or resumes a consumer.
func (s *Store) SetConsumerStatus(_ context.Context, siret string, st registry.Status) (registry.Consumer, error) {
	if st != registry.StatusActive && st != registry.StatusSuspended {
		return registry.Consumer{}, invalid("status", "%q: want active or suspended", st)
	}
	var c registry.Consumer
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketConsumers)
		raw := b.Get([]byte(siret))
		if raw == nil {
			return fmt.Errorf("consumer %s: %w", siret, registry.ErrNotFound)
		}
		var err error
		if c, err = decodeConsumer(raw); err != nil {
			return err
		}
		c.Status, c.UpdatedAt = st, s.now().UTC()
		return putConsumer(b, c)
	})
	return c, err
}

// AddGrant validates and stores g with a new id.
func (s *Store) AddGrant(_ context.Context, g registry.Grant) (registry.Grant, error) {
	now := s.now()
	if err := s.checkGrant(g, now); err != nil {
		return registry.Grant{}, err
	}
	g.ID, g.CreatedAt, g.RevokedAt = newGrantID(), now.UTC(), time.Time{}
	err := s.update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketConsumers).Get([]byte(g.Consumer)) == nil {
			return fmt.Errorf("%w: consumer: %s is not registered (add it first)", registry.ErrInvalid, g.Consumer)
		}
		return putGrant(tx.Bucket(bucketGrants), g)
	})
	return g, err
}

func newGrantID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "g-" + hex.EncodeToString(b[:])
}

func putGrant(b *bolt.Bucket, g registry.Grant) error {
	v, err := encodeGrant(g)
	if err != nil {
		return err
	}
	return b.Put([]byte(g.ID), v)
}

// ListGrants returns the grants matching f (revoked ones included unless
// ExpiringBefore is set), by consumer then id.
func (s *Store) ListGrants(_ context.Context, f registry.GrantFilter) ([]registry.Grant, error) {
	var out []registry.Grant
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketGrants).ForEach(func(_, v []byte) error {
			g, err := decodeGrant(v)
			if err != nil {
				return err
			}
			switch {
			case f.Consumer != "" && g.Consumer != f.Consumer,
				f.Service != "" && g.Service != f.Service,
				!f.ExpiringBefore.IsZero() && (!g.RevokedAt.IsZero() || !g.NotAfter.Before(f.ExpiringBefore) || !g.NotAfter.After(s.now())):
				return nil
			}
			out = append(out, g)
			return nil
		})
	})
	slices.SortFunc(out, func(a, b registry.Grant) int {
		if c := strings.Compare(a.Consumer, b.Consumer); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, err
}

// RevokeGrant ends a grant now; it stays in the file for history.
func (s *Store) RevokeGrant(_ context.Context, id string) (registry.Grant, error) {
	return s.changeGrant(id, func(g *registry.Grant) error {
		if !g.RevokedAt.IsZero() {
			return fmt.Errorf("%w: grant %s was already revoked on %s", registry.ErrInvalid, id, g.RevokedAt.Format(time.RFC3339))
		}
		g.RevokedAt = s.now().UTC()
		return nil
	})
}

// ExtendGrant moves a grant's end to notAfter (later or earlier, never
// into the past).
func (s *Store) ExtendGrant(_ context.Context, id string, notAfter time.Time) (registry.Grant, error) {
	return s.changeGrant(id, func(g *registry.Grant) error {
		if !g.RevokedAt.IsZero() {
			return fmt.Errorf("%w: grant %s is revoked; add a new one", registry.ErrInvalid, id)
		}
		if err := checkWindow(g.NotBefore, notAfter, s.now()); err != nil {
			return err
		}
		g.NotAfter = notAfter
		return nil
	})
}

func (s *Store) changeGrant(id string, change func(*registry.Grant) error) (registry.Grant, error) {
	var g registry.Grant
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketGrants)
		raw := b.Get([]byte(id))
		if raw == nil {
			return fmt.Errorf("grant %s: %w", id, registry.ErrNotFound)
		}
		var err error
		if g, err = decodeGrant(raw); err != nil {
			return err
		}
		if err := change(&g); err != nil {
			return err
		}
		return putGrant(b, g)
	})
	return g, err
}

// PutCredential records an issued, renewed or revoked certificate.
func (s *Store) PutCredential(_ context.Context, r registry.CredentialRecord) error {
	if r.Serial == "" || r.Subject == "" || (r.Kind != "consumer" && r.Kind != "operator") {
		return invalid("credential", "serial, subject and kind (consumer or operator) are required")
	}
	if r.Status == "" {
		r.Status = registry.CredentialActive
	}
	v, err := encodeCredential(r)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCredentials).Put([]byte(r.Serial), v)
	})
}

// ListCredentials returns the credential records of subject (all when
// empty), newest first.
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
	slices.SortFunc(out, func(a, b registry.CredentialRecord) int { return b.NotBefore.Compare(a.NotBefore) })
	return out, err
}

// Import adds consumers and grants in one transaction (all or nothing),
// validating each as AddConsumer and AddGrant do: for onboarding in bulk
// and for seeding the dev registry.
func (s *Store) Import(_ context.Context, consumers []registry.Consumer, grants []registry.Grant) ([]registry.Grant, error) {
	now := s.now()
	for i := range consumers {
		if consumers[i].Status == "" {
			consumers[i].Status = registry.StatusActive
		}
		if err := s.checkConsumer(consumers[i]); err != nil {
			return nil, fmt.Errorf("consumer %s: %w", consumers[i].SIRET, err)
		}
		consumers[i].CreatedAt, consumers[i].UpdatedAt = now.UTC(), now.UTC()
	}
	out := make([]registry.Grant, len(grants))
	for i, g := range grants {
		if err := s.checkGrant(g, now); err != nil {
			return nil, fmt.Errorf("grant %d (%s, %s): %w", i, g.Consumer, g.Service, err)
		}
		g.ID, g.CreatedAt, g.RevokedAt = newGrantID(), now.UTC(), time.Time{}
		out[i] = g
	}
	err := s.update(func(tx *bolt.Tx) error {
		cb, gb := tx.Bucket(bucketConsumers), tx.Bucket(bucketGrants)
		for _, c := range consumers {
			if cb.Get([]byte(c.SIRET)) != nil {
				return fmt.Errorf("consumer %s: %w", c.SIRET, registry.ErrExists)
			}
			if err := putConsumer(cb, c); err != nil {
				return err
			}
		}
		for _, g := range out {
			if cb.Get([]byte(g.Consumer)) == nil {
				return fmt.Errorf("%w: consumer: %s is not registered", registry.ErrInvalid, g.Consumer)
			}
			if err := putGrant(gb, g); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
