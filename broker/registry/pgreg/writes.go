package pgreg

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/relais-broker/relais/broker/registry"
)

// AddConsumer registers c, active unless c.Status says otherwise.
func (s *Store) AddConsumer(ctx context.Context, c registry.Consumer) (registry.Consumer, error) {
	c, err := registry.NewConsumer(c, s.now())
	if err != nil {
		return registry.Consumer{}, err
	}
	err = s.write(ctx, "add consumer", func(tx pgx.Tx) (registry.Delta, error) {
		tag, err := tx.Exec(ctx, `INSERT INTO registry_consumers (`+consumerColumns+`) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (siret) DO NOTHING`, consumerValues(c)...)
		if err == nil && tag.RowsAffected() == 0 {
			return registry.Delta{}, fmt.Errorf("consumer %s: %w", c.SIRET, registry.ErrExists)
		}
		return registry.Delta{Consumers: []registry.Consumer{c}}, err
	})
	if err != nil {
		return registry.Consumer{}, err
	}
	return c, nil
}

// SetConsumerStatus suspends or resumes a consumer.
func (s *Store) SetConsumerStatus(ctx context.Context, siret string, st registry.Status) (registry.Consumer, error) {
	if err := registry.CheckStatus(st); err != nil {
		return registry.Consumer{}, err
	}
	var c registry.Consumer
	err := s.write(ctx, "set consumer status", func(tx pgx.Tx) (registry.Delta, error) {
		rows, _ := tx.Query(ctx, `SELECT `+consumerColumns+` FROM registry_consumers WHERE siret = $1 FOR UPDATE`, siret)
		old, err := pgx.CollectExactlyOneRow(rows, scanConsumer)
		if errors.Is(err, pgx.ErrNoRows) {
			return registry.Delta{}, fmt.Errorf("consumer %s: %w", siret, registry.ErrNotFound)
		}
		if err != nil {
			return registry.Delta{}, err
		}
		if c, err = registry.ChangeStatus(old, st, s.now()); err != nil {
			return registry.Delta{}, err
		}
		_, err = tx.Exec(ctx, `UPDATE registry_consumers SET status = $2, updated_at = $3 WHERE siret = $1`, c.SIRET, string(c.Status), c.UpdatedAt)
		return registry.Delta{Consumers: []registry.Consumer{c}}, err
	})
	if err != nil {
		return registry.Consumer{}, err
	}
	return c, nil
}

// AddGrant validates and stores g with a new id.
func (s *Store) AddGrant(ctx context.Context, g registry.Grant) (registry.Grant, error) {
	g, err := registry.NewGrant(s.cat, g, s.now())
	if err != nil {
		return registry.Grant{}, err
	}
	err = s.write(ctx, "add grant", func(tx pgx.Tx) (registry.Delta, error) {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM registry_consumers WHERE siret = $1)`, g.Consumer).Scan(&exists); err != nil {
			return registry.Delta{}, err
		}
		if !exists {
			return registry.Delta{}, registry.ErrUnregistered(g.Consumer)
		}
		_, err := tx.Exec(ctx, `INSERT INTO registry_grants (`+grantColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)`, grantValues(g)...)
		return registry.Delta{Grants: []registry.Grant{g}}, err
	})
	if err != nil {
		return registry.Grant{}, err
	}
	return g, nil
}

// RevokeGrant ends a grant now; its row stays for history.
func (s *Store) RevokeGrant(ctx context.Context, id string) (registry.Grant, error) {
	return s.changeGrant(ctx, "revoke grant", id, func(g registry.Grant) (registry.Grant, error) {
		return registry.RevokeGrant(g, s.now())
	})
}

// ExtendGrant moves a grant's end to notAfter (later or earlier, never
// into the past).
func (s *Store) ExtendGrant(ctx context.Context, id string, notAfter time.Time) (registry.Grant, error) {
	return s.changeGrant(ctx, "extend grant", id, func(g registry.Grant) (registry.Grant, error) {
		return registry.ExtendGrant(g, notAfter, s.now())
	})
}

