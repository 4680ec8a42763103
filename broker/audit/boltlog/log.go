// Package boltlog is the audit log of Relais: one append-only bbolt file
// where each record carries the hash of the previous one (a hash chain),
// and where a checkpoint — sequence, chain head, time — signed with the
// operator's Ed25519 key is written every N records or T seconds. Verify
// recomputes the chain and checks every signature offline, with the
// public key alone, and names the first broken sequence number for any
// modification, deletion, insertion or reordering.
//
// Records hold no attribute value and no clear identity (the subject is a
// keyed pseudonym). Appends are durable before they return (fsync), and
// grouped: while one commit is on disk, the records that arrive wait and
// go in the next commit together, so durability does not serialise every
// call behind its own fsync. A failed append is an error: the broker then
// returns no data (fail closed).
package boltlog

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/relais-broker/relais/broker/audit"
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

// Options configure a Log.
type Options struct {
	// SigningKey signs checkpoints; required.
	SigningKey ed25519.PrivateKey
	// CheckpointEvery and CheckpointInterval: a checkpoint is written
	// after this many records or this long after the last one (1000, 1 min).
	CheckpointEvery    int
	CheckpointInterval time.Duration
	// Retention: records older are purged by Purge (12 months when zero;
	// the CNIL range is 6 to 12 months).
	Retention time.Duration
	// OneCommitPerRecord disables group commit (benchmarks only).
	OneCommitPerRecord bool
	// OnCommit, when set, is told each commit's duration and size (metrics).
	OnCommit func(d time.Duration, records int)
	Clock    func() time.Time
}

// Log is an open audit log. Safe for concurrent use.
type Log struct {
	db    *bolt.DB
	opts  Options
	queue chan *pending
	stop  chan struct{}
	done  sync.WaitGroup
	once  sync.Once
	// lastErr is the outcome of the last commit, for readiness.
	lastErr atomic.Pointer[errBox]
}

type errBox struct{ err error }

// QueueDepth is the number of appends waiting for the next commit.
func (l *Log) QueueDepth() int { return len(l.queue) }

// Healthy returns the error of the last commit, nil when it succeeded (or
// none happened yet).
func (l *Log) Healthy() error {
	if b := l.lastErr.Load(); b != nil {
		return b.err
	}
	return nil
}

type pending struct {
	rec        *audit.Record
	checkpoint bool
	err        chan error
}

var _ audit.Recorder = (*Log)(nil)

// Open opens or creates the log at path (0600).
func Open(path string, o Options) (*Log, error) {
	if len(o.SigningKey) != ed25519.PrivateKeySize {
		return nil, errors.New("audit: an Ed25519 signing key is required")
	}
	if o.CheckpointEvery <= 0 {
		o.CheckpointEvery = 1000
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = time.Minute
	}
	if o.Retention <= 0 {
		o.Retention = 365 * 24 * time.Hour
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
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
	l := &Log{db: db, opts: o, queue: make(chan *pending, 4096), stop: make(chan struct{})}
	l.done.Add(1)
	go l.writer()
	return l, nil
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

// Append implements audit.Recorder: it returns once r is durable, in the
// chain, after the previous records.
func (l *Log) Append(ctx context.Context, r audit.Record) error {
	return l.submit(ctx, &pending{rec: &r, err: make(chan error, 1)})
}

// Checkpoint writes a signed checkpoint of the current head now.
func (l *Log) Checkpoint(ctx context.Context) error {
	return l.submit(ctx, &pending{checkpoint: true, err: make(chan error, 1)})
}

func (l *Log) submit(ctx context.Context, p *pending) error {
	select {
	case l.queue <- p:
	case <-l.stop:
		return errors.New("audit: log closed")
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once queued the record will be written: wait for the outcome even
	// if the caller gives up, so that "no record" is never mistaken.
	return <-p.err
}

// Close writes a final checkpoint and closes the file.
func (l *Log) Close() error {
	var err error
	l.once.Do(func() {
		err = l.Checkpoint(context.Background())
		close(l.stop)
		l.done.Wait()
		if cerr := l.db.Close(); err == nil {
			err = cerr
		}
	})
	return err
}

// writer is the commit loop: it takes what is queued, commits it in one
// transaction (one fsync), answers everyone, and goes again.
func (l *Log) writer() {
	defer l.done.Done()
	ticker := time.NewTicker(l.opts.CheckpointInterval)
	defer ticker.Stop()
	for {
		var batch []*pending
		select {
		case p := <-l.queue:
			batch = append(batch, p)
		case <-ticker.C:
			batch = append(batch, &pending{checkpoint: true, err: make(chan error, 1)})
		case <-l.stop:
			return
		}
		if !l.opts.OneCommitPerRecord {
		drain:
			for len(batch) < 1024 {
				select {
				case p := <-l.queue:
					batch = append(batch, p)
				default:
					break drain
				}
			}
		}
		start := time.Now()
		err := l.db.Update(func(tx *bolt.Tx) error { return l.write(tx, batch) })
		if l.opts.OnCommit != nil {
			l.opts.OnCommit(time.Since(start), len(batch))
		}
		l.lastErr.Store(&errBox{err})
		for _, p := range batch {
			p.err <- err
		}
	}
}

// write appends the batch to the chain inside tx.
func (l *Log) write(tx *bolt.Tx, batch []*pending) error {
	meta, recs := tx.Bucket(bucketMeta), tx.Bucket(bucketRecords)
	seq, head := readHead(meta)
	lastCheckpoint := lastCheckpointSeq(tx)
	for _, p := range batch {
		if p.checkpoint {
			if seq > lastCheckpoint {
				if err := putCheckpoint(tx, l.opts.SigningKey, checkpoint{Seq: seq, Head: hexOf(head), Time: l.opts.Clock().UTC()}); err != nil {
					return err
				}
				lastCheckpoint = seq
			}
			continue
		}
		seq++
		s := stored{Seq: seq, Prev: hexOf(head), Record: *p.rec}
		raw, hash, err := s.seal()
		if err != nil {
			return err
		}
		if err := recs.Put(seqKey(seq), raw); err != nil {
			return err
		}
		if p.rec.Subject != "" {
			if err := tx.Bucket(bucketBySubject).Put(subjectKey(p.rec.Subject, seq), nil); err != nil {
				return err
			}
		}
		head = hash
		if seq-lastCheckpoint >= uint64(l.opts.CheckpointEvery) {
			if err := putCheckpoint(tx, l.opts.SigningKey, checkpoint{Seq: seq, Head: hexOf(head), Time: l.opts.Clock().UTC()}); err != nil {
				return err
			}
			lastCheckpoint = seq
		}
	}
	return meta.Put(keyHead, append(seqKey(seq), head[:]...))
}

func readHead(meta *bolt.Bucket) (uint64, [32]byte) {
	var head [32]byte
	raw := meta.Get(keyHead)
	if len(raw) != 40 {
		return 0, head
	}
	copy(head[:], raw[8:])
	return binary.BigEndian.Uint64(raw[:8]), head
}

func lastCheckpointSeq(tx *bolt.Tx) uint64 {
	k, _ := tx.Bucket(bucketCheckpoints).Cursor().Last()
	if len(k) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(k)
}

func seqKey(seq uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, seq)
	return k
}

func subjectKey(pseudonym string, seq uint64) []byte {
	return append([]byte(pseudonym+"/"), seqKey(seq)...)
}
