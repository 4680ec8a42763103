// Package boltlog is the embedded audit storage of Relais: one bbolt file
// holding the sealed chain (broker/audit/seal), its signed checkpoints and
// a subject index. Store implements auditlog.Storage; Open gives the
// embedded default, the file with the group-commit writer over it
// (auditlog.Log). Verify and ExportFile read the file of a stopped broker
// with the public key alone; a running broker is verified through the
// admin API (relaisctl audit verify --online).
//
// The layout is the one boltlog always wrote (buckets meta, records,
// checkpoints, by_subject; big-endian sequence keys; the magic
// "relais-audit-log-v1"), so existing files keep opening and verifying.
package boltlog

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/audit/auditlog"
	"github.com/relais-broker/relais/broker/audit/seal"
)

var (
	bucketMeta        = []byte("meta")
	bucketRecords     = []byte("records")
	bucketCheckpoints = []byte("checkpoints")
	bucketBySubject   = []byte("by_subject")
	keyMagic          = []byte("magic")
	keyHead           = []byte("head") // seq (8 bytes) + hash (32 bytes)
)

const magic = "relais-audit-log-v1"

// Store is an audit log file; it implements auditlog.Storage. Safe for
// concurrent use (bbolt serialises the writes).
type Store struct {
	db   *bolt.DB
	path string
	once sync.Once
}

var _ auditlog.Storage = (*Store)(nil)

// OpenStore opens or creates the log file at path (0600). A file another
// process holds, or a bbolt file that is not an audit log, is refused and
// left untouched.
func OpenStore(path string) (*Store, error) {
	// A long read (an online export streamed to a slow client) holds the
	// mmap: a commit that must grow it waits for the read to end. bbolt
	// doubles the map, so that happens a few times in a file's life;
	// mapping ahead would grow the file by 16 MiB steps (AllocSize).
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("audit log %s is locked by another process", path)
	case err != nil:
		return nil, fmt.Errorf("audit log %s is not a readable log file (%v); it was left untouched", path, err)
	}
	if err := prepare(db, path); err != nil {
		db.Close()
		return nil, err
	}
	return &Store{db: db, path: path}, nil
}

// OpenStoreReadOnly opens the log file of a stopped broker (or a copy)
// for reading: Export, Query, Verify. Writes fail.
func OpenStoreReadOnly(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("audit log %s is in use by a running broker: verify it online (relaisctl audit verify --online) or verify a copy", path)
	case err != nil:
		return nil, fmt.Errorf("audit: open %s read-only: %w", path, err)
	}
	s := &Store{db: db, path: path}
	if err := db.View(func(tx *bolt.Tx) error {
		if m := tx.Bucket(bucketMeta); m == nil || string(m.Get(keyMagic)) != magic || tx.Bucket(bucketRecords) == nil || tx.Bucket(bucketCheckpoints) == nil {
			return fmt.Errorf("%s is not a Relais audit log", path)
		}
		return nil
	}); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func prepare(db *bolt.DB, path string) error {
	var foreign bool
	_ = db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta != nil {
			foreign = string(meta.Get(keyMagic)) != magic
			return nil
		}
		foreign = tx.ForEach(func([]byte, *bolt.Bucket) error { return errors.New("not empty") }) != nil
		return nil
	})
	if foreign {
		return fmt.Errorf("audit log %s is a bbolt file but not a Relais audit log; it was left untouched", path)
	}
	return db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketRecords, bucketCheckpoints, bucketBySubject} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keyMagic, []byte(magic))
	})
}

// Path is the file's path.
func (s *Store) Path() string { return s.path }

// Close implements auditlog.Storage; a second Close does nothing.
func (s *Store) Close() error {
	var err error
	s.once.Do(func() { err = s.db.Close() })
	return err
}

// Head implements auditlog.Storage.
func (s *Store) Head(context.Context) (seal.Head, error) {
	var h seal.Head
	err := s.db.View(func(tx *bolt.Tx) error {
		h = readHead(tx)
		return nil
	})
	return h, err
}

func readHead(tx *bolt.Tx) seal.Head {
	var h seal.Head
	if raw := tx.Bucket(bucketMeta).Get(keyHead); len(raw) == 40 {
		h.Seq = binary.BigEndian.Uint64(raw[:8])
		copy(h.Hash[:], raw[8:])
	}
	if k, _ := tx.Bucket(bucketCheckpoints).Cursor().Last(); len(k) == 8 {
		h.LastCheckpoint = binary.BigEndian.Uint64(k)
	}
	return h
}