func (s *Store) changeGrant(ctx context.Context, what, id string, change func(registry.Grant) (registry.Grant, error)) (registry.Grant, error) {
	var g registry.Grant
	err := s.write(ctx, what, func(tx pgx.Tx) (registry.Delta, error) {
		rows, _ := tx.Query(ctx, `SELECT `+grantColumns+` FROM registry_grants WHERE id = $1 FOR UPDATE`, id)
		old, err := pgx.CollectExactlyOneRow(rows, scanGrant)
		if errors.Is(err, pgx.ErrNoRows) {
			return registry.Delta{}, fmt.Errorf("grant %s: %w", id, registry.ErrNotFound)
		}
		if err != nil {
			return registry.Delta{}, err
		}
		if g, err = change(old); err != nil {
			return registry.Delta{}, err
		}
		_, err = tx.Exec(ctx, `UPDATE registry_grants SET not_after = $2, revoked_at = $3 WHERE id = $1`, g.ID, g.NotAfter, nullTime(g.RevokedAt))
		return registry.Delta{Grants: []registry.Grant{g}}, err
	})
	if err != nil {
		return registry.Grant{}, err
	}
	return g, nil
}

// PutCredential records an issued, renewed or revoked certificate; a
// revocation is final.
func (s *Store) PutCredential(ctx context.Context, r registry.CredentialRecord) error {
	if _, err := registry.NewCredential(nil, r, s.now()); err != nil {
		return err
	}
	return s.write(ctx, "put credential", func(tx pgx.Tx) (registry.Delta, error) {
		old, err := lockCredentials(ctx, tx, []string{r.Serial})
		if err != nil {
			return registry.Delta{}, err
		}
		var prev *registry.CredentialRecord
		if o, ok := old[r.Serial]; ok {
			prev = &o
		}
		next, err := registry.NewCredential(prev, r, s.now())
		if err != nil {
			return registry.Delta{}, err
		}
		var d registry.Delta
		if next.Status == registry.CredentialRevoked {
			d.Revoked = []string{next.Serial}
		}
		return d, upsertCredential(ctx, tx, next)
	})
}

