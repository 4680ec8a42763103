package pgcluster

import (
	"context"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/cluster"
	"github.com/relais-broker/relais/internal/pgdb"
	"github.com/relais-broker/relais/internal/pgtest"
)

// TestAnAbandonedSessionIsEndedOnReconnect: when a beat fails, the server
// may keep the old session (and the id's lock) for a while — a network
// that drops packets rather than resetting. The reconnecting replica ends
// that session of its own instead of taking its own lock for another
// process's. Here the old connection is left open, as the server would see
// a half-dead one.
func TestAnAbandonedSessionIsEndedOnReconnect(t *testing.T) {
	pg := pgtest.Shared(t)
	admin := pg.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := pgdb.Migrate(ctx, admin); err != nil {
		t.Fatal(err)
	}
	pool, err := pgdb.Connect(ctx, pg.NewLogin(t, admin, "relais_broker"))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	c := New(pool, Options{Interval: 100 * time.Millisecond})
	r := cluster.Replica{ID: "relais-a", StartedAt: time.Now()}
	if err := c.Join(ctx, r); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Leave(context.Background()) }()

	c.mu.Lock()
	old := c.sess
	c.abandoned, c.sess = &old.id, nil // what a failed beat does, minus closing
	c.mu.Unlock()
	defer old.close()

	if err := c.Beat(ctx); err != nil {
		t.Fatalf("beat after abandoning a live session of ours: %v", err)
	}
	if err := old.conn.Ping(ctx); err == nil {
		t.Fatal("the abandoned session is still alive")
	}
	other := New(pool, Options{})
	if err := other.Join(ctx, r); err == nil {
		t.Fatal("the id was free after the reconnect")
	}
}
