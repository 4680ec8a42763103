package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/relais-broker/relais/broker/admin"
	"github.com/relais-broker/relais/broker/audit/auditlog"
	"github.com/relais-broker/relais/broker/audit/boltlog"
	"github.com/relais-broker/relais/broker/audit/pglog"
	"github.com/relais-broker/relais/broker/audit/seal"
	"github.com/relais-broker/relais/broker/audit/seglog"
	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/cluster"
	"github.com/relais-broker/relais/broker/cluster/pgcluster"
	"github.com/relais-broker/relais/broker/ops"
	"github.com/relais-broker/relais/broker/ratelimit"
	"github.com/relais-broker/relais/broker/ratelimit/pgquota"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/registry/boltreg"
	"github.com/relais-broker/relais/broker/registry/pgreg"
	"github.com/relais-broker/relais/certs"
	"github.com/relais-broker/relais/internal/devenv"
	"github.com/relais-broker/relais/internal/pgdb"
)

// stores are the broker's state on one kind of storage: the only place
// that picks implementations. With bbolt everything is in files of the
// data directory; with PostgreSQL everything is in one database shared
// by every replica, and nothing of the state is local.
type stores struct {
	kind     string
	Registry registry.Store
	// Audit is the audit log's storage; auditlog.Log owns and closes it.
	Audit auditlog.Storage
	// DailyQuota and InFlight are nil with bbolt: the broker keeps them in
	// memory (daily counters rebuilt from the audit log at start).
	DailyQuota ratelimit.DailyCounter
	InFlight   ratelimit.InFlight
	// Pool is the PostgreSQL pool, nil with bbolt.
	Pool *pgxpool.Pool
	// Cluster is this broker's membership among the replicas of the
	// database and its leases; with bbolt, a cluster of one. Replica is the
	// id it joined under: its audit chain.
	Cluster interface {
		cluster.Membership
		cluster.Leaser
	}
	Replica string
	// Backups are the files an operator can snapshot through the admin
	// API while the broker runs (bbolt); nil with PostgreSQL (pg_dump,
	// base backups and the audit export instead).
	Backups []admin.BackupFile
}

// boltOptions are what openBoltStores needs besides the directory.
type boltOptions struct {
	// Keys verify an audit.db migrated at start: the signing key's public
	// key first, then the earlier keys of its keyring. Nil: the keyring of
	// the dev layout, DIR/keys/audit-signing.pub, when it exists.
	Keys []ed25519.PublicKey
	// Logger receives the migration's and the torn-tail repairs' lines
	// (slog.Default() when nil).
	Logger *slog.Logger
}

// openBoltStores opens registry.db and the audit log directory audit/ in
// dir, migrating the audit.db of an earlier version first (see
// migrateBoltAudit).
func openBoltStores(dir string, cat *catalog.Catalog, clock func() time.Time, o boltOptions) (*stores, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	// The registry's exclusive lock first: one broker at a time migrates.
	reg, err := boltreg.Open(filepath.Join(dir, devenv.RegistryFile), boltreg.Options{Catalog: cat, Clock: clock})
	if err != nil {
		return nil, err
	}
	if err := migrateBoltAudit(dir, o); err != nil {
		reg.Close()
		return nil, err
	}
	st, err := seglog.OpenStore(filepath.Join(dir, devenv.AuditDir), seglog.StoreOptions{})
	if err != nil {
		reg.Close()
		return nil, err
	}
	for _, r := range st.Repairs() {
		// Names and offsets of files only: never a record's content.
		o.Logger.Warn("audit log: cleared the torn tail a crash left in the last segment (records never acknowledged)",
			"segment", r.Segment, "offset", r.Offset, "bytes", r.Bytes, "saved_as", r.SavedAs)
	}
	local := cluster.NewLocal(clock)
	if err := local.Join(context.Background(), cluster.Replica{ID: "local", StartedAt: time.Now()}); err != nil {
		reg.Close()
		st.Close()
		return nil, err
	}
	return &stores{kind: StoreBbolt, Registry: reg, Audit: st, Cluster: local,
		Backups: []admin.BackupFile{{Name: devenv.RegistryFile, Source: reg}, {Name: devenv.AuditBackupFile, Source: auditSnapshot{st}}}}, nil
}

// auditSnapshot is the audit directory's part of an online backup: its
// export (JSON lines of seal.Entry, the bytes of every record unchanged)
// from one snapshot of the segments while the writer appends. A backup
// verifies offline as an export (relaisctl audit verify --file) and is
// restored with auditlog.Copy into a new directory (relaisctl restore).
type auditSnapshot struct{ st *seglog.Store }