// RevokeCredentials marks serials revoked in one transaction.
func (s *Store) RevokeCredentials(ctx context.Context, serials ...string) ([]registry.CredentialRecord, error) {
	serials, err := registry.CheckSerials(serials)
	if err != nil {
		return nil, err
	}
	out := make([]registry.CredentialRecord, len(serials))
	err = s.write(ctx, "revoke credentials", func(tx pgx.Tx) (registry.Delta, error) {
		old, err := lockCredentials(ctx, tx, serials)
		if err != nil {
			return registry.Delta{}, err
		}
		for i, serial := range serials {
			var prev *registry.CredentialRecord
			if o, ok := old[serial]; ok {
				prev = &o
			}
			out[i] = registry.RevokeCredential(prev, serial, s.now())
			if err := upsertCredential(ctx, tx, out[i]); err != nil {
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

func lockCredentials(ctx context.Context, tx pgx.Tx, serials []string) (map[string]registry.CredentialRecord, error) {
	rows, _ := tx.Query(ctx, `SELECT `+credentialColumns+` FROM registry_credentials WHERE serial = ANY($1) FOR UPDATE`, serials)
	recs, err := pgx.CollectRows(rows, scanCredential)
	if err != nil {
		return nil, err
	}
	out := make(map[string]registry.CredentialRecord, len(recs))
	for _, r := range recs {
		out[r.Serial] = r
	}
	return out, nil
}

func upsertCredential(ctx context.Context, tx pgx.Tx, r registry.CredentialRecord) error {
	_, err := tx.Exec(ctx, `INSERT INTO registry_credentials (`+credentialColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (serial) DO UPDATE SET kind = EXCLUDED.kind, subject = EXCLUDED.subject, not_before = EXCLUDED.not_before,
		not_after = EXCLUDED.not_after, status = EXCLUDED.status, revoked_at = EXCLUDED.revoked_at, issued_by = EXCLUDED.issued_by`,
		credentialValues(r)...)
	return err
}

// Credential implements registry.RevocationReader: one indexed lookup.
func (s *Store) Credential(ctx context.Context, serial string) (registry.CredentialRecord, error) {
	if err := registry.CheckSerial(serial); err != nil {
		return registry.CredentialRecord{}, err
	}
	rows, _ := s.pool.Query(ctx, `SELECT `+credentialColumns+` FROM registry_credentials WHERE serial = $1`, serial)
	r, err := pgx.CollectExactlyOneRow(rows, scanCredential)
	if errors.Is(err, pgx.ErrNoRows) {
		return registry.CredentialRecord{}, fmt.Errorf("credential %s: %w", serial, registry.ErrNotFound)
	}
	if err != nil {
		return registry.CredentialRecord{}, classify(ctx, "credential", err)
	}
	return r, nil
}

// ListCredentials returns the credential records of subject (all when
// empty), newest first, through the subject index.
func (s *Store) ListCredentials(ctx context.Context, subject string) ([]registry.CredentialRecord, error) {
	var rows pgx.Rows
	if subject == "" {
		rows, _ = s.pool.Query(ctx, `SELECT `+credentialColumns+` FROM registry_credentials`)
	} else {
		rows, _ = s.pool.Query(ctx, `SELECT `+credentialColumns+` FROM registry_credentials WHERE subject = $1`, subject)
	}
	out, err := pgx.CollectRows(rows, scanCredential)
	if err != nil {
		return nil, classify(ctx, "list credentials", err)
	}
	registry.SortCredentials(out)
	return out, nil
}

// Import adds consumers and grants in one transaction (all or nothing),
// validating each as AddConsumer and AddGrant do, with COPY for the rows.
func (s *Store) Import(ctx context.Context, consumers []registry.Consumer, grants []registry.Grant) ([]registry.Grant, error) {
	cs, gs, err := registry.NewImport(s.cat, consumers, grants, s.now())
	if err != nil {
		return nil, err
	}
	err = s.write(ctx, "import", func(tx pgx.Tx) (registry.Delta, error) {
		sirets := make([]string, len(cs))
		inBatch := make(map[string]bool, len(cs))
		for i, c := range cs {
			sirets[i], inBatch[c.SIRET] = c.SIRET, true
		}
		var first string
		err := tx.QueryRow(ctx, `SELECT siret FROM registry_consumers WHERE siret = ANY($1) ORDER BY siret LIMIT 1`, sirets).Scan(&first)
		switch {
		case err == nil:
			return registry.Delta{}, fmt.Errorf("consumer %s: %w", first, registry.ErrExists)
		case !errors.Is(err, pgx.ErrNoRows):
			return registry.Delta{}, err
		}
		outside := map[string]bool{}
		for _, g := range gs {
			if !inBatch[g.Consumer] {
				outside[g.Consumer] = false
			}
		}
		if len(outside) > 0 {
			rows, _ := tx.Query(ctx, `SELECT siret FROM registry_consumers WHERE siret = ANY($1)`, slices.Collect(maps.Keys(outside)))
			known, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return registry.Delta{}, err
			}
			for _, siret := range known {
				outside[siret] = true
			}
			for _, g := range gs {
				if known, checked := outside[g.Consumer]; checked && !known {
					return registry.Delta{}, registry.ErrUnregistered(g.Consumer)
				}
			}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"registry_consumers"}, columns(consumerColumns),
			pgx.CopyFromSlice(len(cs), func(i int) ([]any, error) { return consumerValues(cs[i]), nil })); err != nil {
			return registry.Delta{}, err
		}
		_, err = tx.CopyFrom(ctx, pgx.Identifier{"registry_grants"}, columns(grantColumns),
			pgx.CopyFromSlice(len(gs), func(i int) ([]any, error) { return grantValues(gs[i]), nil }))
		return registry.Delta{Consumers: cs, Grants: gs}, err
	})
	if err != nil {
		return nil, err
	}
	return gs, nil
}
