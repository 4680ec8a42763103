package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	bolt "go.etcd.io/bbolt"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/audit/auditlog"
	"github.com/relais-broker/relais/broker/audit/audittest"
	"github.com/relais-broker/relais/broker/audit/boltlog"
	"github.com/relais-broker/relais/broker/audit/pglog"
	"github.com/relais-broker/relais/broker/audit/seal"
	"github.com/relais-broker/relais/broker/audit/seglog"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/registry/boltreg"
	"github.com/relais-broker/relais/broker/registry/pgreg"
	"github.com/relais-broker/relais/broker/registry/registrytest"
	"github.com/relais-broker/relais/internal/devenv"
	"github.com/relais-broker/relais/internal/keyfile"
	"github.com/relais-broker/relais/internal/pgdb"
	"github.com/relais-broker/relais/internal/pgtest"
)

// storeClock is a settable clock for the stores of a dev directory.
type storeClock struct{ ns atomic.Int64 }

func (c *storeClock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *storeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// devData is a data directory written by the real embedded stores, as a
// broker leaves it: keys, registry.db, audit/ (or, for a broker of an
// earlier version, audit.db).
type devData struct {
	dir, pubFile string
	signer       seal.Ed25519Signer
}

// auditStart is the time of the first audit record: records spread over
// four months, so the copy spans several month partitions.
var auditStart = time.Date(2026, 8, 3, 9, 0, 0, 0, time.UTC)

// newDevData fills a data directory: every kind of registry write
// (registrytest.Fill) and an audit log with checkpoints every 4 records,
// a retention purge (a boundary checkpoint) and records after it.
func newDevData(t *testing.T) devData { t.Helper(); return newDevDataOf(t, false) }

// newDevDataOf is newDevData with the audit log in an audit.db file when
// legacy: what a broker before the audit directory left.
func newDevDataOf(t *testing.T, legacy bool) devData {
	t.Helper()
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	if err := os.Mkdir(keys, 0o700); err != nil {
		t.Fatal(err)
	}
	d := devData{dir: dir, pubFile: filepath.Join(keys, devenv.AuditPublicKeyFile)}
	keyFile := filepath.Join(keys, devenv.AuditSigningKeyFile)
	if err := keyfile.CreateSigningKey(keyFile, d.pubFile); err != nil {
		t.Fatal(err)
	}
	key, err := keyfile.ReadSigningKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	d.signer = seal.Ed25519Signer(key)

	clk := &storeClock{}
	clk.ns.Store(registrytest.Start.UnixNano())
	reg, err := boltreg.Open(filepath.Join(dir, devenv.RegistryFile), boltreg.Options{Clock: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	registrytest.Fill(t, reg, clk.advance)
	if err := reg.Close(); err != nil {
		t.Fatal(err)
	}

	now := auditStart.AddDate(0, 4, 0)
	var log interface {
		Append(context.Context, audit.Record) error
		Purge(context.Context) (int, error)
		Close() error
	}
	if legacy {
		log, err = boltlog.Open(filepath.Join(dir, devenv.AuditFile), boltlog.Options{
			SigningKey: key, CheckpointEvery: 4, Retention: 60 * 24 * time.Hour, Clock: func() time.Time { return now },
		})
	} else {
		log, err = seglog.Open(filepath.Join(dir, devenv.AuditDir), seglog.Options{
			SigningKey: key, CheckpointEvery: 4, Retention: 60 * 24 * time.Hour, Clock: func() time.Time { return now },
			Store: seglog.StoreOptions{SegmentSize: 4 << 10},
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 1; i <= 20; i++ {
		r := audittest.Record(i)
		r.Time = auditStart.Add(time.Duration(i) * 5 * 24 * time.Hour)
		if err := log.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := log.Purge(ctx); err != nil || n == 0 {
		t.Fatalf("purge: %d records, %v", n, err)
	}
	for i := 21; i <= 25; i++ {
		r := audittest.Record(i)
		r.Time = now.Add(-time.Duration(26-i) * time.Minute)
		if err := log.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := log.Close(); err != nil {
		t.Fatal(err)
	}
	return d
}

// target is a fresh database of the cluster, migrated, and the DSN file of
// a login of relais_broker (with its password) that the migration uses.
type target struct {
	admin, dsnFile, password string
	pool                     *pgxpool.Pool
}

func newTarget(t testing.TB, c *pgtest.Cluster, migrate bool) target {
	t.Helper()
	ctx := context.Background()
	admin := c.NewDatabase(t)
	if migrate {
		if _, err := pgdb.Migrate(ctx, admin); err != nil {
			t.Fatal(err)
		}
	}
	dsn := admin
	if migrate {
		dsn = c.NewLogin(t, admin, "relais_broker")
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(file, []byte(dsn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return target{admin: admin, dsnFile: file, password: cfg.Password, pool: pool}
}

func (d devData) migrate(t *testing.T, tg target, extra ...string) (code int, stdout, stderr string) {
	t.Helper()
	code, stdout, stderr = relaisctl(t, append([]string{"store", "migrate", "--from", "bbolt:" + d.dir, "--to", "postgres",
		"--to-dsn-file", tg.dsnFile, "--public-key", d.pubFile, "--batch", "3"}, extra...)...)
	if tg.password != "" && strings.Contains(stdout+stderr, tg.password) {
		t.Fatalf("the output shows the DSN password:\n%s%s", stdout, stderr)
	}
	return code, stdout, stderr
}

// sourceExport is the source log's export, as relaisctl audit export writes it.
func (d devData) sourceExport(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	var err error
	if _, serr := os.Stat(filepath.Join(d.dir, devenv.AuditDir)); serr == nil {
		_, err = seglog.ExportDir(context.Background(), filepath.Join(d.dir, devenv.AuditDir), &b)
	} else {
		_, err = boltlog.ExportFile(context.Background(), filepath.Join(d.dir, devenv.AuditFile), &b)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// targetState is everything the target holds, to compare before and
// after a refused run.
func (tg target) state(t *testing.T) (registry.Contents, []byte) {
	t.Helper()
	ctx := context.Background()
	reg, err := pgreg.Open(ctx, tg.pool, pgreg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := reg.Export(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := pglog.ExportAll(ctx, tg.pool, seal.NewWriter(&b).Write); err != nil {
		t.Fatal(err)
	}
	return c, b.Bytes()
}

func (tg target) mustBeEmpty(t *testing.T) {
	t.Helper()
	held, err := targetHolds(context.Background(), tg.pool)
	if err != nil || held != "" {
		t.Fatalf("the target holds %q (%v); want it untouched and empty", held, err)
	}
}

func TestStoreMigrate(t *testing.T) {
	c := pgtest.Start(t) // this package has no pgtest TestMain
	d := newDevData(t)
	srcReg := func() registry.Contents {
		reg, err := boltreg.Open(filepath.Join(d.dir, devenv.RegistryFile), boltreg.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer reg.Close()
		contents, err := reg.Export(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return contents
	}()
	srcRep, err := seglog.Verify(filepath.Join(d.dir, devenv.AuditDir), d.signer.Public())
	if err != nil || !srcRep.OK() || srcRep.Chains[0].Boundary == 0 || srcRep.Checkpoints < 4 {
		t.Fatalf("the dev log should verify with a boundary and checkpoints: %+v, %v", srcRep, err)
	}

	t.Run("copies and verifies", func(t *testing.T) {
		tg := newTarget(t, c, true)
		code, out, errOut := d.migrate(t, tg)
		want := fmt.Sprintf("OK: target verified: 3 consumers, 4 grants, 4 credentials, %d records (seq %d to %d), %d signed checkpoints (retention boundary at seq %d)\n",
			srcRep.Records, srcRep.FirstSeq, srcRep.LastSeq, srcRep.Checkpoints, srcRep.Chains[0].Boundary)
		if code != 0 || !strings.HasSuffix(out, want) {
			t.Fatalf("migrate: exit %d\n%s%s\nwant the last line %q", code, out, errOut, want)
		}
		t.Logf("relaisctl store migrate:\n%s", out)
		// Checked here independently of the command's own checks: the
		// registry reads back equal, the log is the same bytes and verifies.
		gotReg, gotLog := tg.state(t)
		if !registrytest.SameContents(gotReg, srcReg) || len(gotReg.Grants) != 4 {
			t.Fatalf("target registry:\n got %+v\nwant %+v", gotReg, srcReg)
		}
		if src := d.sourceExport(t); !bytes.Equal(gotLog, src) {
			t.Fatalf("the target's export differs from the source's:\n got %s\nwant %s", gotLog, src)
		}
		rep, err := seal.VerifyExport(bytes.NewReader(gotLog), d.signer.Public())
		if err != nil || !rep.OK() || rep.Records != srcRep.Records || rep.Checkpoints != srcRep.Checkpoints {
			t.Fatalf("target verification: %+v, %v", rep, err)
		}
		// The copied chain goes on: a writer on chain "" follows its head.
		st, err := pglog.Open(context.Background(), tg.pool, pglog.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if h, err := st.Head(context.Background()); err != nil || h.Seq != srcRep.LastSeq {
			t.Fatalf("target head %+v, %v; want seq %d", h, err, srcRep.LastSeq)
		}

		// A second run finds the target not empty and changes nothing.
		code, out, errOut = d.migrate(t, tg)
		if code != 1 || !strings.Contains(errOut, "target not empty: the database already holds registry consumers") || !strings.Contains(errOut, "nothing was changed") || strings.Contains(errOut, "partial copy") {
			t.Fatalf("second run: exit %d\n%s%s", code, out, errOut)
		}
		if reg2, log2 := tg.state(t); !registrytest.SameContents(reg2, gotReg) || !bytes.Equal(log2, gotLog) {
			t.Fatal("the refused second run changed the target")
		}
		// --resume on a complete copy has nothing to copy and verifies it.
		code, out, errOut = d.migrate(t, tg, "--resume")
		if code != 0 || !strings.Contains(out, fmt.Sprintf("resuming after seq %d:", srcRep.LastSeq)) || !strings.HasSuffix(out, want) {
			t.Fatalf("--resume on a complete copy: exit %d\n%s%s", code, out, errOut)
		}
		if reg2, log2 := tg.state(t); !registrytest.SameContents(reg2, gotReg) || !bytes.Equal(log2, gotLog) {
			t.Fatal("--resume on a complete copy changed it")
		}
	})

	t.Run("an interrupted copy is refused, then finished with --resume", func(t *testing.T) {
		tg := newTarget(t, c, true)
		copied := d.partialCopy(t, tg, 2)
		if copied != srcRep.FirstSeq+5 {
			t.Fatalf("interrupted copy up to seq %d; want %d", copied, srcRep.FirstSeq+5)
		}
		_, partial := tg.state(t)
		if rep, err := seal.VerifyExport(bytes.NewReader(partial), d.signer.Public()); err != nil || !rep.OK() || rep.LastSeq != copied {
			t.Fatalf("the partial copy should be a verifying prefix up to seq %d: %+v, %v", copied, rep, err)
		}
		code, out, errOut := d.migrate(t, tg)
		if code != 1 || !strings.Contains(errOut, `target not empty: the database already holds audit records (chain "")`) || !strings.Contains(errOut, "--resume") {
			t.Fatalf("second run: exit %d\n%s%s", code, out, errOut)
		}
		if reg, after := tg.state(t); len(reg.Consumers) != 0 || !bytes.Equal(after, partial) {
			t.Fatal("the refused second run changed the target")
		}
		code, out, errOut = d.migrate(t, tg, "--resume")
		if code != 0 || !strings.Contains(out, fmt.Sprintf("resuming after seq %d: the target holds the source's audit log up to it\n", copied)) || !strings.Contains(out, "OK: target verified: 3 consumers, 4 grants, 4 credentials") {
			t.Fatalf("--resume: exit %d\n%s%s", code, out, errOut)
		}
		gotReg, gotLog := tg.state(t)
		if !registrytest.SameContents(gotReg, srcReg) || !bytes.Equal(gotLog, d.sourceExport(t)) {
			t.Fatal("the resumed copy is not the source")
		}
	})

	t.Run("refuses to resume onto another log", func(t *testing.T) {
		other := newDevData(t)
		tg := newTarget(t, c, true)
		other.partialCopy(t, tg, 2)
		_, before := tg.state(t)
		code, out, errOut := d.migrate(t, tg, "--resume")
		if code != 1 || !strings.Contains(errOut, "--resume: the target's audit log (up to seq 18) is not the start of the source's: not a partial copy of this source, nothing was changed") {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		if reg, after := tg.state(t); len(reg.Consumers) != 0 || !bytes.Equal(after, before) {
			t.Fatal("the refused run changed the target")
		}
	})

	t.Run("refuses a target holding another chain", func(t *testing.T) {
		tg := newTarget(t, c, true)
		st, err := pglog.Open(context.Background(), tg.pool, pglog.Options{Chain: "relaisd-1"})
		if err != nil {
			t.Fatal(err)
		}
		audittest.Seed(t, st, d.signer, "relaisd-1", audittest.Records(1, 3), 2)
		st.Close()
		_, before := tg.state(t)
		code, out, errOut := d.migrate(t, tg)
		if code != 1 || !strings.Contains(errOut, `target not empty: the database already holds audit records (chain "relaisd-1")`) {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		code, out, errOut = d.migrate(t, tg, "--resume")
		if code != 1 || !strings.Contains(errOut, "--resume: the target holds audit records of other chains (a broker ran on it): not a partial copy of this source, nothing was changed") {
			t.Fatalf("--resume: exit %d\n%s%s", code, out, errOut)
		}
		if reg, after := tg.state(t); len(reg.Consumers) != 0 || !bytes.Equal(before, after) {
			t.Fatal("the refused run changed the target")
		}
	})

	t.Run("refuses a target holding a consumer", func(t *testing.T) {
		tg := newTarget(t, c, true)
		reg, err := pgreg.Open(context.Background(), tg.pool, pgreg.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := reg.AddConsumer(context.Background(), registry.Consumer{SIRET: registrytest.SiretA, Name: "A"}); err != nil {
			t.Fatal(err)
		}
		code, out, errOut := d.migrate(t, tg)
		if code != 1 || !strings.Contains(errOut, "target not empty: the database already holds registry consumers") {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		code, out, errOut = d.migrate(t, tg, "--resume")
		if code != 1 || !strings.Contains(errOut, "--resume: the target registry holds 1 consumer, 0 grants, 0 credentials, the source 3 consumers, 4 grants, 4 credentials: not a partial copy of this source, nothing was changed") {
			t.Fatalf("--resume: exit %d\n%s%s", code, out, errOut)
		}
		if got, log := tg.state(t); len(got.Consumers) != 1 || len(log) != 0 {
			t.Fatalf("the refused run changed the target: %d consumers, export %q", len(got.Consumers), log)
		}
	})

	t.Run("refuses a schema not migrated", func(t *testing.T) {
		tg := newTarget(t, c, false)
		code, out, errOut := d.migrate(t, tg)
		if code != 1 || !strings.Contains(errOut, "run relaisctl db migrate") {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
	})

	t.Run("copies the audit.db of an earlier version", func(t *testing.T) {
		old := newDevDataOf(t, true)
		tg := newTarget(t, c, true)
		code, out, errOut := old.migrate(t, tg)
		if code != 0 || !strings.Contains(out, "OK: target verified: 3 consumers, 4 grants, 4 credentials") {
			t.Fatalf("migrate: exit %d\n%s%s", code, out, errOut)
		}
		if _, gotLog := tg.state(t); !bytes.Equal(gotLog, old.sourceExport(t)) {
			t.Fatal("the target's export differs from the audit.db's")
		}
	})

	t.Run("refuses a damaged source directory before copying", func(t *testing.T) {
		damaged := newDevData(t)
		segs, _ := filepath.Glob(filepath.Join(damaged.dir, devenv.AuditDir, "*.seg"))
		if len(segs) < 2 {
			t.Fatalf("segments: %v", segs)
		}
		raw, err := os.ReadFile(segs[len(segs)-1])
		if err != nil {
			t.Fatal(err)
		}
		i := bytes.LastIndex(raw, []byte(`"case-`))
		if i < 0 {
			t.Fatal("no record in the last segment")
		}
		raw[i+len(`"case-`)] ^= 1
		if err := os.WriteFile(segs[len(segs)-1], raw, 0o600); err != nil {
			t.Fatal(err)
		}
		tg := newTarget(t, c, true)
		code, out, errOut := damaged.migrate(t, tg)
		if code != 1 || !strings.Contains(errOut, "read the source audit log") || !strings.Contains(errOut, filepath.Base(segs[len(segs)-1])) {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		tg.mustBeEmpty(t)
	})

	t.Run("refuses a tampered source before copying", func(t *testing.T) {
		tampered := newDevDataOf(t, true)
		first := tamper(t, filepath.Join(tampered.dir, devenv.AuditFile))
		tg := newTarget(t, c, true)
		code, out, errOut := tampered.migrate(t, tg)
		want := fmt.Sprintf("the source audit log does not verify with this public key (FAILED at seq %d: record %d was modified (hash mismatch)): nothing was copied", first, first)
		if code != 1 || !strings.Contains(errOut, want) {
			t.Fatalf("exit %d\n%s%s\nwant %q", code, out, errOut, want)
		}
		tg.mustBeEmpty(t)
	})

	t.Run("refuses a foreign public key", func(t *testing.T) {
		other := newDevData(t)
		tg := newTarget(t, c, true)
		code, out, errOut := relaisctl(t, "store", "migrate", "--from", "bbolt:"+d.dir, "--to", "postgres",
			"--to-dsn-file", tg.dsnFile, "--public-key", other.pubFile)
		if code != 1 || !strings.Contains(errOut, "signature does not verify with this public key") || !strings.Contains(errOut, "nothing was copied") {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		tg.mustBeEmpty(t)
	})

	old := newDevDataOf(t, true)
	for _, tc := range []struct {
		d    devData
		file string
	}{{d, devenv.RegistryFile}, {old, devenv.AuditFile}} {
		t.Run("refuses a source locked by a running broker: "+tc.file, func(t *testing.T) {
			path := filepath.Join(tc.d.dir, tc.file)
			db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second}) // what relaisd holds
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			tg := newTarget(t, c, true)
			code, out, errOut := tc.d.migrate(t, tg)
			want := fmt.Sprintf("source: %s is locked by a running broker: stop relaisd before migrating its stores", path)
			if code != 1 || !strings.Contains(errOut, want) {
				t.Fatalf("exit %d\n%s%s\nwant %q", code, out, errOut, want)
			}
			tg.mustBeEmpty(t)
		})
	}
	t.Run("refuses a source locked by a running broker: audit/", func(t *testing.T) {
		st, err := seglog.OpenStore(filepath.Join(d.dir, devenv.AuditDir), seglog.StoreOptions{SegmentSize: 4 << 10}) // what relaisd holds
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		tg := newTarget(t, c, true)
		code, out, errOut := d.migrate(t, tg)
		if code != 1 || !strings.Contains(errOut, "is in use by a running broker") || !strings.Contains(errOut, "nothing was copied") {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		tg.mustBeEmpty(t)
	})
}

// partialCopy copies d's audit log into tg (no registry) in batches of 3
// and interrupts the copy after `commits` commits, as a ^C would; it
// returns the last seq copied.
func (d devData) partialCopy(t *testing.T, tg target, commits int) uint64 {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dst, err := pglog.Open(ctx, tg.pool, pglog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	src, err := openSource(d.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer src.close()
	m := &migration{batch: 3}
	if err := m.copyAudit(ctx, src.audit, &interrupting{Storage: dst, after: commits, cancel: cancel}, seal.Head{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted copy: %v; want context canceled", err)
	}
	return m.copied
}

// interrupting cancels the run after its first commits, like a ^C.
type interrupting struct {
	auditlog.Storage
	after  int
	cancel context.CancelFunc
}

func (s *interrupting) Commit(ctx context.Context, recs []seal.Sealed, cps []seal.Checkpoint) error {
	err := s.Storage.Commit(ctx, recs, cps)
	if s.after--; s.after == 0 {
		s.cancel()
	}
	return err
}

// tamper changes one byte of a record in the middle of the log file at
// path and returns its seq.
func tamper(t *testing.T, path string) uint64 {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var seq uint64
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("records"))
		k, _ := b.Cursor().Last()
		seq = binary.BigEndian.Uint64(k) - 2
		key := binary.BigEndian.AppendUint64(nil, seq)
		raw := bytes.Clone(b.Get(key))
		i := bytes.Index(raw, []byte(`"case-`))
		if i < 0 {
			return fmt.Errorf("record %d has no case reference: %s", seq, raw)
		}
		raw[i+len(`"case-`)] ^= 1 // a digit becomes another
		return b.Put(key, raw)
	})
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

func TestStoreMigrateRefusesBadInvocations(t *testing.T) {
	t.Setenv(pgdb.DSNEnv, "")
	dir := t.TempDir()
	pub := filepath.Join(dir, "audit.pub")
	if err := keyfile.CreateSigningKey(filepath.Join(dir, "audit.key"), pub); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(dir, "dsn")
	if err := os.WriteFile(secret, []byte("postgres://u:Sup3rS3cret@127.0.0.1:1/db?connect_timeout=1"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"store"}, 2, "usage: relaisctl store migrate"},
		{[]string{"store", "copy"}, 2, "usage: relaisctl store migrate"},
		{[]string{"store", "migrate", "--to", "postgres", "--public-key", pub}, 2, "--from must be bbolt:DIR"},
		{[]string{"store", "migrate", "--from", dir, "--to", "postgres", "--public-key", pub}, 2, "--from must be bbolt:DIR"},
		{[]string{"store", "migrate", "--from", "bbolt:" + dir, "--to", "postgres://u:Sup3rS3cret@h/db", "--public-key", pub}, 2, "--to must be postgres; the DSN comes from --to-dsn-file"},
		{[]string{"store", "migrate", "--from", "bbolt:" + dir, "--to", "postgres"}, 2, "--public-key is required"},
		{[]string{"store", "migrate", "--from", "bbolt:" + dir, "--to", "postgres", "--public-key", pub, "--batch", "0"}, 2, "--batch must be between 1 and 10000"},
		{[]string{"store", "migrate", "--from", "bbolt:" + dir, "--to", "postgres", "--public-key", filepath.Join(dir, "missing.pub")}, 1, "missing.pub"},
		{[]string{"store", "migrate", "--from", "bbolt:" + dir, "--to", "postgres", "--public-key", pub}, 2, "no database dsn: give a dsn file or set RELAIS_DATABASE_DSN"},
		{[]string{"store", "migrate", "--from", "bbolt:" + empty, "--to", "postgres", "--public-key", pub, "--to-dsn-file", secret}, 1, "registry.db: no such file or directory (--from names the data directory of the broker"},
		{[]string{"store", "migrate", "--from", "bbolt:" + dir, "--to", "postgres", "--public-key", pub, "extra"}, 2, `unexpected argument "extra"`},
	} {
		code, out, errOut := relaisctl(t, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) || strings.Contains(out+errOut, "Sup3rS3cret") {
			t.Errorf("%v: exit %d, stderr %q; want exit %d saying %q, never the password", tc.args, code, errOut, tc.code, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(empty, devenv.RegistryFile)); err == nil {
		t.Error("a refused run created a registry file in the source directory")
	}
}

// BenchmarkStoreMigrate measures a whole migration (source verification,
// copy, target verification) of an audit log of 20,000 records with a
// checkpoint every 1000, in records per second of the whole run.
func BenchmarkStoreMigrate(b *testing.B) {
	const records = 20000
	c := pgtest.Start(b)
	dir := b.TempDir()
	pubFile := filepath.Join(dir, "audit.pub")
	if err := keyfile.CreateSigningKey(filepath.Join(dir, "audit.key"), pubFile); err != nil {
		b.Fatal(err)
	}
	key, err := keyfile.ReadSigningKey(filepath.Join(dir, "audit.key"))
	if err != nil {
		b.Fatal(err)
	}
	reg, err := boltreg.Open(filepath.Join(dir, devenv.RegistryFile), boltreg.Options{})
	if err != nil {
		b.Fatal(err)
	}
	reg.Close()
	st, err := seglog.OpenStore(filepath.Join(dir, devenv.AuditDir), seglog.StoreOptions{})
	if err != nil {
		b.Fatal(err)
	}
	audittest.Seed(b, st, seal.Ed25519Signer(key), "", audittest.Records(1, records), 1000)
	st.Close()
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		tg := newTarget(b, c, true)
		b.StartTimer()
		var out, errb bytes.Buffer
		if code := run(context.Background(), []string{"store", "migrate", "--from", "bbolt:" + dir, "--to", "postgres",
			"--to-dsn-file", tg.dsnFile, "--public-key", pubFile}, &out, &errb); code != 0 {
			b.Fatalf("exit %d\n%s%s", code, out.String(), errb.String())
		}
	}
	b.ReportMetric(float64(records*b.N)/b.Elapsed().Seconds(), "records/s")
}
