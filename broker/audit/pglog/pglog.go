// Package pglog is the audit log's PostgreSQL storage (auditlog.Storage):
// the sealed records of a chain in a table partitioned by month, the
// signed checkpoints beside them, for installations where several relaisd
// replicas share one database and a lost machine must not lose the trace.
//
// The schema is migration 00003_audit.sql (internal/pgdb). The broker's
// role may INSERT and SELECT audit rows and nothing more: month partitions
// are created through a SECURITY DEFINER function, in the transaction of
// the first commit that needs one, so no record ever lacks its partition;
// retention drops whole months through another, which refuses a cutoff
// younger than 30 days and writes the signed boundary checkpoint.
//
// A commit is one round trip: one pipelined transaction that takes the
// chain's advisory lock, checks that the database's head is the writer's
// (two writers on one chain, or a batch replayed after an unknown outcome,
// fail instead of forking the chain), inserts every record with one
// multi-row INSERT and commits with synchronous_commit on. The stored
// bytes are the sealed JSON exactly as seal produced them (bytea), so an
// export verifies from them; the other columns are copies for the indexes.
package pglog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/audit/auditlog"
	"github.com/relais-broker/relais/broker/audit/seal"
	"github.com/relais-broker/relais/internal/pgdb"
)

// Options configure a Storage.
type Options struct {
	// Chain is the chain this storage writes and reads ("" for a single
	// broker; one per replica when several write).
	Chain string
	// AllChains makes Query and Subject read every chain of the database
	// (every replica's records, oldest first by time), not only Chain:
	// for the operator's queries and the citizen report when several
	// replicas write. Export stays one chain (ExportAll has them all).
	AllChains bool
	// Clock gives the months whose partitions are prepared ahead: this
	// one and the next at Open, the next after each commit (in the
	// background); time.Now when nil.
	Clock func() time.Time
}

// Storage is the PostgreSQL audit storage of one chain. Safe for
// concurrent use; auditlog.Log is its only writer in a process.
type Storage struct {
	pool      *pgxpool.Pool
	chain     string
	allChains bool
	owned     bool // Close closes the pool

	clock func() time.Time

	mu         sync.Mutex
	months     map[int64]bool // UTC month starts (unix) known to have a partition
	aheadBusy  bool           // a partition of next month is being created
	aheadTried time.Time

	// bg runs the creation of next month's partition off the commit path;
	// Close cancels and waits for it.
	bg     sync.WaitGroup
	bgCtx  context.Context
	bgStop context.CancelFunc
}

var _ auditlog.Storage = (*Storage)(nil)

// SQLSTATEs raised by the migration's functions.
const (
	codeHeadMismatch = "RA001"
	codeTooRecent    = "RA002"
	codeBadBoundary  = "RA003"
)

// Open returns the storage of chain o.Chain in the database behind pool,
// whose schema must be migrated (pgdb.Migrate). It prepares this month's
// and next month's partitions. Close leaves the pool open: the caller
// owns it.
func Open(ctx context.Context, pool *pgxpool.Pool, o Options) (*Storage, error) {
	if pool == nil {
		return nil, errors.New("pglog: a connection pool is required")
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	s := &Storage{pool: pool, chain: o.Chain, allChains: o.AllChains, clock: o.Clock, months: map[int64]bool{}}
	now := o.Clock().UTC()
	months := []time.Time{monthOf(now), monthOf(now).AddDate(0, 1, 0)}
	switch err := s.ensureAhead(ctx, months); {
	case isLockTimeout(err):
		// A long reader holds the table: commits create what they need.
	case err != nil:
		return nil, fmt.Errorf("pglog: prepare the month partitions (is the schema migrated?): %w", err)
	default:
		s.know(months)
	}
	s.bgCtx, s.bgStop = context.WithCancel(context.Background())
	return s, nil
}

// ensureAhead creates partitions outside a commit. Creating one locks the
// table exclusively, so it gives up quickly (lock_timeout) rather than
// queue every append behind a long reader (an export).
func (s *Storage) ensureAhead(ctx context.Context, months []time.Time) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit: no-op
	if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '200ms'"); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "SELECT relais_audit_ensure_partitions($1)", months); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

func isLockTimeout(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "55P03" // lock_not_available
}

// prepareNextMonth makes sure, in the background, that next month has its
// partition before its first record: at most one attempt at a time, one
// every 10 seconds.
func (s *Storage) prepareNextMonth() {
	now := s.clock()
	next := monthOf(now).AddDate(0, 1, 0)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.months[next.Unix()] || s.aheadBusy || now.Sub(s.aheadTried) < 10*time.Second || s.bgCtx.Err() != nil {
		return
	}
	s.aheadBusy, s.aheadTried = true, now
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		ctx, cancel := context.WithTimeout(s.bgCtx, 5*time.Second)
		err := s.ensureAhead(ctx, []time.Time{next})
		cancel()
		s.mu.Lock()
		defer s.mu.Unlock()
		s.aheadBusy = false
		if err == nil {
			s.months[next.Unix()] = true
		}
	}()
}

