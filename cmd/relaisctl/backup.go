package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/relais-broker/relais/broker/audit/auditlog"
	"github.com/relais-broker/relais/broker/audit/boltlog"
	"github.com/relais-broker/relais/broker/audit/seal"
	"github.com/relais-broker/relais/broker/audit/seglog"
	"github.com/relais-broker/relais/internal/devenv"
	adminv1 "github.com/relais-broker/relais/proto/relais/admin/v1"
)

// manifestFile describes a backup directory: what restore checks first.
const manifestFile = "backup.json"

// backupTimeout bounds an online backup: whole files, not one call.
const backupTimeout = 2 * time.Hour

// A backup holds the registry and the audit log: registry.db (a bbolt
// snapshot), and the audit directory's export, audit.jsonl — the records'
// bytes unchanged, verifiable offline (relaisctl audit verify --file) and
// restored into a new audit directory with auditlog.Copy. A backup of a
// broker of an earlier version holds audit.db instead; restore installs
// it as it is and the broker migrates it at start.
var (
	auditBackupFiles = []string{devenv.AuditBackupFile, devenv.AuditFile}
	backupNames      = append([]string{devenv.RegistryFile}, auditBackupFiles...)
)

// manifest is backup.json: sizes and digests of the files, and what the
// verification found (counts only: no personal data).
type manifest struct {
	Taken     time.Time      `json:"taken"`
	Files     []manifestItem `json:"files"`
	Registry  string         `json:"registry"`
	Audit     string         `json:"audit"`
	Relaisctl string         `json:"relaisctl_version"`
}

type manifestItem struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

func backupCmd() *cobra.Command {
	return leaf("backup --out DIR [--public-key FILE]…",
		"Take consistent snapshots of a running broker's registry and audit log (admin API, embedded stores), and verify them",
		`  relaisctl backup --out /var/backups/relais/$(date +%F) --public-key /etc/relais/keys/audit-signing.pub
  relaisctl restore --from /var/backups/relais/2027-01-31 --data-dir /var/lib/relais-restored --public-key audit-signing.pub`,
		func(fs *pflag.FlagSet) body {
			af := addConnFlags(fs)
			out := fs.String("out", "", "a new (or empty) directory for registry.db, audit.jsonl (the audit log's export) and backup.json (0600 files, 0700 directory)")
			pubFiles := fs.StringArray("public-key", []string{"relais-dev/keys/" + devenv.AuditPublicKeyFile}, "the audit signing public key(s) the audit snapshot must verify with")
			return func(ctx context.Context, stdout, stderr io.Writer) int {
				if *out == "" || fs.NArg() > 0 {
					fmt.Fprintln(stderr, "relaisctl backup: --out is required, and nothing else")
					return 2
				}
				keys, err := readPublicKeys(*pubFiles)
				if err != nil {
					fmt.Fprintf(stderr, "relaisctl backup: %v\n", err)
					return 1
				}
				if err := freshDir(*out); err != nil {
					fmt.Fprintf(stderr, "relaisctl backup: %v\n", err)
					return 1
				}
				m, err := takeBackup(ctx, af, *out)
				if err == nil {
					err = checkBackup(ctx, *out, keys, m)
				}
				if err == nil {
					err = writeManifest(*out, m)
				}
				if err != nil {
					fmt.Fprintf(stderr, "relaisctl backup: %v (the files in %s are not a usable backup)\n", err, *out)
					return 1
				}
				fmt.Fprintf(stdout, "OK: backup in %s: registry (%s), audit log (%s)\n", *out, m.Registry, m.Audit)
				return 0
			}
		})
}

func restoreCmd() *cobra.Command {
	return leaf("restore --from BACKUP --data-dir DIR [--public-key FILE]…",
		"Check a backup and install it into a fresh data directory for relaisd serve",
		`  relaisctl restore --from /var/backups/relais/2027-01-31 --data-dir /var/lib/relais --public-key audit-signing.pub
  relaisd serve --config relaisd.yaml     # data_dir: /var/lib/relais`,
		func(fs *pflag.FlagSet) body {
			from := fs.String("from", "", "the backup directory (relaisctl backup --out)")
			dir := fs.String("data-dir", "", "the data directory to restore into: new, or without registry.db and an audit log (audit/, audit.db)")
			pubFiles := fs.StringArray("public-key", []string{"relais-dev/keys/" + devenv.AuditPublicKeyFile}, "the audit signing public key(s) the audit log must verify with")
			return func(ctx context.Context, stdout, stderr io.Writer) int {
				if *from == "" || *dir == "" || fs.NArg() > 0 {
					fmt.Fprintln(stderr, "relaisctl restore: --from and --data-dir are required, and nothing else")
					return 2
				}
				keys, err := readPublicKeys(*pubFiles)
				if err != nil {
					fmt.Fprintf(stderr, "relaisctl restore: %v\n", err)
					return 1
				}
				m, err := restoreBackup(ctx, *from, *dir, keys)
				if err != nil {
					fmt.Fprintf(stderr, "relaisctl restore: %v\n", err)
					return 1
				}
				fmt.Fprintf(stdout, "OK: restored the backup of %s into %s: registry (%s), audit log (%s); start relaisd serve with data_dir: %s\n",
					m.Taken.UTC().Format(time.RFC3339), *dir, m.Registry, m.Audit, *dir)
				return 0
			}
		})
}

