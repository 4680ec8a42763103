package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/relais-broker/relais/broker/audit/auditlog"
	"github.com/relais-broker/relais/broker/audit/boltlog"
	"github.com/relais-broker/relais/broker/audit/pglog"
	"github.com/relais-broker/relais/broker/audit/seal"
	"github.com/relais-broker/relais/broker/audit/seglog"
	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/registry/boltreg"
	"github.com/relais-broker/relais/broker/registry/pgreg"
	"github.com/relais-broker/relais/broker/scope"
	"github.com/relais-broker/relais/internal/devenv"
	"github.com/relais-broker/relais/internal/pgdb"
)

// defaultMigrateBatch is how many audit records one target commit holds:
// the size of the broker's own group commits (auditlog.Options.MaxBatch).
const defaultMigrateBatch = 1000

// storeCmd groups the store commands.
func storeCmd() *cobra.Command {
	return group("store", "Move a stopped broker's state between stores", storeMigrateCmd())
}

func storeMigrateCmd() *cobra.Command {
	return leaf("migrate --from bbolt:DIR --to postgres [--to-dsn-file F] --public-key FILE [--resume]",
		"Copy a stopped broker's registry and audit log into an empty PostgreSQL database, then verify it",
		"  relaisctl store migrate --from bbolt:/var/lib/relais --to postgres --to-dsn-file owner.dsn --public-key audit-signing.pub",
		func(fs *pflag.FlagSet) body {
			from := fs.String("from", "", "bbolt:DIR, the data directory of a stopped relaisd (registry.db, and audit/ or an earlier version's audit.db)")
			to := fs.String("to", "", "postgres: the database (migrated with relaisctl db migrate, empty)")
			dsnFile := fs.String("to-dsn-file", "", "file holding the target database DSN (else $"+pgdb.DSNEnv+"; never on the command line)")
			pubFile := fs.String("public-key", "", "the operator's Ed25519 public key (PEM) that verifies the audit log; required")
			batch := fs.Int("batch", defaultMigrateBatch, "audit records per target transaction (1 to 10000)")
			resume := fs.Bool("resume", false, "finish an interrupted migration of this source: the target must be a partial copy of it")
			return func(ctx context.Context, stdout, stderr io.Writer) int {
				return runStoreMigrate(ctx, fs, *from, *to, *dsnFile, *pubFile, *batch, *resume, stdout, stderr)
			}
		})
}