// OpenDSN is Open on a pool of its own (pgdb.Connect), which Close
// closes: for tools that open only the audit log.
func OpenDSN(ctx context.Context, dsn string, o Options) (*Storage, error) {
	pool, err := pgdb.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	s, err := Open(ctx, pool, o)
	if err != nil {
		pool.Close()
		return nil, err
	}
	s.owned = true
	return s, nil
}

// Close implements auditlog.Storage; it closes the pool only if OpenDSN
// opened it.
func (s *Storage) Close() error {
	s.mu.Lock()
	s.bgStop()
	s.mu.Unlock()
	s.bg.Wait()
	if s.owned {
		s.pool.Close()
	}
	return nil
}

// monthOf is the start of t's UTC month.
func monthOf(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

func (s *Storage) know(months []time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range months {
		s.months[m.Unix()] = true
	}
}

func (s *Storage) forget() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.months)
}

// missing returns the months of times that no partition is known for.
func (s *Storage) missing(times []time.Time) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []time.Time
	seen := map[int64]bool{}
	for _, t := range times {
		m := monthOf(t.Truncate(time.Microsecond)) // as stored
		if s.months[m.Unix()] || seen[m.Unix()] {
			continue
		}
		seen[m.Unix()] = true
		out = append(out, m)
	}
	return out
}

// Head implements auditlog.Storage.
func (s *Storage) Head(ctx context.Context) (seal.Head, error) {
	var h seal.Head
	var seq, last int64
	var hash []byte
	err := s.pool.QueryRow(ctx, "SELECT seq, hash, last_checkpoint FROM relais_audit_head($1)", s.chain).Scan(&seq, &hash, &last)
	if err != nil {
		return h, fmt.Errorf("pglog: read the chain head: %w", err)
	}
	if len(hash) != len(h.Hash) {
		return h, fmt.Errorf("pglog: the chain head hash has %d bytes", len(hash))
	}
	h.Seq, h.LastCheckpoint = uint64(seq), uint64(last)
	copy(h.Hash[:], hash)
	return h, nil
}

// rows are a batch's records as inserted, by column.
type rows struct {
	seq                             []int64
	time                            []time.Time
	prev, hash, stored              [][]byte
	consumer, subject, method, code []string
	// discloseAfter is NULL for an access disclosed at once.
	discloseAfter []pgtype.Timestamptz
}

