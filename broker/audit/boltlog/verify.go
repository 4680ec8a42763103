package boltlog

import (
	"bufio"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
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

// ExportCheckpoints writes every checkpoint of the open log as JSON
// lines: what the operator hands to a third party (or an archive out of
// reach), so that later truncation of the log — records and checkpoints
// together — is still detected by VerifyWith.
func (l *Log) ExportCheckpoints(w io.Writer) (int, error) { return exportCheckpoints(l.db, w) }

// ExportCheckpointsFile is ExportCheckpoints on a log file opened
// read-only (the broker stopped).
func ExportCheckpointsFile(path string, w io.Writer) (int, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return 0, fmt.Errorf("audit: open %s read-only: %w", path, err)
	}
	defer db.Close()
	return exportCheckpoints(db, w)
}

func exportCheckpoints(db *bolt.DB, w io.Writer) (int, error) {
	n := 0
	err := db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCheckpoints).ForEach(func(_, v []byte) error {
			n++
			_, err := fmt.Fprintf(w, "%s\n", v)
			return err
		})
	})
	return n, err
}

// VerifyWith verifies the log at path like Verify, then checks that every
// exported checkpoint (JSON lines from ExportCheckpoints) is signed by pub
// and still matches the chain, unless retention purged its records.
func VerifyWith(path string, pub ed25519.PublicKey, exported io.Reader) (*Report, error) {
	rep, err := Verify(path, pub)
	if err != nil || !rep.OK() {
		return rep, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	sc := bufio.NewScanner(exported)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	err = db.View(func(tx *bolt.Tx) error {
		recs := tx.Bucket(bucketRecords)
		for sc.Scan() {
			var cp checkpoint
			if err := json.Unmarshal(sc.Bytes(), &cp); err != nil {
				return fmt.Errorf("exported checkpoints: %w", err)
			}
			if !cp.verify(pub) {
				rep.fail(cp.Seq, "exported checkpoint at seq %d: signature does not verify", cp.Seq)
				return nil
			}
			if cp.Boundary || cp.Seq < rep.FirstSeq {
				continue // before the retention boundary
			}
			raw := recs.Get(seqKey(cp.Seq))
			if raw == nil {
				rep.fail(rep.LastSeq+1, "records %d to %d are missing: an exported checkpoint covers them", rep.LastSeq+1, cp.Seq)
				return nil
			}
			var s stored
			if err := json.Unmarshal(raw, &s); err != nil || s.Hash != cp.Head {
				rep.fail(cp.Seq, "exported checkpoint at seq %d does not match the chain", cp.Seq)
				return nil
			}
		}
		return sc.Err()
	})
	return rep, err
}
