package seglog

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/relais-broker/relais/broker/audit/seal"
)

// The index is a cache of the segments: never synced on the commit path,
// rebuilt from them when it is missing, damaged, ahead of them, or left
// dirty across a reboot (a process crash leaves the page cache, hence
// the file, intact: replay then starts from its last position).
var (
	bktMeta    = []byte("meta")
	bktSeq     = []byte("seq")     // seq → segment number, offset
	bktSubject = []byte("subject") // fnv64(pseudonym), seq → (nothing)
	bktTime    = []byte("minute")  // unix minute → lowest seq, highest seq
	keyMagic   = []byte("magic")
	keyPos     = []byte("pos")   // segment number, offset after the last indexed frame, last indexed seq
	keyState   = []byte("state") // "clean", or "dirty" and the boot id
)

const indexMagic = "relais-audit-index-v1"

type entry struct {
	seq, seg uint64
	off      int64
	subject  uint64
	hasSubj  bool
	minute   int64
}

type position struct {
	seg uint64
	off int64
	seq uint64
}

type index struct {
	db       *bolt.DB
	interval time.Duration

	mu      sync.Mutex // guards pending, pos, gc and serialises the updates
	pending []entry
	pos     position
	gc      uint64 // entries at or below are purged
	gcDone  uint64
	err     error

	stop chan struct{}
	done chan struct{}
}

func openIndex(s *Store) (*index, error) {
	path := filepath.Join(s.dir, indexName)
	ix, pos, err := tryIndex(s, path)
	if err != nil {
		// Damaged, foreign, stale or ahead of the log: rebuild it all.
		if ix != nil {
			ix.db.Close()
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("audit: remove the index: %w", err)
		}
		if ix, pos, err = tryIndex(s, path); err != nil {
			return nil, fmt.Errorf("audit: rebuild the index: %w", err)
		}
	}
	ix.interval = s.opts.IndexInterval
	if err := ix.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bktMeta).Put(keyState, []byte("dirty\n"+bootID()))
	}); err != nil {
		ix.db.Close()
		return nil, fmt.Errorf("audit: index: %w", err)
	}
	if err := ix.replay(s, pos); err != nil {
		ix.db.Close()
		return nil, err
	}
	ix.stop, ix.done = make(chan struct{}), make(chan struct{})
	go ix.run()
	return ix, nil
}

// tryIndex opens the index file and checks it against the log; an error
// means rebuild (the returned index, if any, is to be closed).
func tryIndex(s *Store, path string) (*index, position, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoFreelistSync: true})
	if err != nil {
		return nil, position{}, err
	}
	db.NoSync = true
	ix := &index{db: db}
	var pos position
	var fresh bool
	err = db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bktMeta)
		if meta == nil {
			fresh = true
			if k, _ := tx.Cursor().First(); k != nil {
				return errors.New("not an index")
			}
			for _, b := range [][]byte{bktMeta, bktSeq, bktSubject, bktTime} {
				if _, err := tx.CreateBucketIfNotExists(b); err != nil {
					return err
				}
			}
			return tx.Bucket(bktMeta).Put(keyMagic, []byte(indexMagic))
		}
		if string(meta.Get(keyMagic)) != indexMagic || tx.Bucket(bktSeq) == nil || tx.Bucket(bktSubject) == nil || tx.Bucket(bktTime) == nil {
			return errors.New("not an index")
		}
		state := string(meta.Get(keyState))
		if state != "clean" && (state != "dirty\n"+bootID() || bootID() == "") {
			return errors.New("left dirty across a reboot")
		}
		if raw := meta.Get(keyPos); len(raw) == 24 {
			pos = position{seg: binary.BigEndian.Uint64(raw), off: int64(binary.BigEndian.Uint64(raw[8:])), seq: binary.BigEndian.Uint64(raw[16:])}
		}
		if pos.seq != 0 {
			v := tx.Bucket(bktSeq).Get(u64(pos.seq))
			if len(v) != 16 {
				return errors.New("its last position is not indexed")
			}
			if err := s.checkPlace(binary.BigEndian.Uint64(v), int64(binary.BigEndian.Uint64(v[8:])), pos.seq); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return ix, pos, err
	}
	if fresh {
		return ix, position{}, nil
	}
	if pos.seq > s.head.Seq {
		return ix, pos, errors.New("ahead of the log")
	}
	last := s.segs[len(s.segs)-1]
	if pos.seg > last.num || (pos.seg == last.num && pos.off > last.end) {
		return ix, pos, errors.New("ahead of the log")
	}
	if pos.seg < s.segs[0].num {
		pos = position{} // its segment was purged: replay all that is left
	}
	return ix, pos, nil
}