// prepare checks a batch before anything is sent: a refused batch changes
// nothing.
func (s *Storage) prepare(recs []seal.Sealed, cps []seal.Checkpoint) (rows, cpRows, error) {
	var r rows
	for i, rec := range recs {
		switch {
		case rec.Chain != s.chain:
			return r, cpRows{}, fmt.Errorf("pglog: record %d belongs to chain %q, this storage writes chain %q", rec.Seq, rec.Chain, s.chain)
		case rec.Seq == 0:
			return r, cpRows{}, errors.New("pglog: record sequence numbers start at 1")
		case i > 0 && rec.Seq != recs[i-1].Seq+1:
			return r, cpRows{}, fmt.Errorf("pglog: record %d does not follow record %d in the batch", rec.Seq, recs[i-1].Seq)
		case len(rec.Raw) == 0:
			return r, cpRows{}, fmt.Errorf("pglog: record %d has no stored bytes (seal it first)", rec.Seq)
		}
		prev, err := seal.ParseHash(rec.Prev)
		if err != nil {
			return r, cpRows{}, fmt.Errorf("pglog: record %d: prev: %w", rec.Seq, err)
		}
		hash, err := seal.ParseHash(rec.Hash)
		if err != nil {
			return r, cpRows{}, fmt.Errorf("pglog: record %d: hash: %w", rec.Seq, err)
		}
		if i > 0 && rec.Prev != recs[i-1].Hash {
			return r, cpRows{}, fmt.Errorf("pglog: record %d does not follow the hash of record %d", rec.Seq, recs[i-1].Seq)
		}
		r.seq = append(r.seq, int64(rec.Seq))
		r.time = append(r.time, rec.Record.Time)
		r.prev = append(r.prev, prev[:])
		r.hash = append(r.hash, hash[:])
		r.stored = append(r.stored, rec.Raw)
		r.consumer = append(r.consumer, rec.Record.Consumer)
		r.subject = append(r.subject, rec.Record.Subject)
		r.method = append(r.method, rec.Record.Method)
		r.code = append(r.code, rec.Record.Code)
		da := rec.Record.DiscloseAfter
		r.discloseAfter = append(r.discloseAfter, pgtype.Timestamptz{Time: da, Valid: !da.IsZero()})
	}
	var cr cpRows
	for _, c := range cps {
		if c.Chain != s.chain {
			return r, cpRows{}, fmt.Errorf("pglog: checkpoint %d belongs to chain %q, this storage writes chain %q", c.Seq, c.Chain, s.chain)
		}
		head, err := seal.ParseHash(c.Head)
		if err != nil {
			return r, cr, fmt.Errorf("pglog: checkpoint %d: head: %w", c.Seq, err)
		}
		raw, err := json.Marshal(c)
		if err != nil {
			return r, cr, fmt.Errorf("pglog: encode checkpoint %d: %w", c.Seq, err)
		}
		cr.seq = append(cr.seq, int64(c.Seq))
		cr.time = append(cr.time, c.Time)
		cr.head = append(cr.head, head[:])
		cr.boundary = append(cr.boundary, c.Boundary)
		cr.stored = append(cr.stored, raw)
	}
	return r, cr, nil
}

// cpRows are a batch's checkpoints as inserted, by column.
type cpRows struct {
	seq          []int64
	time         []time.Time
	head, stored [][]byte
	boundary     []bool
}

const insertRecords = `INSERT INTO audit_records (chain, seq, time, prev, hash, consumer, subject, method, code, stored, disclose_after)
SELECT $1, * FROM unnest($2::bigint[], $3::timestamptz[], $4::bytea[], $5::bytea[], $6::text[], $7::text[], $8::text[], $9::text[], $10::bytea[], $11::timestamptz[])`

// insertCheckpoints keeps the checkpoint already at a seq: the head was
// checked (relais_audit_expect_head), so a second one there says nothing
// new — the case of a Log's checkpoint at the seq of a retention boundary,
// which must stay a boundary.
const insertCheckpoints = `INSERT INTO audit_checkpoints (chain, seq, time, head, boundary, stored)
SELECT $1, * FROM unnest($2::bigint[], $3::timestamptz[], $4::bytea[], $5::boolean[], $6::bytea[])
ON CONFLICT (chain, seq) DO NOTHING`

