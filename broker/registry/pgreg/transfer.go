package pgreg

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/relais-broker/relais/broker/registry"
)

// Export implements registry.Transfer from one repeatable-read
// transaction.
func (s *Store) Export(ctx context.Context) (registry.Contents, error) {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return registry.Contents{}, unavailable(ctx, "export", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var c registry.Contents
	rows, _ := tx.Query(ctx, `SELECT `+consumerColumns+` FROM registry_consumers`)
	if c.Consumers, err = pgx.CollectRows(rows, scanConsumer); err != nil {
		return registry.Contents{}, classify(ctx, "export", err)
	}
	rows, _ = tx.Query(ctx, `SELECT `+grantColumns+` FROM registry_grants`)
	if c.Grants, err = pgx.CollectRows(rows, scanGrant); err != nil {
		return registry.Contents{}, classify(ctx, "export", err)
	}
	rows, _ = tx.Query(ctx, `SELECT `+credentialColumns+` FROM registry_credentials`)
	if c.Credentials, err = pgx.CollectRows(rows, scanCredential); err != nil {
		return registry.Contents{}, classify(ctx, "export", err)
	}
	registry.SortContents(&c)
	return c, nil
}

// Restore implements registry.Transfer: into empty tables only, in one
// transaction, with COPY for the rows.
func (s *Store) Restore(ctx context.Context, in registry.Contents) error {
	c, err := registry.CheckContents(s.cat, in)
	if err != nil {
		return err
	}
	return s.write(ctx, "restore", func(tx pgx.Tx) (registry.Delta, error) {
		var held string
		err := tx.QueryRow(ctx, `SELECT CASE
			WHEN EXISTS (SELECT 1 FROM registry_consumers) THEN 'consumers'
			WHEN EXISTS (SELECT 1 FROM registry_grants) THEN 'grants'
			WHEN EXISTS (SELECT 1 FROM registry_credentials) THEN 'credentials'
			ELSE '' END`).Scan(&held)
		if err != nil {
			return registry.Delta{}, err
		}
		if held != "" {
			return registry.Delta{}, fmt.Errorf("registry: restore: the target registry is not empty (it holds %s): %w", held, registry.ErrExists)
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"registry_consumers"}, columns(consumerColumns),
			pgx.CopyFromSlice(len(c.Consumers), func(i int) ([]any, error) { return consumerValues(c.Consumers[i]), nil })); err != nil {
			return registry.Delta{}, err
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"registry_grants"}, columns(grantColumns),
			pgx.CopyFromSlice(len(c.Grants), func(i int) ([]any, error) { return grantValues(c.Grants[i]), nil })); err != nil {
			return registry.Delta{}, err
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"registry_credentials"}, columns(credentialColumns),
			pgx.CopyFromSlice(len(c.Credentials), func(i int) ([]any, error) { return credentialValues(c.Credentials[i]), nil })); err != nil {
			return registry.Delta{}, err
		}
		d := registry.Delta{Consumers: c.Consumers, Grants: c.Grants}
		for _, r := range c.Credentials {
			if r.Status == registry.CredentialRevoked {
				d.Revoked = append(d.Revoked, r.Serial)
			}
		}
		return d, nil
	})
}