// Commit implements auditlog.Storage: one bbolt transaction, one fsync.
func (s *Store) Commit(ctx context.Context, recs []seal.Sealed, cps []seal.Checkpoint) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		h, err := auditlog.Follow(readHead(tx), recs, cps)
		if err != nil {
			return err
		}
		rb, idx := tx.Bucket(bucketRecords), tx.Bucket(bucketBySubject)
		for _, r := range recs {
			if err := rb.Put(seqKey(r.Seq), r.Raw); err != nil {
				return fmt.Errorf("audit: record %d: %w", r.Seq, err)
			}
			if r.Record.Subject != "" {
				if err := idx.Put(subjectKey(r.Record.Subject, r.Seq), nil); err != nil {
					return fmt.Errorf("audit: record %d: %w", r.Seq, err)
				}
			}
		}
		for _, c := range cps {
			if err := putCheckpoint(tx, c); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keyHead, append(seqKey(h.Seq), h.Hash[:]...))
	})
}

func putCheckpoint(tx *bolt.Tx, c seal.Checkpoint) error {
	raw, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketCheckpoints).Put(seqKey(c.Seq), raw); err != nil {
		return fmt.Errorf("audit: checkpoint %d: %w", c.Seq, err)
	}
	return nil
}

// Query implements auditlog.Storage.
func (s *Store) Query(ctx context.Context, f audit.Filter) ([]audit.Record, error) {
	if f.Limit <= 0 {
		f.Limit = audit.DefaultLimit
	}
	var out []audit.Record
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRecords).Cursor()
		for k, v := c.First(); k != nil && len(out) < f.Limit; k, v = c.Next() {
			sl, err := seal.Unseal(v)
			if err != nil {
				return fmt.Errorf("audit: record %d: %w", binary.BigEndian.Uint64(k), err)
			}
			if f.Match(sl.Record) {
				out = append(out, sl.Record)
			}
			if len(out)%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return out, err
}

// Subject implements auditlog.Storage, through the subject index.
func (s *Store) Subject(_ context.Context, pseudonym string) ([]audit.Record, error) {
	if pseudonym == "" {
		return nil, nil
	}
	var out []audit.Record
	prefix := []byte(pseudonym + "/")
	err := s.db.View(func(tx *bolt.Tx) error {
		recs := tx.Bucket(bucketRecords)
		c := tx.Bucket(bucketBySubject).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if len(k) != len(prefix)+8 {
				continue // a longer pseudonym with this one as prefix
			}
			raw := recs.Get(k[len(prefix):])
			if raw == nil {
				continue // purged
			}
			sl, err := seal.Unseal(raw)
			if err != nil {
				return err
			}
			out = append(out, sl.Record)
		}
		return nil
	})
	return out, err
}

// exportChunk is how many records Export reads per read transaction.
const exportChunk = 1024