// Commit implements auditlog.Storage: one pipelined transaction, durable
// (synchronous_commit on) when it returns nil.
func (s *Storage) Commit(ctx context.Context, recs []seal.Sealed, cps []seal.Checkpoint) error {
	if len(recs) == 0 && len(cps) == 0 {
		return nil
	}
	r, cr, err := s.prepare(recs, cps)
	if err != nil {
		return err
	}
	expSeq, expHash, err := expectedHead(recs, cps)
	if err != nil {
		return err
	}
	months := s.missing(r.time)

	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("pglog: commit: %w", err)
	}
	defer conn.Release()
	b := &pgx.Batch{}
	b.Queue("BEGIN ISOLATION LEVEL READ COMMITTED")
	b.Queue("SET LOCAL synchronous_commit TO on")
	if len(months) > 0 {
		// Before any lock on the table: creating a partition locks it.
		b.Queue("SELECT relais_audit_ensure_partitions($1)", months)
	}
	b.Queue("SELECT pg_advisory_xact_lock(hashtext('relais.audit.chain'), hashtext($1))", s.chain)
	b.Queue("SELECT relais_audit_expect_head($1, $2, $3)", s.chain, int64(expSeq), expHash[:])
	if len(recs) > 0 {
		b.Queue(insertRecords, s.chain, r.seq, r.time, r.prev, r.hash, r.consumer, r.subject, r.method, r.code, r.stored, r.discloseAfter)
	}
	if len(cps) > 0 {
		b.Queue(insertCheckpoints, s.chain, cr.seq, cr.time, cr.head, cr.boundary, cr.stored)
	}
	b.Queue("COMMIT")
	err = conn.SendBatch(ctx, b).Close()
	if err != nil {
		s.forget()
		if st := conn.Conn().PgConn().TxStatus(); !conn.Conn().IsClosed() && st != 'I' {
			// The transaction failed mid-way: end it before the
			// connection goes back to the pool.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if _, rerr := conn.Exec(rctx, "ROLLBACK"); rerr != nil {
				conn.Conn().Close(rctx) //nolint:errcheck // the pool drops it
			}
			cancel()
		}
		return commitError(err)
	}
	s.know(months)
	s.prepareNextMonth()
	return nil
}

// expectedHead checks the batch's checkpoints against its records and
// returns the head the database must have before the batch: a checkpoint
// states the head at its seq, which is a record of the batch or the head
// before it; a boundary checkpoint (a copied log that starts after a
// retention boundary) may only open an empty chain.
func expectedHead(recs []seal.Sealed, cps []seal.Checkpoint) (uint64, [32]byte, error) {
	var seq uint64
	var hash [32]byte
	switch {
	case len(cps) > 0 && cps[0].Boundary:
		// The chain must be empty; the records follow the boundary.
		b := cps[0]
		if len(recs) > 0 && (recs[0].Seq != b.Seq+1 || recs[0].Prev != b.Head) {
			return 0, hash, fmt.Errorf("pglog: the records do not follow the boundary checkpoint at seq %d", b.Seq)
		}
	case len(recs) > 0:
		seq = recs[0].Seq - 1
		hash, _ = seal.ParseHash(recs[0].Prev) // checked by prepare
	default:
		seq = cps[0].Seq
		hash, _ = seal.ParseHash(cps[0].Head)
	}
	heads := map[uint64]string{seq: seal.Hex(hash)}
	if len(cps) > 0 && cps[0].Boundary {
		heads = map[uint64]string{cps[0].Seq: cps[0].Head}
	}
	for _, r := range recs {
		heads[r.Seq] = r.Hash
	}
	for i, c := range cps {
		if c.Boundary && i > 0 {
			return 0, hash, fmt.Errorf("pglog: boundary checkpoint at seq %d: a boundary only opens an empty chain", c.Seq)
		}
		if h, ok := heads[c.Seq]; !ok || h != c.Head {
			return 0, hash, fmt.Errorf("pglog: checkpoint at seq %d does not match the chain", c.Seq)
		}
	}
	return seq, hash, nil
}