// runStoreMigrate is `relaisctl store migrate`: it moves the state of a
// stopped embedded broker (the bbolt files of its data directory) into an
// empty, migrated PostgreSQL database, then proves the copy.
//
//   - The source is held read-only for the whole run (shared locks on both
//     files): a running broker makes it fail at once, and no broker can
//     start on the directory meanwhile.
//   - The source is checked first — the registry against the shared write
//     rules, the audit log with the public key — and the target must be at
//     this build's schema (pgdb.Check) and empty, registry and audit log of
//     every chain alike. Any refusal happens before the first write.
//   - The registry goes in one transaction (registry.Transfer: ids, dates,
//     revoked grants and every credential record); the audit log is
//     replayed in seq order into pglog's Commit in batches, its sealed
//     bytes and signed checkpoints unchanged (the retention boundary
//     first), so every commit is checked against the chain (auditlog.Follow
//     rules) in the database.
//   - Then the target is exported back: its registry must equal the
//     source's, its audit log must verify with the public key and carry the
//     very bytes of the source (a digest of both exports).
//
// The copied chain keeps the source's id, "": the id is inside the sealed
// bytes and the signed checkpoint messages, so naming it otherwise would
// reseal the log and lose the operator's signatures. Replica ids are never
// empty, so it cannot collide with a replica's chain.
//
// An interrupted run leaves a partial copy (the registry, and the audit
// records of the batches committed; each batch is all or nothing): a
// second run refuses that target as not empty, and says so. --resume
// finishes it instead: it checks that the target is a partial copy of
// this very source (no other chain, the registry equal or empty, the
// target's log entry for entry the start of the source's), copies what
// is missing, and verifies the whole as a first run does. Or drop and
// recreate the database, run relaisctl db migrate, and migrate again; the
// source is never changed.
func runStoreMigrate(ctx context.Context, fs *pflag.FlagSet, fromV, toV, dsnFileV, pubFileV string, batchV int, resumeV bool, stdout, stderr io.Writer) int {
	from, to, dsnFile, pubFile, batch, resume := &fromV, &toV, &dsnFileV, &pubFileV, &batchV, &resumeV
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "relaisctl store migrate: "+format+"\n", a...)
		return code
	}
	if fs.NArg() > 0 {
		return fail(2, "unexpected argument %q", fs.Arg(0))
	}
	dir, ok := strings.CutPrefix(*from, "bbolt:")
	if !ok || dir == "" {
		return fail(2, "--from must be bbolt:DIR, the data directory of the stopped broker")
	}
	if *to != "postgres" {
		// Never echo it: it may be a DSN, password included.
		return fail(2, "--to must be postgres; the DSN comes from --to-dsn-file or $%s, never from the command line", pgdb.DSNEnv)
	}
	if *pubFile == "" {
		return fail(2, "--public-key is required: the audit log is verified before and after the copy")
	}
	if *batch < 1 || *batch > 10000 {
		return fail(2, "--batch must be between 1 and 10000, not %d", *batch)
	}
	pub, err := readPublicKeys([]string{*pubFile})
	if err != nil {
		return fail(1, "%v", err)
	}
	dsn, err := pgdb.LoadDSN(*dsnFile)
	if err != nil {
		return fail(2, "%v", err)
	}
	m := &migration{dir: dir, pub: pub, batch: *batch, resume: *resume, out: stdout}
	if err := m.run(ctx, dsn); err != nil {
		fmt.Fprintf(stderr, "relaisctl store migrate: %v\n", err)
		switch {
		case m.complete:
			fmt.Fprintf(stderr, "relaisctl store migrate: the target now holds %s; the source was not changed: drop and recreate the database, run relaisctl db migrate and migrate again\n", m.progress())
		case m.written:
			fmt.Fprintf(stderr, "relaisctl store migrate: the target now holds %s; the source was not changed: run again with --resume to finish the copy (a run without it refuses the target as not empty), or drop and recreate the database, run relaisctl db migrate and migrate again\n", m.progress())
		}
		return 1
	}
	return 0
}

// migration is one run of store migrate.
type migration struct {
	dir    string
	pub    []ed25519.PublicKey // the current key, then earlier ones (a keyring)
	batch  int
	resume bool
	out    io.Writer

	// written is set once the target has been changed; registryDone,
	// copied and complete say how far the copy went, for the message of
	// a failed run.
	written      bool
	registryDone bool
	copied       uint64 // last audit seq committed on the target
	complete     bool
}

// progress describes what a failed run left on the target.
func (m *migration) progress() string {
	switch {
	case m.complete:
		return "the whole copy, which failed verification"
	case !m.registryDone:
		return "a partial copy (perhaps the registry: its commit's outcome is unknown)"
	case m.copied == 0:
		return "a partial copy (the registry, no audit record)"
	default:
		return fmt.Sprintf("a partial copy (the registry and the audit records up to seq %d)", m.copied)
	}
}

// auditSummary is what an export holds: counts, and a digest of every
// entry (the record bytes as stored, the checkpoints as JSON) that proves
// two exports carry the same log.
type auditSummary struct {
	report *seal.Report
	digest [sha256.Size]byte
}