// checkPlace reports whether the frame at (seg, off) is record seq
// (segments purged since are fine).
func (s *Store) checkPlace(seg uint64, off int64, seq uint64) error {
	if seg < s.segs[0].num {
		return nil
	}
	for _, sg := range s.segs {
		if sg.num != seg {
			continue
		}
		f, err := os.Open(filepath.Join(s.dir, sg.name))
		if err != nil {
			return err
		}
		defer f.Close()
		fr := &frameReader{name: sg.name, r: newSection(f, off, sg.end), off: off, end: sg.end}
		typ, p, err := fr.next()
		if err != nil || typ != frameRecord {
			return errors.New("its last position is not a record")
		}
		if got, ok := rawSeq(p); !ok || got != seq {
			return errors.New("its last position is another record")
		}
		return nil
	}
	return errors.New("its last segment is gone")
}

// replay indexes the frames after pos (pos zero: the whole log).
func (ix *index) replay(s *Store, pos position) error {
	sn := snapshot{segs: s.segs, boundary: s.boundary, head: s.head}
	si := 0
	if pos.seg != 0 {
		for i, sg := range sn.segs {
			if sg.num == pos.seg {
				si = i
			}
		}
	}
	var batch []entry
	last := pos
	flush := func() error {
		ix.pending, ix.pos = batch, last
		batch = nil
		return ix.commit()
	}
	err := s.scan(context.Background(), sn, si, pos.off, func(v *frameVisit) (bool, error) {
		last = position{seg: v.seg.num, off: v.off + int64(frameSize(len(v.payload))), seq: last.seq}
		if v.typ != frameRecord {
			return true, nil
		}
		var r struct {
			Record struct {
				Time    time.Time
				Subject string
			} `json:"record"`
		}
		if err := json.Unmarshal(v.payload, &r); err != nil {
			return false, &badFrame{v.seg.name, v.off, fmt.Sprintf("record %d is unreadable", v.seq)}
		}
		batch = append(batch, newEntry(v.seq, v.seg.num, v.off, r.Record.Subject, r.Record.Time))
		last.seq = v.seq
		if len(batch) >= 20000 {
			return true, flush()
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("audit: the log is damaged where the index must be rebuilt from (%w); it was left untouched: verify it (relaisctl audit verify --dir)", err)
	}
	return flush()
}

func newEntry(seq, seg uint64, off int64, subject string, t time.Time) entry {
	e := entry{seq: seq, seg: seg, off: off, minute: t.Unix() / 60}
	if t.Unix() < 0 && t.Unix()%60 != 0 {
		e.minute--
	}
	if subject != "" {
		h := fnv.New64a()
		h.Write([]byte(subject))
		e.subject, e.hasSubj = h.Sum64(), true
	}
	return e
}

// add queues the index entries of a durable batch: frames at off of
// segment seg, the records' frames at offs within buf.
func (ix *index) add(seg uint64, off int64, buf []byte, recs []seal.Sealed, offs []int) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	for i, r := range recs {
		ix.pending = append(ix.pending, newEntry(r.Seq, seg, off+int64(offs[i]), r.Record.Subject, r.Record.Time))
	}
	ix.pos.seg, ix.pos.off = seg, off+int64(len(buf))
	if len(recs) > 0 {
		ix.pos.seq = recs[len(recs)-1].Seq
	}
}

// flush commits what is queued (readers call it first, so they see every
// durable record).
func (ix *index) flush() error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.commit()
}

// commit writes the pending entries in one (unsynced) transaction; mu held.
func (ix *index) commit() error {
	if len(ix.pending) == 0 && ix.err == nil {
		return nil
	}
	pending, pos := ix.pending, ix.pos
	err := ix.db.Update(func(tx *bolt.Tx) error {
		seqs, subj, tb := tx.Bucket(bktSeq), tx.Bucket(bktSubject), tx.Bucket(bktTime)
		seqs.FillPercent, tb.FillPercent = 1, 1 // appended in order: full pages
		minutes := map[int64][2]uint64{}
		for _, e := range pending {
			if err := seqs.Put(u64(e.seq), append(u64(e.seg), u64(uint64(e.off))...)); err != nil {
				return err
			}
			if e.hasSubj {
				if err := subj.Put(append(u64(e.subject), u64(e.seq)...), nil); err != nil {
					return err
				}
			}
			r, ok := minutes[e.minute]
			if !ok {
				r = [2]uint64{e.seq, e.seq}
			}
			minutes[e.minute] = [2]uint64{min(r[0], e.seq), max(r[1], e.seq)}
		}
		for m, r := range minutes {
			k := minuteKey(m)
			if v := tb.Get(k); len(v) == 16 {
				r[0], r[1] = min(r[0], binary.BigEndian.Uint64(v)), max(r[1], binary.BigEndian.Uint64(v[8:]))
			}
			if err := tb.Put(k, append(u64(r[0]), u64(r[1])...)); err != nil {
				return err
			}
		}
		return tx.Bucket(bktMeta).Put(keyPos, append(append(u64(pos.seg), u64(uint64(pos.off))...), u64(pos.seq)...))
	})
	ix.err = err
	if err != nil {
		return fmt.Errorf("audit: index: %w", err)
	}
	ix.pending = ix.pending[:0]
	return nil
}