// commitError names a refusal of the database in the storage's terms.
func commitError(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case codeHeadMismatch:
			return fmt.Errorf("pglog: commit refused, another writer moved the chain: %s", pe.Message)
		case "23505": // unique_violation
			return fmt.Errorf("pglog: commit refused, the batch is already stored (%s)", pe.ConstraintName)
		}
	}
	return fmt.Errorf("pglog: commit: %w", err)
}

// Query implements auditlog.Storage: this chain's records matching f, in
// seq order (append order); with AllChains every chain's, by time.
func (s *Storage) Query(ctx context.Context, f audit.Filter) ([]audit.Record, error) {
	if f.Limit <= 0 {
		f.Limit = audit.DefaultLimit
	}
	q, args := s.querySQL(f)
	for limit := f.Limit; ; limit *= 2 {
		out, n, err := s.collect(ctx, q, append(args, limit), f)
		if err != nil || n < limit || len(out) >= f.Limit {
			if len(out) > f.Limit {
				out = out[:f.Limit]
			}
			return out, err
		}
		// Some rows fell in the microsecond of a bound but not its
		// nanoseconds: ask for more.
	}
}

// querySQL is Query's statement for f and its arguments, the limit last
// (not included).
func (s *Storage) querySQL(f audit.Filter) (string, []any) {
	where := []string{"true"}
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	order := "time, chain, seq"
	if !s.allChains {
		add("chain = $%d", s.chain)
		order = "seq"
	}
	if f.Consumer != "" {
		add("consumer = $%d", f.Consumer)
	}
	if f.Method != "" {
		add("method = $%d", f.Method)
	}
	if f.Code != "" {
		add("code = $%d", f.Code)
	}
	if f.DeferredOnly {
		where = append(where, "disclose_after IS NOT NULL") // the partial index audit_records_deferred
	}
	// The column holds microseconds (truncated); the exact nanosecond
	// test is f.Match on the decoded record.
	if !f.From.IsZero() {
		add("time >= $%d", f.From.Truncate(time.Microsecond))
	}
	if !f.To.IsZero() {
		add("time <= $%d", f.To.Truncate(time.Microsecond))
	}
	return "SELECT stored FROM audit_records WHERE " + strings.Join(where, " AND ") + " ORDER BY " + order + " LIMIT $" + fmt.Sprint(len(args)+1), args
}

// collect runs a query of stored bytes and returns the records that pass
// f, and how many rows came.
func (s *Storage) collect(ctx context.Context, q string, args []any, f audit.Filter) ([]audit.Record, int, error) {
	var out []audit.Record
	n := 0
	rs, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, 0, fmt.Errorf("pglog: query: %w", err)
	}
	defer rs.Close()
	for rs.Next() {
		n++
		var raw []byte
		if err := rs.Scan(&raw); err != nil {
			return nil, n, fmt.Errorf("pglog: query: %w", err)
		}
		sl, err := seal.Unseal(raw)
		if err != nil {
			return nil, n, err
		}
		if f.Match(sl.Record) {
			out = append(out, sl.Record)
		}
	}
	if err := rs.Err(); err != nil {
		return nil, n, fmt.Errorf("pglog: query: %w", err)
	}
	return out, n, nil
}

// subjectQuery reads a subject's records of one chain, subjectAllQuery
// of every chain; the test that the subject is not empty lets a generic
// plan (a prepared statement) use the partial index.
const (
	subjectQuery    = "SELECT stored FROM audit_records WHERE subject = $1 AND subject <> '' AND chain = $2 ORDER BY seq"
	subjectAllQuery = "SELECT stored FROM audit_records WHERE subject = $1 AND subject <> '' ORDER BY time, chain, seq"
)

// Subject implements auditlog.Storage through the (subject, time) index.
func (s *Storage) Subject(ctx context.Context, pseudonym string) ([]audit.Record, error) {
	if pseudonym == "" {
		return nil, nil // admin records have none; the index skips them
	}
	if s.allChains {
		out, _, err := s.collect(ctx, subjectAllQuery, []any{pseudonym}, audit.Filter{})
		return out, err
	}
	out, _, err := s.collect(ctx, subjectQuery, []any{pseudonym, s.chain}, audit.Filter{})
	return out, err
}