// Export implements auditlog.Storage: the log as it stood at Export's
// first read — the boundary first, then records in seq order, each
// checkpoint after the record of its seq. It reads in short transactions
// and calls fn between them: a read held while fn streams to a slow
// client would hold bbolt's map, and a commit that must grow the file
// would wait for it. Records are append-only, so the later reads see the
// records of the first one unchanged — unless a purge ran in between,
// which Export detects (the first checkpoint is then another) and
// reports: export again.
func (s *Store) Export(ctx context.Context, fn func(seal.Entry) error) error {
	var (
		cps        []seal.Checkpoint
		boundary   uint64
		last       uint64 // the last record key at the first read
		firstCP    []byte
		chunk      []seal.Entry
		chunkSeqs  []uint64
		next       uint64
		exhausted  bool
		errPurged  = errors.New("audit: the log was purged during the export; export again")
		readChunk  func(tx *bolt.Tx) error
		checkpoint = func(tx *bolt.Tx) []byte {
			_, v := tx.Bucket(bucketCheckpoints).Cursor().First()
			return bytes.Clone(v)
		}
	)
	readChunk = func(tx *bolt.Tx) error {
		if !bytes.Equal(checkpoint(tx), firstCP) {
			return errPurged
		}
		chunk, chunkSeqs = chunk[:0], chunkSeqs[:0]
		c := tx.Bucket(bucketRecords).Cursor()
		k, v := c.Seek(seqKey(next))
		for ; k != nil && len(chunk) < exportChunk; k, v = c.Next() {
			seq := binary.BigEndian.Uint64(k)
			if seq > last {
				break
			}
			chunk = append(chunk, seal.RecordEntry(bytes.Clone(v)))
			chunkSeqs = append(chunkSeqs, seq)
		}
		exhausted = k == nil || binary.BigEndian.Uint64(k) > last
		if len(chunkSeqs) > 0 {
			next = chunkSeqs[len(chunkSeqs)-1] + 1
		}
		return nil
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketCheckpoints).ForEach(func(k, v []byte) error {
			var c seal.Checkpoint
			if err := json.Unmarshal(v, &c); err != nil || len(k) != 8 {
				return fmt.Errorf("audit: the checkpoint under key %x is unreadable", k)
			}
			if c.Boundary {
				boundary = max(boundary, c.Seq)
			}
			cps = append(cps, c)
			return nil
		})
		if err != nil {
			return err
		}
		firstCP = checkpoint(tx)
		if k, _ := tx.Bucket(bucketRecords).Cursor().Last(); len(k) == 8 {
			last = binary.BigEndian.Uint64(k)
		}
		next = boundary + 1
		return readChunk(tx)
	})
	if err != nil {
		return err
	}
	// The boundary first; the checkpoints it superseded are skipped.
	var rest []seal.Checkpoint
	for _, c := range cps {
		switch {
		case c.Boundary && c.Seq == boundary:
			if err := fn(seal.CheckpointEntry(c)); err != nil {
				return err
			}
		case c.Seq > boundary:
			rest = append(rest, c)
		}
	}
	for {
		for i, e := range chunk {
			for len(rest) > 0 && rest[0].Seq < chunkSeqs[i] {
				if err := fn(seal.CheckpointEntry(rest[0])); err != nil {
					return err
				}
				rest = rest[1:]
			}
			if err := fn(e); err != nil {
				return err
			}
		}
		if exhausted {
			break
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.db.View(readChunk); err != nil {
			return err
		}
	}
	for _, c := range rest {
		if err := fn(seal.CheckpointEntry(c)); err != nil {
			return err
		}
	}
	return nil
}

// Purge implements auditlog.Storage: the records older than before, from
// the start of the log, go with their index entries and the checkpoints
// the boundary supersedes, in one transaction.
func (s *Store) Purge(_ context.Context, before time.Time, boundary func(chain string, seq uint64, head string) (seal.Checkpoint, error)) (int, error) {
	var last seal.Sealed
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRecords).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			sl, err := seal.Unseal(v)
			if err != nil {
				return fmt.Errorf("audit: purge: record %d: %w", binary.BigEndian.Uint64(k), err)
			}
			if !sl.Record.Time.Before(before) {
				break
			}
			last, n = sl, n+1
		}
		return nil
	})
	if err != nil || n == 0 {
		return 0, err
	}
	// Signed outside the write transaction: a remote signer may be slow.
	cp, err := boundary("", last.Seq, last.Hash)
	if err != nil {
		return 0, err
	}
	if !cp.Boundary || cp.Seq != last.Seq || cp.Head != last.Hash {
		return 0, errors.New("audit: purge: the boundary checkpoint does not match the last purged record")
	}
	deleted := 0
	err = s.db.Update(func(tx *bolt.Tx) error {
		recs, idx := tx.Bucket(bucketRecords), tx.Bucket(bucketBySubject)
		if raw := recs.Get(seqKey(last.Seq)); raw == nil || !bytes.Equal(raw, last.Raw) {
			return errors.New("audit: purge: the log changed during the purge (another purge?)")
		}
		c := recs.Cursor()
		for k, v := c.First(); k != nil && binary.BigEndian.Uint64(k) <= last.Seq; k, v = c.First() {
			sl, err := seal.Unseal(v)
			if err != nil {
				return err
			}
			if sl.Record.Subject != "" {
				if err := idx.Delete(subjectKey(sl.Record.Subject, binary.BigEndian.Uint64(k))); err != nil {
					return err
				}
			}
			if err := c.Delete(); err != nil {
				return err
			}
			deleted++
		}
		cps := tx.Bucket(bucketCheckpoints).Cursor()
		for k, _ := cps.First(); k != nil && binary.BigEndian.Uint64(k) <= last.Seq; k, _ = cps.First() {
			if err := cps.Delete(); err != nil {
				return err
			}
		}
		return putCheckpoint(tx, cp)
	})
	if err != nil {
		return 0, err
	}
	return deleted, nil
}

func seqKey(seq uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, seq)
	return k
}

func subjectKey(pseudonym string, seq uint64) []byte {
	return append([]byte(pseudonym+"/"), seqKey(seq)...)
}