func (ix *index) run() {
	defer close(ix.done)
	t := time.NewTicker(ix.interval)
	defer t.Stop()
	for {
		select {
		case <-ix.stop:
			return
		case <-t.C:
			ix.mu.Lock()
			_ = ix.commit() // a failure is kept in err and retried; reads report it
			more := ix.gc > ix.gcDone
			ix.mu.Unlock()
			if more {
				_ = ix.collect()
			}
		}
	}
}

// close stops the indexer; clean commits what is queued, marks the index
// clean and syncs it, so the next Open trusts it across a reboot.
func (ix *index) close(clean bool) error {
	if ix.stop != nil {
		close(ix.stop)
		<-ix.done
		ix.stop = nil
	}
	var err error
	if clean {
		ix.mu.Lock()
		err = ix.commit()
		ix.mu.Unlock()
		if err == nil {
			err = ix.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bktMeta).Put(keyState, []byte("clean")) })
		}
		if err == nil {
			err = ix.db.Sync()
		}
	}
	if cerr := ix.db.Close(); err == nil {
		err = cerr
	}
	return err
}

// position returns where record seq is.
func (ix *index) position(seq uint64) (uint64, int64, bool) {
	var seg uint64
	var off int64
	ok := false
	_ = ix.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bktSeq).Get(u64(seq)); len(v) == 16 {
			seg, off, ok = binary.BigEndian.Uint64(v), int64(binary.BigEndian.Uint64(v[8:])), true
		}
		return nil
	})
	return seg, off, ok
}

// timeRange returns the lowest and highest seq of the records whose
// minute overlaps [from, to) (zero: unbounded); ok is false when none.
func (ix *index) timeRange(from, to time.Time) (lo, hi uint64, ok bool, err error) {
	err = ix.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bktTime).Cursor()
		var k, v []byte
		if from.IsZero() {
			k, v = c.First()
		} else {
			k, v = c.Seek(minuteKey(newEntry(0, 0, 0, "", from).minute))
		}
		for ; k != nil; k, v = c.Next() {
			m := int64(binary.BigEndian.Uint64(k) ^ 1<<63)
			if !to.IsZero() && !time.Unix(m*60, 0).Before(to) {
				break
			}
			a, b := binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:])
			if !ok {
				lo, hi, ok = a, b, true
			}
			lo, hi = min(lo, a), max(hi, b)
		}
		return nil
	})
	return lo, hi, ok, err
}

type place struct {
	seq, seg uint64
	off      int64
}

// subject returns where the records of this pseudonym's hash are, above
// floor, oldest first (a hash collision is filtered by the caller).
func (ix *index) subject(pseudonym string, floor uint64) ([]place, error) {
	e := newEntry(0, 0, 0, pseudonym, time.Time{})
	prefix := u64(e.subject)
	var out []place
	err := ix.db.View(func(tx *bolt.Tx) error {
		seqs := tx.Bucket(bktSeq)
		c := tx.Bucket(bktSubject).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			seq := binary.BigEndian.Uint64(k[8:])
			if seq <= floor {
				continue
			}
			if v := seqs.Get(k[8:]); len(v) == 16 {
				out = append(out, place{seq: seq, seg: binary.BigEndian.Uint64(v), off: int64(binary.BigEndian.Uint64(v[8:]))})
			}
		}
		return nil
	})
	return out, err
}

// purged makes the indexer drop the entries at or below seq, in the
// background.
func (ix *index) purged(seq uint64) {
	ix.mu.Lock()
	ix.gc = max(ix.gc, seq)
	ix.mu.Unlock()
}

// collect deletes purged entries, a bounded number per transaction.
func (ix *index) collect() error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	target := ix.gc
	const chunk = 20000
	done := true
	err := ix.db.Update(func(tx *bolt.Tx) error {
		n := 0
		c := tx.Bucket(bktSeq).Cursor()
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= target && n < chunk; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
			n++
		}
		tc := tx.Bucket(bktTime).Cursor()
		for k, v := tc.First(); k != nil && n < chunk; k, v = tc.Next() {
			if binary.BigEndian.Uint64(v[8:]) > target {
				break
			}
			if err := tc.Delete(); err != nil {
				return err
			}
			n++
		}
		var dead [][]byte
		sc := tx.Bucket(bktSubject).Cursor()
		for k, _ := sc.First(); k != nil; k, _ = sc.Next() {
			if binary.BigEndian.Uint64(k[8:]) <= target {
				dead = append(dead, bytes.Clone(k))
			}
		}
		for _, k := range dead {
			if n >= chunk {
				done = false
				break
			}
			if err := tx.Bucket(bktSubject).Delete(k); err != nil {
				return err
			}
			n++
		}
		if n >= chunk {
			done = false
		}
		return nil
	})
	if err == nil && done {
		ix.gcDone = target
	}
	return err
}

// sizeOnDisk is the index file's size (the benchmark reports it).
func (ix *index) sizeOnDisk() int64 {
	st, err := os.Stat(ix.db.Path())
	if err != nil {
		return 0
	}
	return st.Size()
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

// minuteKey orders minutes before 1970 first.
func minuteKey(m int64) []byte { return u64(uint64(m) ^ 1<<63) }