// freshDir creates dir (0700) or accepts it empty: a backup never mixes
// with other files.
func freshDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return os.MkdirAll(dir, 0o700)
	case err != nil:
		return err
	case len(entries) > 0:
		return fmt.Errorf("%s is not empty: give a new directory (nothing was written)", dir)
	}
	return nil
}

// takeBackup receives the snapshots into dir, each file checked against
// the size and digest of its last chunk.
func takeBackup(ctx context.Context, af *adminFlags, dir string) (*manifest, error) {
	conn, err := af.dial()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, backupTimeout)
	defer cancel()
	m := &manifest{Taken: time.Now().UTC(), Relaisctl: version}
	stream, err := adminv1.NewBackupAdminServiceClient(conn).Backup(ctx, &adminv1.BackupRequest{})
	if err != nil {
		return nil, errors.New(describe(err))
	}
	var cur *receiving
	defer func() {
		if cur != nil {
			cur.abort()
		}
	}()
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, errors.New(describe(err))
		}
		if cur == nil || cur.name != msg.GetFile() {
			if cur != nil {
				return nil, fmt.Errorf("%s: the stream moved to %q before its last chunk", cur.name, msg.GetFile())
			}
			if !slices.Contains(backupNames, msg.GetFile()) || slices.ContainsFunc(m.Files, func(i manifestItem) bool { return i.Name == msg.GetFile() }) {
				return nil, fmt.Errorf("unexpected file %q in the backup stream", msg.GetFile())
			}
			if cur, err = startReceiving(dir, msg.GetFile()); err != nil {
				return nil, err
			}
		}
		if msg.GetOffset() != cur.n {
			return nil, fmt.Errorf("%s: chunk at offset %d, want %d", cur.name, msg.GetOffset(), cur.n)
		}
		if err := cur.write(msg.GetData()); err != nil {
			return nil, err
		}
		if msg.GetLast() {
			item, err := cur.finish(msg.GetSize(), msg.GetSha256())
			if err != nil {
				return nil, err
			}
			m.Files = append(m.Files, item)
			cur = nil
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("%s: the stream ended before its last chunk", cur.name)
	}
	if _, err := m.auditFile(); err != nil {
		return nil, errors.New("the broker sent " + err.Error())
	}
	return m, nil
}

// auditFile is the name of the audit log's file the manifest lists, once:
// with registry.db, exactly one of audit.jsonl and audit.db.
func (m *manifest) auditFile() (string, error) {
	has := func(name string) bool {
		return slices.ContainsFunc(m.Files, func(i manifestItem) bool { return i.Name == name })
	}
	if !has(devenv.RegistryFile) {
		return "", fmt.Errorf("no %s", devenv.RegistryFile)
	}
	var found []string
	for _, name := range auditBackupFiles {
		if has(name) {
			found = append(found, name)
		}
	}
	if len(found) != 1 {
		return "", fmt.Errorf("%d audit log files (%s), want one of %s", len(found), strings.Join(found, ", "), strings.Join(auditBackupFiles, ", "))
	}
	return found[0], nil
}

// receiving is one snapshot file being written (name.partial until whole).
type receiving struct {
	name, path string
	f          *os.File
	sum        hashWriter
	n          int64
}

type hashWriter interface {
	io.Writer
	Sum([]byte) []byte
}

func startReceiving(dir, name string) (*receiving, error) {
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path+".partial", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	return &receiving{name: name, path: path, f: f, sum: sha256.New()}, nil
}

func (r *receiving) write(p []byte) error {
	if _, err := r.f.Write(p); err != nil {
		return err
	}
	r.sum.Write(p)
	r.n += int64(len(p))
	return nil
}

func (r *receiving) finish(size int64, digest string) (manifestItem, error) {
	got := hex.EncodeToString(r.sum.Sum(nil))
	if size != r.n || digest != got {
		return manifestItem{}, fmt.Errorf("%s: received %d bytes with SHA-256 %s, the broker sent %d bytes with %s", r.name, r.n, got, size, digest)
	}
	err := r.f.Sync()
	if cerr := r.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(r.path+".partial", r.path)
	}
	if err != nil {
		return manifestItem{}, err
	}
	return manifestItem{Name: r.name, Size: size, SHA256: got}, nil
}

func (r *receiving) abort() {
	r.f.Close()
	os.Remove(r.path + ".partial")
}

