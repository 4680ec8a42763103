package pglog_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/audit/auditlog"
	"github.com/relais-broker/relais/broker/audit/audittest"
	"github.com/relais-broker/relais/broker/audit/pglog"
	"github.com/relais-broker/relais/broker/audit/seal"
	"github.com/relais-broker/relais/internal/pgdb"
	"github.com/relais-broker/relais/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var t0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

func key(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func record(i int) audit.Record {
	return audit.Record{
		Time: t0.Add(time.Duration(i) * time.Minute), RequestID: fmt.Sprintf("req-%d", i), Consumer: "21990000100005",
		Method: "/relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient", Purpose: "tarification_sociale",
		Subject: fmt.Sprintf("%064x", i%3), FieldsReturned: []string{"family_quotient.value"}, Code: "OK",
	}
}

// migrated returns the DSN of a fresh migrated database of cluster c.
func migrated(t testing.TB, c *pgtest.Cluster) string {
	t.Helper()
	dsn := c.NewDatabase(t)
	if _, err := pgdb.Migrate(context.Background(), dsn); err != nil {
		t.Fatal(err)
	}
	return dsn
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

func open(t testing.TB, pool *pgxpool.Pool, chain string) *pglog.Storage {
	t.Helper()
	st, err := pglog.Open(context.Background(), pool, pglog.Options{Chain: chain})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// writeLog appends n records through auditlog.Log with a checkpoint every
// 10, and closes the log (a final checkpoint).
func writeLog(t testing.TB, pool *pgxpool.Pool, n int, k ed25519.PrivateKey) {
	t.Helper()
	l, err := auditlog.Open(open(t, pool, ""), auditlog.Options{Signer: seal.Ed25519Signer(k), CheckpointEvery: 10, Clock: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		if err := l.Append(context.Background(), record(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// verify verifies what Export streams, as `relaisctl audit verify` does
// with an export file.
func verify(t testing.TB, st *pglog.Storage, pub ed25519.PublicKey) *seal.Report {
	t.Helper()
	v := seal.NewVerifier(pub)
	if err := st.Export(context.Background(), func(e seal.Entry) error { v.Add(e); return nil }); err != nil {
		t.Fatal(err)
	}
	return v.Report()
}

func exec(t testing.TB, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// TestTamperingWithSQLIsDetected: what an attacker holding the owner's
// credential does with SQL, the verifier over Export names at the first
// bad sequence number.
func TestTamperingWithSQLIsDetected(t *testing.T) {
	c := pgtest.Shared(t)
	k := key(t)
	pub := k.Public().(ed25519.PublicKey)
	_, foreign, _ := ed25519.GenerateKey(rand.Reader)
	cases := []struct {
		name    string
		tamper  func(t *testing.T, pool *pgxpool.Pool)
		pub     ed25519.PublicKey
		wantSeq uint64
	}{
		{"untouched", func(*testing.T, *pgxpool.Pool) {}, pub, 0},
		{"UPDATE of one field in a record", func(t *testing.T, pool *pgxpool.Pool) {
			exec(t, pool, `UPDATE audit_records SET stored = convert_to(replace(convert_from(stored, 'UTF8'), 'tarification', 'Tarification'), 'UTF8') WHERE seq = 17`)
		}, pub, 17},
		{"UPDATE of an indexed column only", func(t *testing.T, pool *pgxpool.Pool) {
			// The columns are copies for the indexes: the chain is the
			// stored bytes, untouched here (a query by consumer would
			// miss the row; the verification does not depend on it).
			exec(t, pool, `UPDATE audit_records SET consumer = 'forged' WHERE seq = 9`)
		}, pub, 0},
		{"DELETE of a row", func(t *testing.T, pool *pgxpool.Pool) {
			exec(t, pool, `DELETE FROM audit_records WHERE seq = 12`)
		}, pub, 12},
		{"INSERT of a forged row", func(t *testing.T, pool *pgxpool.Pool) {
			exec(t, pool, `INSERT INTO audit_records SELECT chain, 36, time + interval '1 minute', hash, hash, consumer, subject, method, code, stored FROM audit_records WHERE seq = 35`)
		}, pub, 36},
		{"INSERT of a forged row sealed into the middle", func(t *testing.T, pool *pgxpool.Pool) {
			var prev []byte
			if err := pool.QueryRow(context.Background(), `SELECT hash FROM audit_records WHERE seq = 17`).Scan(&prev); err != nil {
				t.Fatal(err)
			}
			r := record(18)
			r.Consumer, r.Time = "13002526500013", r.Time.Add(time.Second)
			_, raw, hash, err := seal.Seal("", 18, [32]byte(prev), r)
			if err != nil {
				t.Fatal(err)
			}
			exec(t, pool, `INSERT INTO audit_records VALUES ('', 18, $1, $2, $3, $4, $5, $6, $7, $8)`,
				r.Time, prev, hash[:], r.Consumer, r.Subject, r.Method, r.Code, raw)
		}, pub, 19},
		{"two sequence numbers swapped", func(t *testing.T, pool *pgxpool.Pool) {
			exec(t, pool, `UPDATE audit_records SET seq = CASE seq WHEN 20 THEN 21 ELSE 20 END WHERE seq IN (20, 21)`)
		}, pub, 20},
		{"tail truncated after a checkpoint", func(t *testing.T, pool *pgxpool.Pool) {
			exec(t, pool, `DELETE FROM audit_records WHERE seq > 30`)
		}, pub, 31},
		{"verified with a foreign key", func(*testing.T, *pgxpool.Pool) {}, foreign.Public().(ed25519.PublicKey), 10},
		{"checkpoints re-signed with a foreign key", func(t *testing.T, pool *pgxpool.Pool) {
			rechain(t, pool, 5, foreign)
		}, pub, 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pool := connect(t, migrated(t, c))
			writeLog(t, pool, 35, k)
			tc.tamper(t, pool)
			rep := verify(t, open(t, pool, ""), tc.pub)
			if tc.wantSeq == 0 {
				if !rep.OK() || rep.Records != 35 || rep.Checkpoints != 4 {
					t.Fatalf("report %+v, want 35 records and 4 checkpoints verified", rep)
				}
				return
			}
			if rep.OK() || rep.BadSeq != tc.wantSeq {
				t.Fatalf("report %+v, want a failure at seq %d", rep, tc.wantSeq)
			}
			t.Logf("seq %d: %s", rep.BadSeq, rep.Problem)
		})
	}
}

// rechain rewrites record from (its purpose) and every record after it
// into a valid chain, and re-signs every checkpoint with k: a consistent
// forgery but for the key.
func rechain(t *testing.T, pool *pgxpool.Pool, from uint64, k ed25519.PrivateKey) {
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit
	var prevB []byte
	if err := tx.QueryRow(ctx, `SELECT hash FROM audit_records WHERE seq = $1`, from-1).Scan(&prevB); err != nil {
		t.Fatal(err)
	}
	prev := [32]byte(prevB)
	rows, err := tx.Query(ctx, `SELECT seq, stored FROM audit_records WHERE seq >= $1 ORDER BY seq`, from)
	if err != nil {
		t.Fatal(err)
	}
	type rec struct {
		seq uint64
		raw []byte
	}
	var recs []rec
	for rows.Next() {
		var r rec
		if err := rows.Scan(&r.seq, &r.raw); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	rows.Close()
	heads := map[uint64][32]byte{}
	for _, r := range recs {
		s, err := seal.Unseal(r.raw)
		if err != nil {
			t.Fatal(err)
		}
		if r.seq == from {
			s.Record.Purpose = "forged"
		}
		_, raw, hash, err := seal.Seal("", r.seq, prev, s.Record)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `UPDATE audit_records SET stored = $2, prev = $3, hash = $4 WHERE seq = $1`, r.seq, raw, prev[:], hash[:]); err != nil {
			t.Fatal(err)
		}
		heads[r.seq], prev = hash, hash
	}
	crows, err := tx.Query(ctx, `SELECT stored FROM audit_checkpoints`)
	if err != nil {
		t.Fatal(err)
	}
	var cps []seal.Checkpoint
	for crows.Next() {
		var raw []byte
		var c seal.Checkpoint
		if err := crows.Scan(&raw); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			t.Fatal(err)
		}
		cps = append(cps, c)
	}
	crows.Close()
	for _, c := range cps {
		if h, ok := heads[c.Seq]; ok {
			c.Head = seal.Hex(h)
		}
		c, err := seal.Sign(ctx, seal.Ed25519Signer(k), c)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `UPDATE audit_checkpoints SET stored = $2 WHERE seq = $1`, c.Seq, raw); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestBrokerRoleCannotRewriteHistory: a login that is only a member of
// relais_broker appends and reads through the storage, but UPDATE, DELETE
// and TRUNCATE of audit rows, direct partition access and a recent purge
// are refused by the database.
func TestBrokerRoleCannotRewriteHistory(t *testing.T) {
	c := pgtest.Shared(t)
	dsn := migrated(t, c)
	brokerDSN := c.NewLogin(t, dsn, "relais_broker")
	pool := connect(t, brokerDSN)
	k := key(t)
	writeLog(t, pool, 12, k) // INSERT (and partitions) as the broker
	st := open(t, pool, "")
	got, err := st.Query(context.Background(), audit.Filter{})
	if err != nil || len(got) != 12 {
		t.Fatalf("query as the broker: %d records, %v", len(got), err)
	}
	if rep := verify(t, st, k.Public().(ed25519.PublicKey)); !rep.OK() || rep.Records != 12 {
		t.Fatalf("export as the broker: %+v", rep)
	}
	for _, sql := range []string{
		`UPDATE audit_records SET code = 'OK' WHERE seq = 3`,
		`DELETE FROM audit_records WHERE seq = 3`,
		`TRUNCATE audit_records`,
		`UPDATE audit_checkpoints SET stored = stored`,
		`DELETE FROM audit_checkpoints`,
		`TRUNCATE audit_checkpoints`,
		`DELETE FROM audit_records_y2026m11`,
		`DROP TABLE audit_records_y2026m11`,
		`ALTER TABLE audit_records DETACH PARTITION audit_records_y2026m11`,
	} {
		_, err := pool.Exec(context.Background(), sql)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || (pe.Code != "42501" && !strings.Contains(pe.Message, "must be owner")) {
			t.Errorf("%s as relais_broker: %v, want permission denied", sql, err)
		}
	}
	_, err = pool.Exec(context.Background(), `SELECT relais_audit_purge(now() - interval '29 days', '{}')`)
	if err == nil || !strings.Contains(err.Error(), "younger than 30 days") {
		t.Errorf("recent purge as relais_broker: %v, want a refusal", err)
	}
	var n int
	if err := connect(t, dsn).QueryRow(context.Background(), `SELECT count(*) FROM audit_records`).Scan(&n); err != nil || n != 12 {
		t.Fatalf("after the refusals: %d records (%v), want 12", n, err)
	}

	// Retention goes through the SECURITY DEFINER function: the broker's
	// role purges an old chain of its own.
	ctx := context.Background()
	other := open(t, pool, "old")
	l, err := auditlog.Open(other, auditlog.Options{Signer: seal.Ed25519Signer(k), Chain: "old"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		r := record(i)
		r.Time = time.Date(2024, 5, i, 0, 0, 0, 0, time.UTC)
		if err := l.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	purged, err := other.Purge(ctx, time.Date(2024, 7, 1, 0, 0, 0, 0, time.UTC), func(_ string, seq uint64, head string) (seal.Checkpoint, error) {
		return seal.Sign(ctx, seal.Ed25519Signer(k), seal.Checkpoint{Chain: "old", Seq: seq, Head: head, Time: time.Now(), Boundary: true})
	})
	if err != nil || purged != 3 {
		t.Fatalf("purge as relais_broker: %d, %v", purged, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestRecordsFindTheirPartition: records of months that have no
// partition yet (old, far ahead, across a month boundary) are committed
// with their partition created in the same transaction.
func TestRecordsFindTheirPartition(t *testing.T) {
	pool := connect(t, migrated(t, pgtest.Shared(t)))
	k := key(t)
	clock := audittest.NewClock(t0)
	l, err := auditlog.Open(open(t, pool, ""), auditlog.Options{Signer: seal.Ed25519Signer(k), Clock: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	times := []time.Time{
		time.Date(2019, 3, 31, 23, 59, 59, 999999999, time.UTC), // rounds into March, not April
		time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2031, 1, 1, 0, 30, 0, 0, time.FixedZone("CET", 3600)), // December 2030 in UTC
	}
	for i, tm := range times {
		r := record(i)
		r.Time = tm
		clock.Set(tm)
		if err := l.Append(context.Background(), r); err != nil {
			t.Fatalf("append at %s: %v", tm, err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rows, err := pool.Query(context.Background(), `SELECT tableoid::regclass::text FROM audit_records ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"audit_records_y2019m03", "audit_records_y2031m01", "audit_records_y2030m12"}
	if strings.Join(parts, " ") != strings.Join(want, " ") {
		t.Fatalf("partitions %v, want %v", parts, want)
	}
	if rep := verify(t, open(t, pool, ""), k.Public().(ed25519.PublicKey)); !rep.OK() || rep.Records != 3 {
		t.Fatalf("verify: %+v", rep)
	}
}

// TestPurgeRefusals: retention through the storage refuses a cutoff
// younger than 30 days and a purge that would drop another chain's
// records without its boundary; neither changes anything.
func TestPurgeRefusals(t *testing.T) {
	ctx := context.Background()
	pool := connect(t, migrated(t, pgtest.Shared(t)))
	k := key(t)
	signer := seal.Ed25519Signer(k)
	old := time.Now().UTC().AddDate(0, -14, 0)
	for _, chain := range []string{"a", "b"} {
		l, err := auditlog.Open(open(t, pool, chain), auditlog.Options{Signer: signer, Chain: chain})
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 4; i++ {
			r := record(i)
			r.Time = old.Add(time.Duration(i) * time.Minute)
			if i > 2 {
				r.Time = time.Now()
			}
			if err := l.Append(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	st := open(t, pool, "a")
	before := verify(t, st, k.Public().(ed25519.PublicKey))
	// A boundary signed for the wrong chain is refused, whole.
	wrongChain := func(_ string, seq uint64, head string) (seal.Checkpoint, error) {
		return seal.Sign(ctx, signer, seal.Checkpoint{Chain: "a", Seq: seq, Head: head, Time: time.Now(), Boundary: true})
	}
	if _, err := st.Purge(ctx, old.AddDate(0, 2, 0), wrongChain); err == nil || !strings.Contains(err.Error(), "is not the one of record") {
		t.Fatalf("purge with a boundary of the wrong chain: %v", err)
	}
	admin := connect(t, migrated(t, pgtest.Shared(t)))
	stRecent := open(t, admin, "")
	l, err := auditlog.Open(stRecent, auditlog.Options{Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	r := record(1)
	now := time.Now().UTC()
	r.Time = time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC).Add(-time.Hour) // last month: something to drop
	if err := l.Append(ctx, r); err != nil {
		t.Fatal(err)
	}
	if _, err := stRecent.Purge(ctx, time.Now().Add(24*time.Hour), func(_ string, seq uint64, head string) (seal.Checkpoint, error) {
		return seal.Sign(ctx, signer, seal.Checkpoint{Seq: seq, Head: head, Time: time.Now(), Boundary: true})
	}); err == nil || !strings.Contains(err.Error(), "younger than 30 days") {
		t.Fatalf("purge with a recent cutoff: %v", err)
	}
	if h, err := stRecent.Head(ctx); err != nil || h.Seq != 1 || h.LastCheckpoint != 0 {
		t.Fatalf("head after the refused purge: %+v, %v", h, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if after := verify(t, st, k.Public().(ed25519.PublicKey)); !after.OK() || after.Records != before.Records || after.Records != 4 {
		t.Fatalf("after the refused purges: %+v, before %+v", after, before)
	}
	// The retention leader purges every chain, signing each boundary with
	// the key all replicas share: both chains lose their old records and
	// still verify.
	sign := func(chain string, seq uint64, head string) (seal.Checkpoint, error) {
		return seal.Sign(ctx, signer, seal.Checkpoint{Chain: chain, Seq: seq, Head: head, Time: time.Now(), Boundary: true})
	}
	if n, err := st.Purge(ctx, old.AddDate(0, 2, 0), sign); err != nil || n != 4 {
		t.Fatalf("purge of both chains: %d records, %v; want 4", n, err)
	}
	var all []seal.Entry
	if err := pglog.ExportAll(ctx, pool, func(e seal.Entry) error { all = append(all, e); return nil }); err != nil {
		t.Fatal(err)
	}
	v := seal.NewVerifier(k.Public().(ed25519.PublicKey))
	for _, e := range all {
		v.Add(e)
	}
	if rep := v.Report(); !rep.OK() || rep.Records != 4 || len(rep.Chains) != 2 {
		t.Fatalf("both chains after the purge: %+v", rep)
	}
}

// TestNextMonthIsPreparedOffTheCommitPath: after a commit, next month's
// partition is created in the background; while a long reader (an
// export) holds the table, that attempt gives up and appends go on
// unblocked, and a later commit tries again.
func TestNextMonthIsPreparedOffTheCommitPath(t *testing.T) {
	ctx := context.Background()
	pool := connect(t, migrated(t, pgtest.Shared(t)))
	var mu sync.Mutex
	clock := time.Date(2031, 6, 10, 12, 0, 0, 0, time.UTC)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	st, err := pglog.Open(ctx, pool, pglog.Options{Clock: now})
	if err != nil {
		t.Fatal(err)
	}
	l, err := auditlog.Open(st, auditlog.Options{Signer: seal.Ed25519Signer(key(t)), Clock: now})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	exists := func(part string) bool {
		var ok bool
		if err := pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", part).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	appendAt := func(i int) {
		t.Helper()
		r := record(i)
		r.Time = now()
		if err := l.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if !exists("audit_records_y2031m06") || !exists("audit_records_y2031m07") {
		t.Fatal("Open did not prepare this month and the next")
	}
	advance(31 * 24 * time.Hour) // July 11th: August is next
	reader, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reader.Exec(ctx, "SELECT count(*) FROM audit_records"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := 1; i <= 20; i++ {
		appendAt(i)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("20 appends took %s while a reader held the table", d)
	}
	if exists("audit_records_y2031m08") {
		t.Fatal("next month's partition was created while a reader held the table")
	}
	if err := reader.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	advance(11 * time.Second) // past the retry interval
	appendAt(21)
	waitFor(t, 10*time.Second, "next month's partition", func() bool { return exists("audit_records_y2031m08") })
}

// TestPurgeWithRecordsOutOfTimeOrder: a later record may carry an earlier
// time (group commit orders by arrival). Retention keeps a month holding
// a record sealed after a younger one, until the younger one's month goes
// too; then the chain, empty, goes on from the boundary and verifies.
func TestPurgeWithRecordsOutOfTimeOrder(t *testing.T) {
	ctx := context.Background()
	pool := connect(t, migrated(t, pgtest.Shared(t)))
	k := key(t)
	signer := seal.Ed25519Signer(k)
	times := []time.Time{
		time.Date(2025, 2, 1, 0, 0, 0, 1000, time.UTC),  // seq 1: February
		time.Date(2025, 1, 31, 23, 59, 59, 0, time.UTC), // seq 2: January, sealed after February
	}
	l, err := auditlog.Open(open(t, pool, ""), auditlog.Options{Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	for i, tm := range times {
		r := record(i + 1)
		r.Time = tm
		if err := l.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	st := open(t, pool, "")
	sign := func(_ string, seq uint64, head string) (seal.Checkpoint, error) {
		return seal.Sign(ctx, signer, seal.Checkpoint{Seq: seq, Head: head, Time: time.Now(), Boundary: true})
	}
	if n, err := st.Purge(ctx, time.Date(2025, 2, 15, 0, 0, 0, 0, time.UTC), sign); err != nil || n != 0 {
		t.Fatalf("purge of January alone: %d, %v; want January kept (record 2 follows record 1)", n, err)
	}
	if n, err := st.Purge(ctx, time.Date(2025, 3, 15, 0, 0, 0, 0, time.UTC), sign); err != nil || n != 2 {
		t.Fatalf("purge of January and February: %d, %v; want both records", n, err)
	}
	if h, err := st.Head(ctx); err != nil || h.Seq != 2 || h.LastCheckpoint != 2 {
		t.Fatalf("head after the purge: %+v, %v; want the boundary at 2", h, err)
	}
	l, err = auditlog.Open(st, auditlog.Options{Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(ctx, record(3)); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep := verify(t, open(t, pool, ""), k.Public().(ed25519.PublicKey))
	if !rep.OK() || rep.FirstSeq != 3 || rep.LastSeq != 3 || rep.Chains[0].Boundary != 2 {
		t.Fatalf("verify after the purge: %+v", rep)
	}
}

// TestExportAllCoversEveryChain: the export of the whole database holds
// every replica's chain, and the verifier names the chain and seq of a
// record modified in one of them.
func TestExportAllCoversEveryChain(t *testing.T) {
	ctx := context.Background()
	pool := connect(t, migrated(t, pgtest.Shared(t)))
	k := key(t)
	for chain, n := range map[string]int{"replica-a": 7, "replica-b": 12} {
		l, err := auditlog.Open(open(t, pool, chain), auditlog.Options{Signer: seal.Ed25519Signer(k), Chain: chain, CheckpointEvery: 5})
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= n; i++ {
			if err := l.Append(ctx, record(i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	exportAll := func() *seal.Report {
		var w strings.Builder
		sw := seal.NewWriter(&w)
		if err := pglog.ExportAll(ctx, pool, sw.Write); err != nil {
			t.Fatal(err)
		}
		rep, err := seal.VerifyExport(strings.NewReader(w.String()), k.Public().(ed25519.PublicKey))
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	if rep := exportAll(); !rep.OK() || rep.Records != 19 || len(rep.Chains) != 2 || rep.Chains[1].Records != 12 {
		t.Fatalf("export of every chain: %+v", rep)
	}
	// Reads of every chain: the citizen report of a subject served by
	// both replicas.
	all, err := pglog.Open(ctx, pool, pglog.Options{Chain: "replica-a", AllChains: true})
	if err != nil {
		t.Fatal(err)
	}
	subject := record(1).Subject // records 1, 4, 7, 10 of each chain
	for _, tc := range []struct {
		st   *pglog.Storage
		want int
	}{{all, 3 + 4}, {open(t, pool, "replica-a"), 3}, {open(t, pool, "replica-b"), 4}} {
		got, err := tc.st.Subject(ctx, subject)
		if err != nil || len(got) != tc.want {
			t.Fatalf("subject: %d records, %v; want %d", len(got), err, tc.want)
		}
	}
	if got, err := all.Query(ctx, audit.Filter{}); err != nil || len(got) != 19 {
		t.Fatalf("query of every chain: %d records, %v", len(got), err)
	}
	exec(t, pool, `UPDATE audit_records SET stored = convert_to(replace(convert_from(stored, 'UTF8'), 'req-9', 'req-0'), 'UTF8') WHERE chain = 'replica-b' AND seq = 9`)
	if rep := exportAll(); rep.OK() || rep.Chain != "replica-b" || rep.BadSeq != 9 {
		t.Fatalf("export with a record modified in replica-b: %+v", rep)
	}
}