func (s auditSummary) describe() string {
	r := s.report
	out := fmt.Sprintf("%d records", r.Records)
	if r.Records > 0 {
		out += fmt.Sprintf(" (seq %d to %d)", r.FirstSeq, r.LastSeq)
	}
	out += fmt.Sprintf(", %d signed checkpoints", r.Checkpoints)
	for _, c := range r.Chains {
		if c.Boundary > 0 {
			out += fmt.Sprintf(" (retention boundary at seq %d)", c.Boundary)
		}
	}
	return out
}

func (m *migration) run(ctx context.Context, dsn string) error {
	// 1. The source: locked read-only, read, checked.
	src, err := openSource(m.dir)
	if err != nil {
		return err
	}
	defer src.close()
	contents, err := src.exportRegistry(ctx)
	if err != nil {
		return err
	}
	cat := catalog.Default()
	if contents, err = registry.CheckContents(cat, contents); err != nil {
		return fmt.Errorf("the source registry does not pass the registry rules, nothing was copied: %w", err)
	}
	srcAudit, err := summarize(ctx, m.pub, src.audit.Export)
	if err != nil {
		return fmt.Errorf("read the source audit log: %w", err)
	}
	if rep := srcAudit.report; !rep.OK() {
		return fmt.Errorf("the source audit log does not verify with this public key (FAILED at seq %d: %s): nothing was copied; verify it with relaisctl audit verify --dir (or --db)", rep.BadSeq, rep.Problem)
	}
	for _, c := range srcAudit.report.Chains {
		if c.Chain != "" {
			return fmt.Errorf("the source audit log holds chain %q: only the single chain of an embedded broker can be migrated, nothing was copied", c.Chain)
		}
	}
	fmt.Fprintf(m.out, "source %s: %s; audit log verified: %s\n", m.dir, registryCounts(contents), srcAudit.describe())

	// 2. The target: migrated, empty.
	pool, err := pgdb.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	defer pool.Close()
	if err := pgdb.Check(ctx, pool); err != nil {
		return fmt.Errorf("target: %w", err)
	}
	held, err := targetHolds(ctx, pool)
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	if held != "" && !m.resume {
		return fmt.Errorf("target not empty: the database already holds %s; store migrate copies into an empty database only (or finishes its own interrupted copy with --resume), nothing was changed", held)
	}
	reg, err := pgreg.Open(ctx, pool, pgreg.Options{Catalog: cat})
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	defer reg.Close()
	restore, from, err := m.resumeFrom(ctx, pool, reg, contents, src.audit)
	if err != nil {
		return err
	}
	dst, err := pglog.Open(ctx, pool, pglog.Options{Chain: ""})
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	defer dst.Close()

	// 3. The copy. Restore is one transaction: refused or failed, it
	// wrote nothing — unless the outcome is unknown (the connection broke).
	if restore {
		if err := reg.Restore(ctx, contents); err != nil {
			if errors.Is(err, registry.ErrExists) {
				return fmt.Errorf("target not empty: %w; nothing was changed", err)
			}
			m.written = errors.Is(err, registry.ErrUnavailable)
			return fmt.Errorf("copy the registry: %w", err)
		}
	}
	m.written, m.registryDone = true, true
	if from.Seq > 0 {
		fmt.Fprintf(m.out, "resuming after seq %d: the target holds the source's audit log up to it\n", from.Seq)
	}
	if err := m.copyAudit(ctx, src.audit, dst, from); err != nil {
		return fmt.Errorf("copy the audit log: %w", err)
	}
	m.complete = true
	fmt.Fprintf(m.out, "copied: %s; audit log %s\n", registryCounts(contents), srcAudit.describe())

	return m.verify(ctx, pool, reg, contents, srcAudit)
}