// WriteSnapshot implements admin.Snapshotter.
func (a auditSnapshot) WriteSnapshot(w io.Writer) (int64, error) {
	cw := &countingWriter{w: w}
	bw := bufio.NewWriterSize(cw, 64<<10)
	err := a.st.Export(context.Background(), seal.NewWriter(bw).Write)
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	return cw.n, err
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// migrateBoltAudit turns the audit.db of a broker of an earlier version
// into the audit directory, never losing it: the file is opened
// read-only and copied (auditlog.Copy, bytes unchanged) into audit.tmp/,
// which must then verify with the keys and hold the file's whole chain;
// only then audit.tmp becomes audit and audit.db audit.db.migrated (kept
// for the operator to archive or delete), the directory synced. Any
// failure leaves audit.db as it was and stops the start. A crash between
// the two renames is finished at the next start when both logs end at
// the same head.
func migrateBoltAudit(dir string, o boltOptions) error {
	file, seg, tmp := filepath.Join(dir, devenv.AuditFile), filepath.Join(dir, devenv.AuditDir), filepath.Join(dir, devenv.AuditDir+".tmp")
	if _, err := os.Stat(file); errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	fail := func(format string, args ...any) error {
		_ = os.RemoveAll(tmp)
		return fmt.Errorf("audit log: migrating %s to %s/: %s; %s is untouched and relaisd did not start", devenv.AuditFile, devenv.AuditDir, fmt.Sprintf(format, args...), file)
	}
	src, err := boltlog.OpenStoreReadOnly(file)
	if err != nil {
		return fail("%v", err)
	}
	defer src.Close()
	want, err := src.Head(context.Background())
	if err != nil {
		return fail("%v", err)
	}
	if _, err := os.Stat(seg); err == nil {
		return finishMigration(dir, file, seg, want, o.Logger)
	}
	keys := o.Keys
	if keys == nil {
		if keys, err = readKeyring(filepath.Join(dir, "keys", devenv.AuditPublicKeyFile)); err != nil {
			return fail("no public key to verify the copy with (%v)", err)
		}
	}
	if err := os.RemoveAll(tmp); err != nil { // an earlier attempt's copy
		return fail("%v", err)
	}
	dst, err := seglog.OpenStore(tmp, seglog.StoreOptions{})
	if err != nil {
		return fail("%v", err)
	}
	n, err := auditlog.Copy(context.Background(), dst, src.Export)
	got, herr := dst.Head(context.Background())
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = herr
	}
	if err != nil {
		return fail("copy: %v", err)
	}
	if got != want {
		return fail("the copy ends at seq %d, %s at seq %d", got.Seq, devenv.AuditFile, want.Seq)
	}
	rep, err := seglog.Verify(tmp, keys[0], keys[1:]...)
	if err != nil {
		return fail("verify the copy: %v", err)
	}
	if !rep.OK() {
		return fail("the copy FAILED verification at seq %d with the broker's public keys: %s (verify the file: relaisctl audit verify --db %s)", rep.BadSeq, rep.Problem, file)
	}
	if err := os.Rename(tmp, seg); err != nil {
		return fail("%v", err)
	}
	if err := os.Rename(file, file+".migrated"); err != nil {
		return fmt.Errorf("audit log: migrated to %s/, but %s could not be renamed: %w", devenv.AuditDir, file, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("audit log: migrated to %s/: %w", devenv.AuditDir, err)
	}
	o.Logger.Info("audit log migrated from "+devenv.AuditFile+" to the segment directory "+devenv.AuditDir+"/, verified; the old file is kept as "+devenv.AuditFile+".migrated",
		"records", n, "checkpoints", rep.Checkpoints, "first_seq", rep.FirstSeq, "last_seq", rep.LastSeq)
	return nil
}

// finishMigration completes a migration a crash cut between its two
// renames: audit/ is the verified copy when it ends where audit.db does.
// Anything else is two different logs, which the broker does not choose
// between.
func finishMigration(dir, file, seg string, want seal.Head, logger *slog.Logger) error {
	st, err := seglog.OpenStoreReadOnly(seg)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	got, err := st.Head(context.Background())
	st.Close()
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	if got != want {
		return fmt.Errorf("audit log: %s holds both %s (to seq %d) and %s/ (to seq %d): move the one that is not this broker's log away, then start again", dir, devenv.AuditFile, want.Seq, devenv.AuditDir, got.Seq)
	}
	if err := os.Rename(file, file+".migrated"); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	logger.Info("audit log: finished an interrupted migration; the old file is kept as "+devenv.AuditFile+".migrated", "last_seq", got.Seq)
	return nil
}

// readKeyring reads the Ed25519 public keys of a keyring file (PEM
// blocks, the current key first: relaisctl keys rotate).
func readKeyring(path string) ([]ed25519.PublicKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var keys []ed25519.PublicKey
	for {
		var block *pem.Block
		if block, raw = pem.Decode(raw); block == nil {
			break
		}
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		k, ok := pub.(ed25519.PublicKey)
		if err != nil || !ok {
			return nil, fmt.Errorf("%s: key %d is not an Ed25519 public key", path, len(keys)+1)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s holds no PEM public key", path)
	}
	return keys, nil
}

// auditKeyring is what verifies a migrated audit.db in relaisd serve: the
// signer's public key, then the earlier keys of the keyring file (when
// given and present) that relaisctl keys rotate keeps.
func auditKeyring(signer seal.Signer, keyringFile string) ([]ed25519.PublicKey, error) {
	keys := []ed25519.PublicKey{signer.Public()}
	if keyringFile == "" {
		return keys, nil
	}
	ring, err := readKeyring(keyringFile)
	if errors.Is(err, fs.ErrNotExist) {
		return keys, nil
	}
	if err != nil {
		return nil, err
	}
	for _, k := range ring {
		if !k.Equal(keys[0]) {
			keys = append(keys, k)
		}
	}
	return keys, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// openPostgresStores connects to the database behind dsn, checks its
// schema (migrate first: relaisctl db migrate, or migrate true in dev
// mode), joins the replicas as self (under the first free id of ids when
// self.ID is empty) and opens every store on it, the audit log on this
// replica's own chain.
func openPostgresStores(ctx context.Context, dsn string, migrate bool, cat *catalog.Catalog, clock func() time.Time, self cluster.Replica, ids []string, logger *slog.Logger) (*stores, error) {
	if migrate {
		if _, err := pgdb.Migrate(ctx, dsn); err != nil {
			return nil, fmt.Errorf("database schema: %w", err)
		}
	}
	pool, err := pgdb.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			pool.Close()
		}
	}()
	if err := pgdb.Check(ctx, pool); err != nil {
		return nil, err
	}
	members := pgcluster.New(pool, pgcluster.Options{Clock: clock, Logger: logger})
	if self.ID != "" {
		err = members.Join(ctx, self)
	} else {
		self.ID, err = cluster.JoinFirstFree(ctx, members, self, ids...)
	}
	if err != nil {
		return nil, fmt.Errorf("joining the replicas: %w", err)
	}
	defer func() {
		if !ok {
			_ = members.Leave(context.WithoutCancel(ctx))
		}
	}()
	reg, err := pgreg.Open(ctx, pool, pgreg.Options{Catalog: cat, Clock: clock})
	if err != nil {
		return nil, err
	}
	// This replica writes its own chain; queries, the citizen report and
	// exports read every replica's.
	st, err := pglog.Open(ctx, pool, pglog.Options{Chain: self.ID, AllChains: true, Clock: clock})
	if err != nil {
		return nil, err
	}
	ok = true
	return &stores{kind: StorePostgres, Registry: reg, Audit: st, Pool: pool, Cluster: members, Replica: self.ID,
		DailyQuota: pgquota.NewDaily(pool), InFlight: pgquota.NewInFlight(pool, clock)}, nil
}

// Close closes what the stores hold once the audit log (which closes its
// storage, after its final checkpoint) is closed: it leaves the replicas
// (freeing the id and, at once, the others' rate shares), then closes the
// registry, then the pool.
func (s *stores) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.Cluster.Leave(ctx)
	err = errors.Join(err, s.Registry.Close())
	if s.Pool != nil {
		s.Pool.Close()
	}
	return err
}

