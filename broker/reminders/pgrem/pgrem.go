// Package pgrem keeps the reminders' records in PostgreSQL (table
// reminder, migration 00006), shared by the replicas of one database. It
// passes remindertest.
package pgrem

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/relais-broker/relais/broker/reminders"
)

// Store is a reminders.Store over a pool.
type Store struct {
	pool *pgxpool.Pool
}

var _ reminders.Store = (*Store)(nil)

// New uses pool (migrated to pgdb.Version; the caller closes it).
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

const columns = `kind, consumer, ref, service, not_after, step_days, state, attempts, recipients, first_attempt, last_attempt, sent_at, last_error`

// Put implements reminders.Store.
func (s *Store) Put(ctx context.Context, r reminders.Record) error {
	if err := reminders.Validate(r); err != nil {
		return err
	}
	var sent *time.Time
	if !r.SentAt.IsZero() {
		sent = &r.SentAt
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO reminder (key, `+columns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
		ON CONFLICT (key) DO UPDATE SET kind = EXCLUDED.kind, consumer = EXCLUDED.consumer, ref = EXCLUDED.ref, service = EXCLUDED.service,
		not_after = EXCLUDED.not_after, step_days = EXCLUDED.step_days, state = EXCLUDED.state, attempts = EXCLUDED.attempts,
		recipients = EXCLUDED.recipients, first_attempt = EXCLUDED.first_attempt, last_attempt = EXCLUDED.last_attempt,
		sent_at = EXCLUDED.sent_at, last_error = EXCLUDED.last_error`,
		r.Key(), r.Kind, r.Consumer, r.Ref, r.Service, r.NotAfter, r.Step, r.State, r.Attempts, r.Recipients, r.FirstAttempt, r.LastAttempt, sent, r.LastError)
	if err != nil {
		return fmt.Errorf("reminders store: %w", err)
	}
	return nil
}

func scan(row pgx.Row) (reminders.Record, error) {
	var r reminders.Record
	var sent *time.Time
	if err := row.Scan(&r.Kind, &r.Consumer, &r.Ref, &r.Service, &r.NotAfter, &r.Step, &r.State, &r.Attempts, &r.Recipients,
		&r.FirstAttempt, &r.LastAttempt, &sent, &r.LastError); err != nil {
		return r, err
	}
	if sent != nil {
		r.SentAt = sent.UTC()
	}
	r.NotAfter, r.FirstAttempt, r.LastAttempt = r.NotAfter.UTC(), r.FirstAttempt.UTC(), r.LastAttempt.UTC()
	return r, nil
}

// Get implements reminders.Store.
func (s *Store) Get(ctx context.Context, key string) (reminders.Record, error) {
	r, err := scan(s.pool.QueryRow(ctx, `SELECT `+columns+` FROM reminder WHERE key = $1`, key))
	if errors.Is(err, pgx.ErrNoRows) {
		return r, reminders.ErrNotFound
	}
	if err != nil {
		return r, fmt.Errorf("reminders store: %w", err)
	}
	return r, nil
}

// List implements reminders.Store.
func (s *Store) List(ctx context.Context) ([]reminders.Record, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+columns+` FROM reminder`)
	if err != nil {
		return nil, fmt.Errorf("reminders store: %w", err)
	}
	defer rows.Close()
	var out []reminders.Record
	for rows.Next() {
		r, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("reminders store: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reminders store: %w", err)
	}
	// Sorted in Go, the one definition both stores share (collations
	// differ from Go's byte order).
	reminders.SortRecords(out)
	return out, nil
}

// Purge implements reminders.Store.
func (s *Store) Purge(ctx context.Context, before time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM reminder WHERE not_after < $1`, before)
	if err != nil {
		return 0, fmt.Errorf("reminders store: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