// Export implements auditlog.Storage from one REPEATABLE READ snapshot:
// the boundary checkpoint first, then the records above it in seq order,
// each checkpoint right after the record of its seq.
func (s *Storage) Export(ctx context.Context, fn func(seal.Entry) error) error {
	return snapshot(ctx, s.pool, func(tx pgx.Tx) error { return exportChain(ctx, tx, s.chain, fn) })
}

// ExportAll exports every chain of the database (the log of every
// replica) from one snapshot, chain after chain in the order of their ids,
// each as Export does: what `relaisctl audit export` writes for a
// PostgreSQL log, and what the verifier checks chain by chain.
func ExportAll(ctx context.Context, pool *pgxpool.Pool, fn func(seal.Entry) error) error {
	return snapshot(ctx, pool, func(tx pgx.Tx) error {
		// Every chain has records or, fully purged, a boundary checkpoint.
		rows, err := tx.Query(ctx, `WITH RECURSIVE t AS (
			(SELECT chain FROM audit_records ORDER BY chain LIMIT 1)
			UNION ALL SELECT (SELECT r.chain FROM audit_records r WHERE r.chain > t.chain ORDER BY r.chain LIMIT 1) FROM t WHERE t.chain IS NOT NULL)
			SELECT chain FROM t WHERE chain IS NOT NULL UNION SELECT DISTINCT chain FROM audit_checkpoints ORDER BY 1`)
		if err != nil {
			return fmt.Errorf("pglog: export: list the chains: %w", err)
		}
		chains, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("pglog: export: list the chains: %w", err)
		}
		for _, c := range chains {
			if err := exportChain(ctx, tx, c, fn); err != nil {
				return err
			}
		}
		return nil
	})
}