// checkBackup opens the snapshot files read-only: the registry must read,
// the audit log (its export, or an earlier version's audit.db) must
// verify with keys.
func checkBackup(ctx context.Context, dir string, keys []ed25519.PublicKey, m *manifest) error {
	auditName, err := m.auditFile()
	if err != nil {
		return fmt.Errorf("%s lists %v", manifestFile, err)
	}
	src := &source{}
	defer src.close()
	if src.regDB, err = openReadOnly(filepath.Join(dir, devenv.RegistryFile)); err != nil {
		return err
	}
	contents, err := src.exportRegistry(ctx)
	if err != nil {
		return err
	}
	m.Registry = registryCounts(contents)
	export := exportFileSource(filepath.Join(dir, auditName))
	if auditName == devenv.AuditFile {
		st, err := boltlog.OpenStoreReadOnly(filepath.Join(dir, auditName))
		if err != nil {
			return fmt.Errorf("audit snapshot: %w", err)
		}
		defer st.Close()
		export = st.Export
	}
	v := seal.NewVerifier(keys[0], keys[1:]...)
	errStop := errors.New("stop")
	err = export(ctx, func(e seal.Entry) error {
		if !v.Add(e) {
			return errStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return fmt.Errorf("audit snapshot: %w", err)
	}
	rep := v.Report()
	if !rep.OK() {
		return fmt.Errorf("audit snapshot FAILED verification at seq %d of chain %q: %s", rep.BadSeq, rep.Chain, rep.Problem)
	}
	m.Audit = fmt.Sprintf("%d records in %d chains, %d signed checkpoints verified", rep.Records, len(rep.Chains), rep.Checkpoints)
	return nil
}

// exportFileSource reads an export file (JSON lines of seal.Entry) as a
// storage's Export.
func exportFileSource(path string) func(context.Context, func(seal.Entry) error) error {
	return func(_ context.Context, fn func(seal.Entry) error) error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		return seal.ReadExport(bufio.NewReaderSize(f, 64<<10), fn)
	}
}

func writeManifest(dir string, m *manifest) error {
	raw, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return writeReplace(filepath.Join(dir, manifestFile), append(raw, '\n'), 0o600)
}

// restoreBackup checks every file of the backup against its manifest,
// verifies it, then installs it into dir: registry.db copied, the audit
// export copied into a new audit directory (auditlog.Copy into
// audit.tmp/, verified again, renamed audit/), an earlier version's
// audit.db copied as it is. dir must not hold a registry or an audit log
// already: a restore never overwrites a broker's state.
func restoreBackup(ctx context.Context, from, dir string, keys []ed25519.PublicKey) (*manifest, error) {
	raw, err := os.ReadFile(filepath.Join(from, manifestFile))
	if err != nil {
		return nil, fmt.Errorf("%w (a backup directory holds %s, written by relaisctl backup)", err, manifestFile)
	}
	var m manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(from, manifestFile), err)
	}
	auditName, err := m.auditFile()
	if err != nil {
		return nil, fmt.Errorf("%s lists %v", manifestFile, err)
	}
	for _, name := range []string{devenv.RegistryFile, auditName} {
		i := slices.IndexFunc(m.Files, func(i manifestItem) bool { return i.Name == name })
		if err := checkDigest(filepath.Join(from, name), m.Files[i]); err != nil {
			return nil, err
		}
	}
	check := m
	if err := checkBackup(ctx, from, keys, &check); err != nil {
		return nil, err
	}
	for _, name := range []string{devenv.RegistryFile, devenv.AuditFile, devenv.AuditDir, devenv.AuditDir + ".tmp"} {
		if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
			return nil, fmt.Errorf("%s already holds %s: restore into a new data directory (nothing was written)", dir, name)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if auditName == devenv.AuditFile {
		if err := copyFile(filepath.Join(from, auditName), filepath.Join(dir, auditName)); err != nil {
			return nil, err
		}
	} else if err := restoreAuditDir(ctx, filepath.Join(from, auditName), dir, keys); err != nil {
		return nil, err
	}
	if err := copyFile(filepath.Join(from, devenv.RegistryFile), filepath.Join(dir, devenv.RegistryFile)); err != nil {
		return nil, err
	}
	return &check, nil
}

// restoreAuditDir writes the audit export at path into DIR/audit through
// DIR/audit.tmp, which must verify with keys before it takes the name.
func restoreAuditDir(ctx context.Context, path, dir string, keys []ed25519.PublicKey) error {
	tmp, final := filepath.Join(dir, devenv.AuditDir+".tmp"), filepath.Join(dir, devenv.AuditDir)
	fail := func(err error) error {
		_ = os.RemoveAll(tmp)
		return fmt.Errorf("restore the audit log: %w", err)
	}
	st, err := seglog.OpenStore(tmp, seglog.StoreOptions{})
	if err != nil {
		return fail(err)
	}
	_, err = auditlog.Copy(ctx, st, exportFileSource(path))
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fail(err)
	}
	rep, err := seglog.Verify(tmp, keys[0], keys[1:]...)
	if err != nil {
		return fail(err)
	}
	if !rep.OK() {
		return fail(fmt.Errorf("the restored directory FAILED verification at seq %d: %s", rep.BadSeq, rep.Problem))
	}
	if err := os.Rename(tmp, final); err != nil {
		return fail(err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func checkDigest(path string, want manifestItem) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != want.Size || got != want.SHA256 {
		return fmt.Errorf("%s: %d bytes with SHA-256 %s, the manifest says %d bytes with %s: the backup is damaged", path, n, got, want.Size, want.SHA256)
	}
	return nil
}

// copyFile copies src to dst (0600) through a temporary file, synced.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".partial"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