// auditReader serves the admin API's audit queries and exports: with
// PostgreSQL the export covers every replica's chain, from one snapshot.
type auditReader struct {
	*auditlog.Log
	pool *pgxpool.Pool
}

// Export implements admin.AuditExporter.
func (a auditReader) Export(ctx context.Context, fn func(seal.Entry) error) error {
	if a.pool == nil {
		return a.Log.Export(ctx, fn)
	}
	return pglog.ExportAll(ctx, a.pool, fn)
}

// readiness is the stores' part of /readyz: the database must answer.
func (s *stores) readiness() []ops.Check {
	if s.Pool == nil {
		return nil
	}
	return []ops.Check{{Name: "database", Fn: func(ctx context.Context) error {
		if err := s.Pool.Ping(ctx); err != nil {
			return errors.New("the PostgreSQL database does not answer")
		}
		return nil
	}}}
}

// revocations is the revoked set the chain and the TLS handshake enforce:
// this process's set (the CRLs of the CA, and revocations made here,
// effective before the registry write returns) and the registry's, which
// every replica shares.
type revocations struct {
	local    *certs.Revocations
	registry registry.Store
}

// IsRevoked implements certs.RevocationChecker and authn.RevocationChecker.
func (r revocations) IsRevoked(serial string) bool {
	return r.local.IsRevoked(serial) || r.registry.Revoked(serial)
}

// Add revokes in this process at once (admin.Revocations).
func (r revocations) Add(serials ...string) []string { return r.local.Add(serials...) }