// snapshot runs fn in a read-only REPEATABLE READ transaction: one
// consistent view of the log while appends go on.
func snapshot(ctx context.Context, pool *pgxpool.Pool, fn func(tx pgx.Tx) error) error {
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("pglog: export: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read only
	// An export of a large log outlasts the pool's statement timeout; the
	// caller's ctx bounds it instead.
	if _, err := tx.Exec(ctx, "SET LOCAL statement_timeout = 0"); err != nil {
		return fmt.Errorf("pglog: export: %w", err)
	}
	return fn(tx)
}

// exportChain streams one chain: the boundary checkpoint first, then the
// records above it in seq order, each checkpoint right after the record
// of its seq.
func exportChain(ctx context.Context, tx pgx.Tx, chain string, fn func(seal.Entry) error) error {
	// Checkpoints are few (one per thousand records): read them first,
	// the one connection then streams the records.
	var cps []seal.Checkpoint
	crs, err := tx.Query(ctx, "SELECT stored FROM audit_checkpoints WHERE chain = $1 ORDER BY seq", chain)
	if err != nil {
		return fmt.Errorf("pglog: export checkpoints: %w", err)
	}
	for crs.Next() {
		var raw []byte
		var c seal.Checkpoint
		if err := crs.Scan(&raw); err != nil {
			crs.Close()
			return fmt.Errorf("pglog: export checkpoints: %w", err)
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			crs.Close()
			return fmt.Errorf("pglog: checkpoint is unreadable: %w", err)
		}
		cps = append(cps, c)
	}
	crs.Close()
	if err := crs.Err(); err != nil {
		return fmt.Errorf("pglog: export checkpoints: %w", err)
	}
	var boundary uint64
	for _, c := range cps {
		if c.Boundary && c.Seq >= boundary {
			boundary = c.Seq
		}
	}
	next := 0 // first checkpoint not yet emitted
	emitUpTo := func(seq uint64, all bool) error {
		for ; next < len(cps) && (all || cps[next].Seq <= seq); next++ {
			c := cps[next]
			if c.Seq < boundary || (c.Seq == boundary && !c.Boundary && boundary > 0) {
				continue // superseded by the boundary
			}
			if err := fn(seal.CheckpointEntry(c)); err != nil {
				return err
			}
		}
		return nil
	}
	if err := emitUpTo(boundary, false); err != nil {
		return err
	}
	rrs, err := tx.Query(ctx, "SELECT seq, stored FROM audit_records WHERE chain = $1 AND seq > $2 ORDER BY seq, time", chain, int64(boundary))
	if err != nil {
		return fmt.Errorf("pglog: export records: %w", err)
	}
	defer rrs.Close()
	for rrs.Next() {
		var seq int64
		var raw []byte
		if err := rrs.Scan(&seq, &raw); err != nil {
			return fmt.Errorf("pglog: export records: %w", err)
		}
		if err := fn(seal.RecordEntry(raw)); err != nil {
			return err
		}
		if err := emitUpTo(uint64(seq), false); err != nil {
			return err
		}
	}
	if err := rrs.Err(); err != nil {
		return fmt.Errorf("pglog: export records: %w", err)
	}
	rrs.Close()
	return emitUpTo(0, true)
}

// Purge implements auditlog.Storage: it drops the month partitions
// entirely older than before that hold, per chain, a prefix of it (a
// partly old month is kept whole, and so is a month holding a record
// sealed after a younger one, until the younger one's month goes too),
// through relais_audit_purge, with the boundary checkpoint of this chain's
// last dropped record. The database refuses a cutoff younger than 30
// days. Other chains with records to drop make it fail: their boundary
// needs their own writer's signature.
func (s *Storage) Purge(ctx context.Context, before time.Time, boundary func(chain string, seq uint64, head string) (seal.Checkpoint, error)) (int, error) {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return 0, fmt.Errorf("pglog: purge: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit: no-op

	var chains []string
	var seqs []int64
	var heads [][]byte
	if err := tx.QueryRow(ctx, "SELECT chains, seqs, heads FROM relais_audit_purge_plan($1)", before).Scan(&chains, &seqs, &heads); err != nil {
		return 0, fmt.Errorf("pglog: purge: %w", err)
	}
	var cps [][]byte
	for i, chain := range chains {
		if len(heads[i]) != 32 {
			return 0, fmt.Errorf("pglog: purge: record %d has no hash", seqs[i])
		}
		head := seal.Hex([32]byte(heads[i]))
		cp, err := boundary(chain, uint64(seqs[i]), head)
		if err != nil {
			return 0, fmt.Errorf("pglog: purge: boundary checkpoint: %w", err)
		}
		if !cp.Boundary || cp.Seq != uint64(seqs[i]) || cp.Head != head || cp.Chain != chain {
			return 0, fmt.Errorf("pglog: purge: the boundary checkpoint is not the one of record %d", seqs[i])
		}
		raw, err := json.Marshal(cp)
		if err != nil {
			return 0, fmt.Errorf("pglog: purge: %w", err)
		}
		cps = append(cps, raw)
	}
	if len(cps) == 0 {
		return 0, nil // nothing is old enough (empty old months stay until then)
	}
	// The purge holds the table exclusively: give up rather than queue
	// every append behind a long reader.
	if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '1s'"); err != nil {
		return 0, fmt.Errorf("pglog: purge: %w", err)
	}
	var n int64
	if err := tx.QueryRow(ctx, "SELECT relais_audit_purge($1, $2)", before, cps).Scan(&n); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && (pe.Code == codeTooRecent || pe.Code == codeBadBoundary) {
			return 0, fmt.Errorf("pglog: purge refused: %s", pe.Message)
		}
		if isLockTimeout(err) {
			return 0, errors.New("pglog: purge: the audit table is busy (a long read holds it), try again later")
		}
		return 0, fmt.Errorf("pglog: purge: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("pglog: purge: %w", err)
	}
	s.forget()
	return int(n), nil
}