// resumeFrom says what is left to copy into a target: the registry (when
// it is empty) and the audit records after the returned head. Without
// --resume the target is empty (checked before): everything. With it,
// the target must be a partial copy of this source — no other chain, the
// registry empty or equal to the source's, chain "" a prefix of the
// source's — or nothing is changed.
func (m *migration) resumeFrom(ctx context.Context, pool *pgxpool.Pool, reg *pgreg.Store, want registry.Contents, src auditlog.Storage) (restore bool, from seal.Head, err error) {
	if !m.resume {
		return true, seal.Head{}, nil
	}
	var others bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM audit_records WHERE chain <> '')
		OR EXISTS (SELECT 1 FROM audit_checkpoints WHERE chain <> '')`).Scan(&others); err != nil {
		return false, from, fmt.Errorf("target: %w", err)
	}
	if others {
		return false, from, errors.New("--resume: the target holds audit records of other chains (a broker ran on it): not a partial copy of this source, nothing was changed")
	}
	got, err := reg.Export(ctx)
	if err != nil {
		return false, from, fmt.Errorf("target: %w", err)
	}
	restore = len(got.Consumers) == 0 && len(got.Grants) == 0 && len(got.Credentials) == 0
	if !restore {
		if err := sameRegistry(catalog.Default(), want, got); err != nil {
			return false, from, fmt.Errorf("--resume: the target registry %w: not a partial copy of this source, nothing was changed", err)
		}
	}
	// The head as pglog reads it, without opening a writer (which would
	// prepare partitions): its last record, or its boundary.
	var seq int64
	var head []byte
	if err := pool.QueryRow(ctx, "SELECT seq, hash FROM relais_audit_head('')").Scan(&seq, &head); err != nil {
		return false, from, fmt.Errorf("target: read the audit chain head: %w", err)
	}
	if len(head) != len(from.Hash) {
		return false, from, fmt.Errorf("target: the audit chain head hash has %d bytes", len(head))
	}
	from.Seq = uint64(seq)
	copy(from.Hash[:], head)
	if from.Seq > 0 {
		if err := isPrefix(ctx, src, pool, from); err != nil {
			return false, from, fmt.Errorf("--resume: %w, nothing was changed", err)
		}
	}
	return restore, from, nil
}

// isPrefix checks that the target's log (chain "" alone: others were
// refused) is the start of the source's up to its head h, entry for entry
// — records, boundary and checkpoints, signatures included — by digests
// of the two exports, in constant memory.
func isPrefix(ctx context.Context, src auditlog.Storage, pool *pgxpool.Pool, h seal.Head) error {
	errStop := errors.New("stop")
	want := sha256.New()
	err := src.Export(ctx, func(e seal.Entry) error {
		seq, err := entrySeq(e)
		if err != nil {
			return err
		}
		if seq > h.Seq {
			return errStop
		}
		return digestEntry(want, e)
	})
	if err != nil && !errors.Is(err, errStop) {
		return err
	}
	got := sha256.New()
	if err := pglog.ExportAll(ctx, pool, func(e seal.Entry) error { return digestEntry(got, e) }); err != nil {
		return err
	}
	if !bytes.Equal(want.Sum(nil), got.Sum(nil)) {
		return fmt.Errorf("the target's audit log (up to seq %d) is not the start of the source's: not a partial copy of this source", h.Seq)
	}
	return nil
}

// entrySeq is the seq of an export entry.
func entrySeq(e seal.Entry) (uint64, error) {
	if e.Checkpoint != nil {
		return e.Checkpoint.Seq, nil
	}
	s, err := seal.Unseal(e.Record)
	return s.Seq, err
}

// verify proves the copy from what the database gives back: the registry
// equal to the source's, the audit log (every chain of the database)
// verifying with the public key and carrying the source's very entries.
func (m *migration) verify(ctx context.Context, pool *pgxpool.Pool, reg *pgreg.Store, want registry.Contents, srcAudit auditSummary) error {
	got, err := reg.Export(ctx)
	if err != nil {
		return fmt.Errorf("verify the target registry: %w", err)
	}
	if err := sameRegistry(catalog.Default(), want, got); err != nil {
		return fmt.Errorf("verification failed: the target registry %w", err)
	}
	dstAudit, err := summarize(ctx, m.pub, func(ctx context.Context, fn func(seal.Entry) error) error {
		return pglog.ExportAll(ctx, pool, fn)
	})
	if err != nil {
		return fmt.Errorf("verify the target audit log: %w", err)
	}
	if rep := dstAudit.report; !rep.OK() {
		where := ""
		if rep.Chain != "" {
			where = fmt.Sprintf(" of chain %q", rep.Chain)
		}
		return fmt.Errorf("verification failed: the target audit log FAILED at seq %d%s: %s", rep.BadSeq, where, rep.Problem)
	}
	if dstAudit.digest != srcAudit.digest {
		return fmt.Errorf("verification failed: the target audit log (%s) verifies but is not the source's (%s)", dstAudit.describe(), srcAudit.describe())
	}
	fmt.Fprintf(m.out, "OK: target verified: %s, %s\n", registryCounts(got), dstAudit.describe())
	return nil
}

func registryCounts(c registry.Contents) string {
	return plural(len(c.Consumers), "consumer") + ", " + plural(len(c.Grants), "grant") + ", " + plural(len(c.Credentials), "credential")
}

// source is the data directory of a stopped broker, held read-only: the
// shared locks of the registry and of the audit log (its directory's
// LOCK, or the audit.db of an earlier version) keep a broker from
// starting on it (it needs them exclusive) until close.
type source struct {
	regDB *bolt.DB
	audit auditlog.Storage
	lock  *bolt.DB // an audit.db's shared lock, held by this handle
	tmp   string
}

// openSource opens the data directory dir: registry.db, and the audit
// directory audit/ or, when only that exists (a broker of an earlier
// version, not started since), audit.db.
func openSource(dir string) (*source, error) {
	regPath, auditDir, auditPath := filepath.Join(dir, devenv.RegistryFile), filepath.Join(dir, devenv.AuditDir), filepath.Join(dir, devenv.AuditFile)
	if _, err := os.Stat(regPath); err != nil {
		return nil, fmt.Errorf("source: %s: %w (--from names the data directory of the broker, holding %s and %s/)", regPath, errors.Unwrap(err), devenv.RegistryFile, devenv.AuditDir)
	}
	_, derr := os.Stat(auditDir)
	_, ferr := os.Stat(auditPath)
	if derr != nil && ferr != nil {
		return nil, fmt.Errorf("source: %s: %w (--from names the data directory of the broker, holding %s and %s/)", auditDir, errors.Unwrap(derr), devenv.RegistryFile, devenv.AuditDir)
	}
	s := &source{}
	var err error
	if s.regDB, err = openReadOnly(regPath); err != nil {
		return nil, err
	}
	// Assigned only when open: a nil *Store is not a nil Storage.
	if derr == nil {
		st, err := seglog.OpenStoreReadOnly(auditDir)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("source: %w (stop relaisd before migrating its stores: nothing was copied)", err)
		}
		s.audit = st
		return s, nil
	}
	if s.lock, err = openReadOnly(auditPath); err != nil {
		s.close()
		return nil, err
	}
	// A second shared lock of this process on the file: compatible.
	st, err := boltlog.OpenStoreReadOnly(auditPath)
	if err != nil {
		s.close()
		return nil, fmt.Errorf("source: %w", err)
	}
	s.audit = st
	return s, nil
}

// openReadOnly opens a bbolt file with a shared lock, refusing at once
// (one second) a file a running broker holds.
func openReadOnly(path string) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("source: %s is locked by a running broker: stop relaisd before migrating its stores (nothing was copied)", path)
	case err != nil:
		return nil, fmt.Errorf("source: open %s read-only: %w", path, err)
	}
	return db, nil
}

func (s *source) close() {
	if s.audit != nil {
		s.audit.Close()
	}
	if s.lock != nil {
		s.lock.Close()
	}
	if s.regDB != nil {
		s.regDB.Close()
	}
	if s.tmp != "" {
		os.RemoveAll(s.tmp)
	}
}

// exportRegistry reads the registry through boltreg, whose Open writes
// (it creates or upgrades the layout): on a private copy (0600, in a 0700
// temporary directory, removed at close) taken from the read-only file
// in one read transaction, so the source is never written.
func (s *source) exportRegistry(ctx context.Context) (registry.Contents, error) {
	tmp, err := os.MkdirTemp("", "relaisctl-migrate-")
	if err != nil {
		return registry.Contents{}, fmt.Errorf("source registry: %w", err)
	}
	s.tmp = tmp
	snapshot := filepath.Join(tmp, devenv.RegistryFile)
	if err := s.regDB.View(func(tx *bolt.Tx) error { return tx.CopyFile(snapshot, 0o600) }); err != nil {
		return registry.Contents{}, fmt.Errorf("source registry: copy for reading: %w", err)
	}
	reg, err := boltreg.Open(snapshot, boltreg.Options{Catalog: catalog.Default()})
	if err != nil {
		return registry.Contents{}, fmt.Errorf("source %w", err)
	}
	defer reg.Close()
	c, err := reg.Export(ctx)
	if err != nil {
		return registry.Contents{}, fmt.Errorf("source %w", err)
	}
	return c, nil
}

// summarize verifies an export with pub and digests it.
func summarize(ctx context.Context, pub []ed25519.PublicKey, export func(context.Context, func(seal.Entry) error) error) (auditSummary, error) {
	v := seal.NewVerifier(pub[0], pub[1:]...)
	d := sha256.New()
	err := export(ctx, func(e seal.Entry) error {
		if err := digestEntry(d, e); err != nil {
			return err
		}
		v.Add(e) // keeps counting past a problem; the report names the first
		return nil
	})
	if err != nil {
		return auditSummary{}, err
	}
	s := auditSummary{report: v.Report()}
	copy(s.digest[:], d.Sum(nil))
	return s, nil
}

// digestEntry adds one entry to d, framed so that no two exports share a
// digest: kind, length, bytes.
func digestEntry(d hash.Hash, e seal.Entry) error {
	kind, body := byte('r'), []byte(e.Record)
	if e.Checkpoint != nil {
		raw, err := json.Marshal(e.Checkpoint)
		if err != nil {
			return err
		}
		kind, body = 'c', raw
	}
	var hdr [9]byte
	hdr[0] = kind
	binary.BigEndian.PutUint64(hdr[1:], uint64(len(body)))
	d.Write(hdr[:])
	d.Write(body)
	return nil
}

// targetHolds names what the target database already holds of an
// installation, "" when it is empty: registry rows, or audit rows of any
// chain (a replica's included).
func targetHolds(ctx context.Context, pool *pgxpool.Pool) (string, error) {
	var held string
	err := pool.QueryRow(ctx, `SELECT CASE
		WHEN EXISTS (SELECT 1 FROM registry_consumers) THEN 'registry consumers'
		WHEN EXISTS (SELECT 1 FROM registry_grants) THEN 'registry grants'
		WHEN EXISTS (SELECT 1 FROM registry_credentials) THEN 'credential records'
		WHEN EXISTS (SELECT 1 FROM audit_records) THEN 'audit records'
		WHEN EXISTS (SELECT 1 FROM audit_checkpoints) THEN 'audit checkpoints'
		ELSE '' END`).Scan(&held)
	if err != nil {
		return "", fmt.Errorf("check that the database is empty: %w", err)
	}
	if held == "audit records" || held == "audit checkpoints" {
		var chains []string
		// Some of the chains, for the message: those with checkpoints and
		// one with records (a full DISTINCT would scan the log).
		rows, err := pool.Query(ctx, `SELECT chain FROM (SELECT DISTINCT chain FROM audit_checkpoints) c
			UNION SELECT chain FROM (SELECT chain FROM audit_records LIMIT 1) r ORDER BY 1 LIMIT 5`)
		if err == nil {
			for rows.Next() {
				var c string
				if rows.Scan(&c) == nil {
					chains = append(chains, fmt.Sprintf("%q", c))
				}
			}
			rows.Close()
		}
		if len(chains) > 0 {
			held += " (chain " + strings.Join(chains, ", ") + ")"
		}
	}
	return held, nil
}

// copyAudit replays src's export into dst in seq order: records in
// batches of m.batch, each checkpoint in the batch of its record (the
// boundary opening the first one), so that every commit follows the head
// the previous one left. It starts after from, the head of a partial copy
// (the zero Head for an empty target), which must be where the source's
// chain stood at that seq: a record's batch held its checkpoint, so
// everything up to from.Seq is on the target.
func (m *migration) copyAudit(ctx context.Context, src auditlog.Storage, dst auditlog.Storage, from seal.Head) error {
	var (
		recs []seal.Sealed
		cps  []seal.Checkpoint
		met  = from.Seq == 0 // the source's entry at from.Seq was seen
	)
	flush := func() error {
		if len(recs) == 0 && len(cps) == 0 {
			return nil
		}
		if err := dst.Commit(ctx, recs, cps); err != nil {
			return err
		}
		if len(recs) > 0 {
			m.copied = recs[len(recs)-1].Seq
		}
		recs, cps = recs[:0], cps[:0]
		return nil
	}
	errNotPrefix := fmt.Errorf("the target's audit chain (at seq %d) is not a prefix of the source's: not a partial copy of this source", from.Seq)
	err := src.Export(ctx, func(e seal.Entry) error {
		if c := e.Checkpoint; c != nil {
			if c.Seq <= from.Seq {
				if c.Boundary && c.Seq == from.Seq {
					met = c.Head == seal.Hex(from.Hash)
				}
				return nil // on the target already
			}
			cps = append(cps, *c)
			return nil
		}
		s, err := seal.Unseal(slices.Clone(e.Record))
		if err != nil {
			return err
		}
		if s.Seq <= from.Seq {
			if s.Seq == from.Seq {
				met = s.Hash == seal.Hex(from.Hash)
			}
			return nil
		}
		if !met {
			return errNotPrefix
		}
		if len(recs) >= m.batch {
			if err := flush(); err != nil {
				return err
			}
		}
		recs = append(recs, s)
		return nil
	})
	if err != nil {
		return err
	}
	if !met {
		return errNotPrefix
	}
	return flush()
}

// sameRegistry compares the registry written with the one read back, in
// the form stores keep (registry.CheckContents): scopes as sorted lists.
func sameRegistry(cat *catalog.Catalog, want, got registry.Contents) error {
	got, err := registry.CheckContents(cat, got)
	if err != nil {
		return fmt.Errorf("does not pass the registry rules: %w", err)
	}
	if len(got.Consumers) != len(want.Consumers) || len(got.Grants) != len(want.Grants) || len(got.Credentials) != len(want.Credentials) {
		return fmt.Errorf("holds %s, the source %s", registryCounts(got), registryCounts(want))
	}
	for i := range want.Consumers {
		if !reflect.DeepEqual(want.Consumers[i], got.Consumers[i]) {
			return fmt.Errorf("differs from the source at consumer %s", want.Consumers[i].SIRET)
		}
	}
	for i := range want.Grants {
		a, b := want.Grants[i], got.Grants[i]
		as, bs := a.Scopes.Sorted(), b.Scopes.Sorted()
		a.Scopes, b.Scopes = scope.Set{}, scope.Set{}
		if !slices.Equal(as, bs) || !reflect.DeepEqual(a, b) {
			return fmt.Errorf("differs from the source at grant %s", want.Grants[i].ID)
		}
	}
	for i := range want.Credentials {
		if !reflect.DeepEqual(want.Credentials[i], got.Credentials[i]) {
			return fmt.Errorf("differs from the source at credential %s", want.Credentials[i].Serial)
		}
	}
	return nil
}
