package boltlog

import (
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Report is the outcome of Verify.
type Report struct {
	// FirstSeq and LastSeq bound the records present; Records counts them.
	FirstSeq, LastSeq, Records uint64
	// Checkpoints counts the signed checkpoints checked.
	Checkpoints int
	// Problem is empty when everything verifies; else BadSeq is the first
	// sequence number that does not.
	Problem string
	BadSeq  uint64
}

// OK reports whether the log verified.
func (r *Report) OK() bool { return r.Problem == "" }

func (r *Report) fail(seq uint64, format string, args ...any) *Report {
	r.Problem, r.BadSeq = fmt.Sprintf(format, args...), seq
	return r
}

// Verify checks the log file at path offline with the operator's public
// key alone: every checkpoint's signature, then the chain record by record
// (contiguous sequence, previous hash, own hash), then that every
// checkpoint matches the chain. The file is opened read-only (stop the
// broker or verify a copy).
func Verify(path string, pub ed25519.PublicKey) (*Report, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("audit: open %s read-only: %w", path, err)
	}
	defer db.Close()
	var rep *Report
	err = db.View(func(tx *bolt.Tx) error {
		rep = verifyTx(tx, pub)
		return nil
	})
	return rep, err
}

// VerifyLive verifies the open log in a read transaction.
func (l *Log) VerifyLive() (*Report, error) {
	var rep *Report
	err := l.db.View(func(tx *bolt.Tx) error {
		rep = verifyTx(tx, l.opts.SigningKey.Public().(ed25519.PublicKey))
		return nil
	})
	return rep, err
}

func verifyTx(tx *bolt.Tx, pub ed25519.PublicKey) *Report {
	rep := &Report{}
	recs, cps := tx.Bucket(bucketRecords), tx.Bucket(bucketCheckpoints)
	if recs == nil || cps == nil {
		return rep.fail(0, "not a Relais audit log")
	}
	var checkpoints []checkpoint
	start, prev := uint64(1), hexOf([32]byte{})
	c := cps.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		var cp checkpoint
		if err := json.Unmarshal(v, &cp); err != nil || len(k) != 8 || binary.BigEndian.Uint64(k) != cp.Seq {
			return rep.fail(binary.BigEndian.Uint64(append(make([]byte, 8-min(8, len(k))), k...)), "checkpoint is unreadable or misplaced")
		}
		if !cp.verify(pub) {
			return rep.fail(cp.Seq, "checkpoint at seq %d: signature does not verify with this public key", cp.Seq)
		}
		rep.Checkpoints++
		if cp.Boundary {
			start, prev = cp.Seq+1, cp.Head
			checkpoints = checkpoints[:0]
			continue
		}
		checkpoints = append(checkpoints, cp)
	}
	heads := map[uint64]string{}
	expected := start
	rc := recs.Cursor()
	for k, v := rc.First(); k != nil; k, v = rc.Next() {
		seq := binary.BigEndian.Uint64(k)
		if seq < start {
			continue // before a boundary: retention left it, or will purge it
		}
		if seq != expected {
			return rep.fail(expected, "record %d is missing (next present is %d)", expected, seq)
		}
		var s stored
		if err := json.Unmarshal(v, &s); err != nil {
			return rep.fail(seq, "record %d is unreadable: %v", seq, err)
		}
		switch {
		case s.Seq != seq:
			return rep.fail(seq, "record %d holds sequence %d (moved or reordered)", seq, s.Seq)
		case s.Prev != prev:
			return rep.fail(seq, "record %d does not follow the previous record (chain broken)", seq)
		case !s.check():
			return rep.fail(seq, "record %d was modified (hash mismatch)", seq)
		}
		prev = s.Hash
		heads[seq] = s.Hash
		if rep.Records == 0 {
			rep.FirstSeq = seq
		}
		rep.Records++
		rep.LastSeq = seq
		expected++
	}
	for _, cp := range checkpoints {
		if cp.Seq < start {
			continue
		}
		head, ok := heads[cp.Seq]
		switch {
		case !ok && cp.Seq >= expected:
			return rep.fail(expected, "records %d to %d are missing: a checkpoint covers them", expected, cp.Seq)
		case head != cp.Head:
			return rep.fail(cp.Seq, "checkpoint at seq %d does not match the chain", cp.Seq)
		}
	}
	return rep
}
