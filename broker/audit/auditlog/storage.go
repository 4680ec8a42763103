package auditlog

import (
	"context"
	"fmt"
	"time"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/audit/seal"
)

// Storage persists one sealed chain; implemented by boltlog (bbolt) and
// pglog (PostgreSQL), checked by audittest.Run. Log is its only writer in
// a process; several processes on one storage keep one chain each.
//
// Contract notes (additions to contracts.md, source-compatible):
//   - seal.Sealed has a Raw field (json:"-"): the stored bytes exactly as
//     seal.Seal produced them. Storages write Raw and give it back as is
//     (bytea or json in PostgreSQL, never jsonb, which rewrites it).
//   - seal.Entry.Record is those bytes (json.RawMessage); Export emits,
//     per chain in seq order, the boundary checkpoint first, records above
//     it, and each checkpoint right after the record of its seq.
//   - Commit refuses (error, nothing written) a batch that does not
//     follow the head it reads in its own transaction: check it with
//     Follow. A retried batch or a second writer then cannot fork the chain.
//   - Purge's boundary callback signs; the storage deletes the records up
//     to and including seq and writes the checkpoint in one transaction,
//     and may delete the checkpoints at or below it (superseded).
type Storage interface {
	// Head is where the chain stands; the zero Head for an empty chain.
	Head(ctx context.Context) (seal.Head, error)
	// Commit writes the records (contiguous, following Head) and the
	// checkpoints in one durable transaction: all or nothing. It returns
	// only once the transaction is durable (fsync, synchronous commit).
	Commit(ctx context.Context, recs []seal.Sealed, cps []seal.Checkpoint) error
	// Query returns the records matching f, oldest first, at most f.Limit
	// (audit.DefaultLimit when 0).
	Query(ctx context.Context, f audit.Filter) ([]audit.Record, error)
	// Subject returns the accesses to the subject with this pseudonym,
	// oldest first, through an index (never a scan of the log).
	Subject(ctx context.Context, pseudonym string) ([]audit.Record, error)
	// Export calls fn with every record and checkpoint in seq order, from
	// one consistent snapshot (a read transaction, or short reads that
	// refuse to go on across a purge: the log is append-only otherwise),
	// stopping at fn's error.
	Export(ctx context.Context, fn func(seal.Entry) error) error
	// Purge deletes a prefix of the chain — records 1 (or the last
	// boundary + 1) to some seq, each older than before; the storage may
	// keep older ones, e.g. a month partition not yet entirely old — and
	// leaves the signed boundary checkpoint that boundary returns for the
	// last deleted record, in one transaction. What remains must be the
	// contiguous rest of the chain: a record's Time is its call's start,
	// so it is not strictly ordered by seq; a storage that deletes by time
	// ranges must stop before the first seq it keeps. It returns how many
	// records it deleted; nothing to delete is 0 and no boundary. A
	// storage shared by several chains (one per replica) purges every
	// chain and asks boundary for each: retention runs on one replica at a
	// time (a leader lease), and every replica signs with the same key.
	Purge(ctx context.Context, before time.Time, boundary func(chain string, seq uint64, head string) (seal.Checkpoint, error)) (int, error)
	// Close releases the storage.
	Close() error
}

// Follow checks that a batch continues the chain at h and returns the
// head after it; storages call it inside their transaction, with the head
// they read there, and refuse the batch on error (nothing written). So a
// retried batch, or a second writer on the same chain, can never fork or
// duplicate it. The records must be contiguous after h; a checkpoint must
// be at a seq of the batch or at h, with that record's hash; a boundary
// checkpoint (a purged history copied from another storage) is accepted
// only on an empty chain, and the records then follow it.
func Follow(h seal.Head, recs []seal.Sealed, cps []seal.Checkpoint) (seal.Head, error) {
	for _, c := range cps {
		if !c.Boundary {
			continue
		}
		if h.Seq != 0 || h.LastCheckpoint != 0 {
			return h, fmt.Errorf("audit: boundary checkpoint at seq %d on a chain that is not empty", c.Seq)
		}
		hash, err := seal.ParseHash(c.Head)
		if err != nil || c.Seq == 0 {
			return h, fmt.Errorf("audit: boundary checkpoint at seq %d: bad head", c.Seq)
		}
		h = seal.Head{Seq: c.Seq, Hash: hash, LastCheckpoint: c.Seq}
	}
	start := h
	for _, r := range recs {
		if r.Seq != h.Seq+1 {
			return start, fmt.Errorf("audit: record %d does not follow the head at seq %d", r.Seq, h.Seq)
		}
		if !seal.IsHex(r.Prev, h.Hash) {
			return start, fmt.Errorf("audit: record %d does not follow the head hash", r.Seq)
		}
		hash, err := seal.ParseHash(r.Hash)
		if err != nil || len(r.Raw) == 0 || !seal.IsHex(r.Hash, hash) {
			return start, fmt.Errorf("audit: record %d is not sealed", r.Seq)
		}
		h.Seq, h.Hash = r.Seq, hash
	}
	for _, c := range cps {
		if c.Boundary {
			continue
		}
		// The records are contiguous from start.Seq+1: record seq is at
		// index seq-start.Seq-1.
		var want string
		ok := false
		if c.Seq == start.Seq && c.Seq != 0 {
			want, ok = seal.Hex(start.Hash), true
		} else if c.Seq > start.Seq && c.Seq <= h.Seq {
			want, ok = recs[c.Seq-start.Seq-1].Hash, true
		}
		if !ok || c.Head != want {
			return start, fmt.Errorf("audit: checkpoint at seq %d does not match the chain", c.Seq)
		}
		h.LastCheckpoint = max(h.LastCheckpoint, c.Seq)
	}
	return h, nil
}
