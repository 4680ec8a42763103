package pgquota_test

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/relais-broker/relais/broker/ratelimit"
	"github.com/relais-broker/relais/broker/ratelimit/pgquota"
	"github.com/relais-broker/relais/broker/ratelimit/quotatest"
	"github.com/relais-broker/relais/internal/netcut"
	"github.com/relais-broker/relais/internal/pgdb"
	"github.com/relais-broker/relais/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// brokerDB migrates a fresh database and returns a DSN of a login in
// relais_broker (so the suite also proves the grants suffice) going
// through a network-cut proxy.
func brokerDB(t testing.TB) (dsn string, proxy *netcut.Proxy) {
	t.Helper()
	c := pgtest.Shared(t)
	admin := c.NewDatabase(t)
	if _, err := pgdb.Migrate(context.Background(), admin); err != nil {
		t.Fatal(err)
	}
	proxy, err := netcut.New(fmt.Sprintf("127.0.0.1:%d", c.Port()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	u, err := url.Parse(c.NewLogin(t, admin, "relais_broker"))
	if err != nil {
		t.Fatal(err)
	}
	u.Host = proxy.Addr()
	q := u.Query()
	q.Set("pool_max_conns", "32")
	q.Set("connect_timeout", "2")
	u.RawQuery = q.Encode()
	return u.String(), proxy
}

func connect(t testing.TB, dsn string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgdb.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func TestPostgresStoresConform(t *testing.T) {
	quotatest.Run(t, func(t *testing.T, clock func() time.Time) quotatest.Stores {
		dsn, proxy := brokerDB(t)
		pool := connect(t, dsn)
		return quotatest.Stores{
			Daily:    pgquota.NewDaily(pool),
			InFlight: pgquota.NewInFlight(pool, clock),
			Replica: func(t *testing.T) quotatest.Stores {
				other := connect(t, dsn)
				return quotatest.Stores{Daily: pgquota.NewDaily(other), InFlight: pgquota.NewInFlight(other, clock)}
			},
			Down: func(t *testing.T) func() {
				proxy.Cut()
				return proxy.Restore
			},
		}
	})
}

func TestOldDaysAndExpiredHoldsAreDeleted(t *testing.T) {
	dsn, _ := brokerDB(t)
	pool := connect(t, dsn)
	ctx := context.Background()
	day1 := time.Date(2026, 6, 15, 12, 0, 0, 0, ratelimit.Paris)
	d := pgquota.NewDaily(pool)
	for _, at := range []time.Time{day1, day1.AddDate(0, 0, 1)} {
		if ok, _, err := d.Take(ctx, "k", 0, at); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	count := func(sql string) int {
		var n int
		if err := pool.QueryRow(ctx, sql).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count("SELECT count(*) FROM quota_daily"); n != 2 {
		t.Fatalf("%d counter rows after two days, want 2 (yesterday is kept)", n)
	}
	// A new replica on day 3: day 1 goes, day 2 (yesterday) stays.
	if ok, _, err := pgquota.NewDaily(pool).Take(ctx, "k", 0, day1.AddDate(0, 0, 2)); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if n := count("SELECT count(*) FROM quota_daily WHERE day = '2026-06-15'"); n != 0 {
		t.Fatal("the counters of two days ago were kept")
	}
	if n := count("SELECT count(*) FROM quota_daily"); n != 2 {
		t.Fatalf("%d counter rows, want 2", n)
	}
	c2, err := d.Count(ctx, "k", day1.AddDate(0, 0, 1))
	if err != nil || c2 != 1 {
		t.Fatalf("yesterday's count = %d, %v", c2, err)
	}

	now := day1
	f := pgquota.NewInFlight(pool, func() time.Time { return now })
	for _, k := range []string{"a", "b"} {
		if _, ok, err := f.Acquire(ctx, k, time.Second); !ok || err != nil { // never released: a dead holder
			t.Fatal(ok, err)
		}
	}
	now = now.Add(2 * time.Minute)
	if _, ok, err := f.Acquire(ctx, "c", time.Hour); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if n := count("SELECT count(*) FROM quota_inflight"); n != 1 {
		t.Fatalf("%d in-flight rows after the sweep, want 1 (the live hold)", n)
	}
}
