package pgrem_test

import (
	"context"
	"testing"

	"github.com/relais-broker/relais/broker/reminders"
	"github.com/relais-broker/relais/broker/reminders/pgrem"
	"github.com/relais-broker/relais/broker/reminders/remindertest"
	"github.com/relais-broker/relais/internal/pgdb"
	"github.com/relais-broker/relais/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestPostgresStoreConforms runs the suite as a login in relais_broker,
// so it also proves the migration's grants suffice.
func TestPostgresStoreConforms(t *testing.T) {
	remindertest.Run(t, func(t *testing.T) (reminders.Store, func(t *testing.T) reminders.Store) {
		c := pgtest.Shared(t)
		admin := c.NewDatabase(t)
		if _, err := pgdb.Migrate(context.Background(), admin); err != nil {
			t.Fatal(err)
		}
		dsn := c.NewLogin(t, admin, "relais_broker")
		connect := func(t *testing.T) reminders.Store {
			pool, err := pgdb.Connect(context.Background(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(pool.Close)
			return pgrem.New(pool)
		}
		return connect(t), connect
	})
}
