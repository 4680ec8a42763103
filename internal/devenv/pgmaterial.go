package devenv

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PGMaterial is the MaterialStore of `relaisd dev --postgres`: one table,
// relais_dev_material, created on first use. It is not part of the
// production schema (internal/pgdb): a production database never holds a
// CA key or the audit keys.
type PGMaterial struct{ Pool *pgxpool.Pool }

const createMaterial = `CREATE TABLE IF NOT EXISTS relais_dev_material (
	name    text PRIMARY KEY,
	content bytea NOT NULL
)`

// Init creates the table when missing. Two dev brokers starting at once
// may race on CREATE TABLE IF NOT EXISTS; the loser retries once.
func (m PGMaterial) Init(ctx context.Context) error {
	_, err := m.Pool.Exec(ctx, createMaterial)
	if err != nil {
		_, err = m.Pool.Exec(ctx, createMaterial)
	}
	return err
}

// Get implements MaterialStore.
func (m PGMaterial) Get(ctx context.Context, name string) ([]byte, bool, error) {
	var content []byte
	err := m.Pool.QueryRow(ctx, `SELECT content FROM relais_dev_material WHERE name = $1`, name).Scan(&content)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	return content, err == nil, err
}

// PutIfAbsent implements MaterialStore.
func (m PGMaterial) PutIfAbsent(ctx context.Context, name string, content []byte) ([]byte, error) {
	if _, err := m.Pool.Exec(ctx, `INSERT INTO relais_dev_material (name, content) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, name, content); err != nil {
		return nil, err
	}
	stored, _, err := m.Get(ctx, name)
	return stored, err
}
