// Package seglog is the embedded audit storage of Relais at the fsync
// floor: the sealed chain (broker/audit/seal) in append-only, checksummed
// segment files made durable with one fdatasync per commit, and a bbolt
// index beside them that is a cache, committed in batches off the fsync
// path and rebuilt from the segments whenever it is missing, stale or
// damaged (etcd's WAL and backend, server/storage/wal).
//
// A directory holds:
//
//	LOCK                                  flock: one writer, or readers
//	0000000000000001-0000000000000001.seg segments: <number>-<first seq>, 16 hex digits each
//	boundary                              the signed boundary checkpoint of the last purge (frame)
//	index.db                              bbolt: seq → segment+offset, subject → seqs, minute → seqs, checkpoints
//
// A segment is preallocated (64 MiB) and holds frames
// [type 1][length 4 LE][CRC-32C of the payload 4][payload]: first a
// header (where the chain stood), then records (their sealed bytes
// exactly) and checkpoints (their JSON), each checkpoint right after the
// record of its seq — the export order. A commit is one pwrite of its
// frames and one fdatasync; a new segment is written aside, synced and
// renamed, then the directory synced.
//
// On open, a torn tail of the last segment (a crash in the middle of a
// write: a frame cut short, or a frame over sectors never written, which
// read as zeros) is saved aside as <segment>.torn-<offset> and cleared;
// those records were never acknowledged. A frame that is damaged
// otherwise (a flipped byte, a record that does not follow the chain) is
// not repaired: when it lies where Open must read (the last segment, or
// what the index must replay) Open refuses, naming the segment, offset
// and seq, because a writer cannot continue a chain whose head it cannot
// trust and an audit log that silently drops records is worse than a
// broker that does not start; elsewhere Open serves and Verify names it.
//
// Retention is per segment: Purge leaves the signed boundary checkpoint
// (the boundary file, replaced atomically), hides the purged prefix at
// once and deletes every segment whose records are all at or below it; a
// segment holding the boundary keeps its older records on disk until
// retention reaches its last record.
package seglog

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/audit/auditlog"
	"github.com/relais-broker/relais/broker/audit/seal"
)

// DefaultSegmentSize is the preallocated size of a segment (etcd's).
const DefaultSegmentSize = 64 << 20

// StoreOptions configure OpenStore.
type StoreOptions struct {
	// SegmentSize is the preallocated size of a segment (64 MiB when
	// zero); tests and small disks use less. A full disk is met when a
	// segment is created: the preallocated space is the log's.
	SegmentSize int64
	// IndexInterval is how often the index commits what was appended
	// (100 ms when zero); reads commit it first.
	IndexInterval time.Duration
}

// Repair is a torn tail Open cleared: records a crash left half-written,
// never acknowledged.
type Repair struct {
	Segment string
	Offset  int64
	// Bytes is the length of the cleared tail; SavedAs the file holding
	// them ("" when they were all zeros).
	Bytes   int64
	SavedAs string
}

// Store is an audit log directory; it implements auditlog.Storage. Safe
// for concurrent use.
type Store struct {
	dir      string
	opts     StoreOptions
	readOnly bool
	lock     *os.File

	wmu    sync.Mutex // serialises Commit, Purge and Close
	active *os.File
	cap    int64 // the active segment's allocated size
	buf    []byte
	broken error

	mu       sync.RWMutex // guards what readers snapshot
	segs     []segment
	head     seal.Head
	boundary *seal.Checkpoint
	closed   bool

	idx     *index
	repairs []Repair
}

var _ auditlog.Storage = (*Store)(nil)

// errPurged is what a read meets when a purge removed the segment it was
// about to read.
var errPurged = errors.New("audit: the log was purged during the export; export again")

// OpenStore opens or creates the audit log directory dir (0700). A
// directory another process holds is refused; so is one whose last
// segment is damaged other than by a torn write (see the package doc).
func OpenStore(dir string, o StoreOptions) (*Store, error) {
	if o.SegmentSize <= 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.IndexInterval <= 0 {
		o.IndexInterval = 100 * time.Millisecond
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: create %s: %w", dir, err)
	}
	s := &Store{dir: dir, opts: o}
	if err := s.open(); err != nil {
		s.release()
		return nil, err
	}
	return s, nil
}

// OpenStoreReadOnly opens the log directory of a stopped broker (or a
// copy) for Export, Query and Verify, changing nothing: a torn tail is
// read as the end, damage is left for the verifier to name. Writes fail.
func OpenStoreReadOnly(dir string) (*Store, error) {
	s := &Store{dir: dir, readOnly: true, opts: StoreOptions{SegmentSize: DefaultSegmentSize}}
	if err := s.open(); err != nil {
		s.release()
		return nil, err
	}
	return s, nil
}

func (s *Store) release() {
	if s.active != nil {
		s.active.Close()
	}
	if s.idx != nil {
		s.idx.close(false)
	}
	if s.lock != nil {
		s.lock.Close()
	}
}

func (s *Store) open() error {
	flag := os.O_RDWR | os.O_CREATE
	if s.readOnly {
		flag = os.O_RDONLY
	}
	lf, err := os.OpenFile(filepath.Join(s.dir, lockName), flag, 0o600)
	switch {
	case s.readOnly && errors.Is(err, os.ErrNotExist):
		// A copy of the segments without the lock file: nobody writes it.
	case err != nil:
		return fmt.Errorf("audit: open %s: %w", s.dir, err)
	default:
		s.lock = lf
	}
	if s.lock != nil {
		if err := lockFile(lf, !s.readOnly); err != nil {
			if s.readOnly {
				return fmt.Errorf("audit log %s is in use by a running broker: verify it online (relaisctl audit verify --online) or verify a copy", s.dir)
			}
			return fmt.Errorf("audit log %s is locked by another process", s.dir)
		}
	}
	if !s.readOnly {
		if err := s.removeLeftovers(); err != nil {
			return err
		}
	}
	if s.boundary, err = readBoundary(s.dir); err != nil {
		return err
	}
	if s.segs, err = listSegments(s.dir); err != nil {
		return err
	}
	if len(s.segs) == 0 {
		if s.readOnly {
			return fmt.Errorf("%s is not a Relais audit log directory (no segment)", s.dir)
		}
		h := segHeader{Number: 1, First: 1, Prev: seal.Hex(seal.ZeroHash)}
		if b := s.boundary; b != nil {
			h.First, h.Prev, h.LastCheckpoint = b.Seq+1, b.Head, b.Seq
		}
		f, name, end, err := createSegment(s.dir, h, s.opts.SegmentSize)
		if err != nil {
			return err
		}
		f.Close()
		s.segs = []segment{{num: 1, first: h.First, name: name, start: end, end: end}}
	}
	// Finish a purge a crash interrupted: segments wholly at or below
	// the boundary go.
	if b := s.boundary; b != nil && !s.readOnly {
		for len(s.segs) > 1 && s.segs[1].first-1 <= b.Seq {
			if err := os.Remove(filepath.Join(s.dir, s.segs[0].name)); err != nil {
				return fmt.Errorf("audit: finish the purge: %w", err)
			}
			s.segs = s.segs[1:]
		}
	}
	var lastHdr segHeader
	var hdrEnd int64
	for i := range s.segs {
		sg := &s.segs[i]
		f, err := os.Open(filepath.Join(s.dir, sg.name))
		if err != nil {
			return fmt.Errorf("audit: open segment %s: %w", sg.name, err)
		}
		h, end, err := readHeader(f, sg.name)
		st, serr := f.Stat()
		f.Close()
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		if serr != nil {
			return serr
		}
		if h.Number != sg.num || h.First != sg.first {
			return fmt.Errorf("audit: segment %s: its header says segment %d from seq %d", sg.name, h.Number, h.First)
		}
		sg.end, sg.start = st.Size(), end
		lastHdr, hdrEnd = h, end
	}
	if err := s.scanLast(lastHdr, hdrEnd); err != nil {
		return err
	}
	if !s.readOnly {
		last := s.segs[len(s.segs)-1]
		f, err := os.OpenFile(filepath.Join(s.dir, last.name), os.O_RDWR, 0o600)
		if err != nil {
			return fmt.Errorf("audit: open segment %s: %w", last.name, err)
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return err
		}
		// A segment left short (a full disk when it was created or after
		// a write was taken back) is preallocated again if it can be;
		// otherwise it grows with its appends.
		s.active, s.cap = f, max(st.Size(), s.opts.SegmentSize)
		if st.Size() < s.opts.SegmentSize {
			_ = preallocate(f, s.opts.SegmentSize)
		}
		if s.idx, err = openIndex(s); err != nil {
			return err
		}
	}
	return nil
}

// removeLeftovers removes what an interrupted segment creation or
// boundary write left (never renamed into place: never part of the log).
func (s *Store) removeLeftovers() error {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("audit: read %s: %w", s.dir, err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), tmpExt) {
			if err := os.Remove(filepath.Join(s.dir, e.Name())); err != nil {
				return fmt.Errorf("audit: remove %s: %w", e.Name(), err)
			}
		}
	}
	return nil
}

// recHeader is what the store reads of a record to follow the chain.
type recHeader struct {
	Chain string `json:"chain"`
	Seq   uint64 `json:"seq"`
	Prev  string `json:"prev"`
	Hash  string `json:"hash"`
}

// scanLast reads the last segment to find the head and where to append,
// clearing a torn tail (a writer) or stopping before it (a reader).
func (s *Store) scanLast(h segHeader, hdrEnd int64) error {
	sg := &s.segs[len(s.segs)-1]
	prev, err := seal.ParseHash(h.Prev)
	if err != nil {
		return fmt.Errorf("audit: segment %s: bad header: %w", sg.name, err)
	}
	head := seal.Head{Seq: h.First - 1, Hash: prev, LastCheckpoint: h.LastCheckpoint}
	b := s.boundary
	if b != nil {
		head.LastCheckpoint = max(head.LastCheckpoint, b.Seq)
	}
	path := filepath.Join(s.dir, sg.name)
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("audit: open segment %s: %w", sg.name, err)
	}
	defer f.Close()
	size := sg.end
	fr := &frameReader{name: sg.name, r: io.NewSectionReader(f, hdrEnd, size-hdrEnd), off: hdrEnd, end: size}
	var bad *badFrame
	for {
		typ, p, err := fr.next()
		if errors.Is(err, errEnd) {
			break
		}
		if errors.As(err, &bad) {
			if torn(f, size, bad.Offset) {
				bad = nil
			}
			break
		}
		if err != nil {
			return err
		}
		switch typ {
		case frameRecord:
			var rh recHeader
			if err := json.Unmarshal(p, &rh); err != nil {
				bad = &badFrame{sg.name, fr.off - int64(frameSize(len(p))), fmt.Sprintf("record %d is unreadable", head.Seq+1)}
			} else if follows := rh.Seq == head.Seq+1 && rh.Prev == seal.Hex(head.Hash); !follows &&
				!(b != nil && head.Seq <= b.Seq && rh.Seq == b.Seq+1 && rh.Prev == b.Head) {
				bad = &badFrame{sg.name, fr.off - int64(frameSize(len(p))), fmt.Sprintf("record %d does not follow record %d (seq %d found)", head.Seq+1, head.Seq, rh.Seq)}
			} else if hash, err := seal.ParseHash(rh.Hash); err != nil {
				bad = &badFrame{sg.name, fr.off - int64(frameSize(len(p))), fmt.Sprintf("record %d has no hash", rh.Seq)}
			} else {
				head.Seq, head.Hash = rh.Seq, hash
			}
		case frameCheckpoint:
			var c seal.Checkpoint
			if err := json.Unmarshal(p, &c); err != nil || c.Seq > head.Seq {
				bad = &badFrame{sg.name, fr.off - int64(frameSize(len(p))), fmt.Sprintf("checkpoint after record %d is unreadable", head.Seq)}
			} else {
				head.LastCheckpoint = max(head.LastCheckpoint, c.Seq)
			}
		default:
			bad = &badFrame{sg.name, fr.off - int64(frameSize(len(p))), "a second segment header"}
		}
		if bad != nil {
			break
		}
	}
	end := fr.off
	if bad != nil {
		if !s.readOnly {
			return fmt.Errorf("audit: the log is damaged at %v (next record %d); it was left untouched: verify it (relaisctl audit verify --dir) and restore the segment from a backup", bad, head.Seq+1)
		}
		end = size // let the export reach the damage: the verifier names it
	} else if !s.readOnly {
		if err := s.clearTail(f, sg.name, end, size); err != nil {
			return err
		}
	}
	sg.end = end
	s.head = head
	return nil
}

// torn reports whether the bad frame at off is a torn write: the file
// ends inside it, or its payload holds a zero byte — bytes a crash never
// wrote read as zeros in a preallocated segment, and the JSON of a
// record or checkpoint never holds one; a flipped byte does not make one.
func torn(f *os.File, size, off int64) bool {
	var h [frameHeaderSize]byte
	n, _ := f.ReadAt(h[:], off)
	if int64(n) < frameHeaderSize {
		return true
	}
	length := int64(h[1]) | int64(h[2])<<8 | int64(h[3])<<16 | int64(h[4])<<24
	if length == 0 {
		return true
	}
	if length > maxPayload {
		length = 512
	}
	if off+frameHeaderSize+length > size {
		return true
	}
	p := make([]byte, length)
	if _, err := f.ReadAt(p, off+frameHeaderSize); err != nil {
		return true
	}
	return bytes.IndexByte(p, 0) >= 0
}

// clearTail saves and clears whatever follows the last good frame of the
// last segment (nothing, the preallocated zeros, or a torn write).
func (s *Store) clearTail(f *os.File, name string, end, size int64) error {
	last := end // last non-zero byte + 1
	buf := make([]byte, 1<<20)
	for off := end; off < size; {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		for i := n - 1; i >= 0; i-- {
			if buf[i] != 0 {
				last = off + int64(i) + 1
				break
			}
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("audit: read segment %s: %w", name, err)
		}
		if n == 0 {
			break
		}
		off += int64(n)
	}
	if last == end {
		return nil
	}
	saved := fmt.Sprintf("%s.torn-%d", name, end)
	tail := make([]byte, last-end)
	if _, err := f.ReadAt(tail, end); err != nil {
		return fmt.Errorf("audit: read the torn tail of %s: %w", name, err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, saved), tail, 0o600); err != nil {
		return fmt.Errorf("audit: save the torn tail of %s: %w", name, err)
	}
	w, err := os.OpenFile(filepath.Join(s.dir, name), os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer w.Close()
	if err := w.Truncate(end); err != nil {
		return fmt.Errorf("audit: clear the torn tail of %s: %w", name, err)
	}
	_ = preallocate(w, size) // zeros again; a plain file if the disk is full
	if err := w.Sync(); err != nil {
		return fmt.Errorf("audit: clear the torn tail of %s: %w", name, err)
	}
	if err := syncDir(s.dir); err != nil {
		return err
	}
	s.repairs = append(s.repairs, Repair{Segment: name, Offset: end, Bytes: last - end, SavedAs: saved})
	return nil
}

// Dir is the log's directory.
func (s *Store) Dir() string { return s.dir }

// Repairs lists the torn tails Open cleared, for the broker to log.
func (s *Store) Repairs() []Repair { return append([]Repair(nil), s.repairs...) }

// Close implements auditlog.Storage: the index is committed and synced,
// so the next Open need not replay; a second Close does nothing.
func (s *Store) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	var err error
	if s.idx != nil {
		err = s.idx.close(true)
	}
	if s.active != nil {
		if cerr := s.active.Close(); err == nil {
			err = cerr
		}
	}
	if s.lock != nil {
		if cerr := s.lock.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// Head implements auditlog.Storage.
func (s *Store) Head(context.Context) (seal.Head, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return seal.Head{}, errors.New("audit: the log is closed")
	}
	return s.head, nil
}

// Commit implements auditlog.Storage: the frames of the batch in one
// write, then one fdatasync; the index follows off this path.
func (s *Store) Commit(ctx context.Context, recs []seal.Sealed, cps []seal.Checkpoint) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.readOnly {
		return errors.New("audit: the log is open read-only")
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.RLock()
	head, closed := s.head, s.closed
	s.mu.RUnlock()
	if closed {
		return errors.New("audit: the log is closed")
	}
	if s.broken != nil {
		return s.broken
	}
	h, err := auditlog.Follow(head, recs, cps)
	if err != nil {
		return err
	}
	var boundary *seal.Checkpoint
	buf := s.buf[:0]
	ci := 0
	putCP := func(c seal.Checkpoint) error {
		p, err := json.Marshal(c)
		if err != nil {
			return fmt.Errorf("audit: checkpoint %d: %w", c.Seq, err)
		}
		buf = appendFrame(buf, frameCheckpoint, p)
		return nil
	}
	// Checkpoints in export order: each right after the record of its
	// seq (those at the head before the batch first).
	sortedCPs := sortCheckpoints(cps)
	for ci < len(sortedCPs) && (sortedCPs[ci].Boundary || sortedCPs[ci].Seq <= head.Seq) {
		if sortedCPs[ci].Boundary {
			boundary = &sortedCPs[ci]
		} else if err := putCP(sortedCPs[ci]); err != nil {
			return err
		}
		ci++
	}
	offs := make([]int, 0, len(recs)+len(cps))
	for _, r := range recs {
		offs = append(offs, len(buf))
		buf = appendFrame(buf, frameRecord, r.Raw)
		for ci < len(sortedCPs) && sortedCPs[ci].Seq == r.Seq {
			if err := putCP(sortedCPs[ci]); err != nil {
				return err
			}
			ci++
		}
	}
	s.buf = buf
	if boundary != nil {
		// Only on an empty chain (Follow): a history copied from a log
		// that was purged. The boundary goes first, atomically.
		if err := writeBoundary(s.dir, *boundary); err != nil {
			return err
		}
		s.mu.Lock()
		s.boundary = boundary
		s.mu.Unlock()
	}
	if len(buf) == 0 {
		s.setHead(h)
		return nil
	}
	sg := s.segs[len(s.segs)-1]
	if sg.end+int64(len(buf)) > s.cap && sg.end > sg.start {
		if err := s.cut(head); err != nil {
			return err
		}
		sg = s.segs[len(s.segs)-1]
	}
	off := sg.end
	if _, err := s.active.WriteAt(buf, off); err != nil {
		return s.undo(off, fmt.Errorf("audit: write segment %s: %w", sg.name, err))
	}
	if err := datasync(s.active); err != nil {
		return s.undo(off, fmt.Errorf("audit: sync segment %s: %w", sg.name, err))
	}
	s.mu.Lock()
	s.segs[len(s.segs)-1].end = off + int64(len(buf))
	s.head = h
	s.mu.Unlock()
	s.idx.add(sg.num, off, buf, recs, offs)
	return nil
}

func (s *Store) setHead(h seal.Head) {
	s.mu.Lock()
	s.head = h
	s.mu.Unlock()
}

// undo takes back a write that failed or could not be synced: the
// segment is cut back to where the batch started, so no half-written
// frame (or whole frame of a refused batch) is ever read back.
func (s *Store) undo(off int64, err error) error {
	if terr := s.active.Truncate(off); terr != nil {
		s.broken = fmt.Errorf("audit: the log could not take back a failed write (%v): reopen it: %w", terr, err)
		return s.broken
	}
	_ = preallocate(s.active, s.opts.SegmentSize) // or it grows with its appends
	return err
}

// cut ends the active segment at its last frame and starts the next,
// headed by where the chain stands.
func (s *Store) cut(head seal.Head) error {
	sg := s.segs[len(s.segs)-1]
	if s.cap > sg.end {
		if err := s.active.Truncate(sg.end); err != nil {
			return fmt.Errorf("audit: end segment %s: %w", sg.name, err)
		}
		if err := s.active.Sync(); err != nil {
			return fmt.Errorf("audit: end segment %s: %w", sg.name, err)
		}
		s.cap = sg.end
	}
	h := segHeader{Number: sg.num + 1, First: head.Seq + 1, Prev: seal.Hex(head.Hash), LastCheckpoint: head.LastCheckpoint}
	f, name, end, err := createSegment(s.dir, h, s.opts.SegmentSize)
	if err != nil {
		return err
	}
	s.active.Close()
	s.active, s.cap = f, s.opts.SegmentSize
	s.mu.Lock()
	s.segs = append(s.segs, segment{num: h.Number, first: h.First, name: name, start: end, end: end})
	s.mu.Unlock()
	return nil
}

// snapshot is what a read sees: the segments and their ends, the
// boundary and the head, as of one instant.
type snapshot struct {
	segs     []segment
	boundary *seal.Checkpoint
	head     seal.Head
}

func (s *Store) snap() (snapshot, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return snapshot{}, errors.New("audit: the log is closed")
	}
	return snapshot{segs: append([]segment(nil), s.segs...), boundary: s.boundary, head: s.head}, nil
}

func (sn snapshot) floor() uint64 {
	if sn.boundary != nil {
		return sn.boundary.Seq
	}
	return 0
}

// frameVisit is one frame met by scan, with its place.
type frameVisit struct {
	seg     segment
	off     int64
	typ     byte
	payload []byte // valid during the callback
	seq     uint64 // a record's seq
}

// scan reads the frames of the snapshot from segment index si at offset
// off (0: after its header) in order, calling fn until it returns false.
// A frame that cannot be read stops it with a *badFrame (wrapped).
func (s *Store) scan(ctx context.Context, sn snapshot, si int, off int64, fn func(v *frameVisit) (bool, error)) error {
	var buf []byte
	n := 0
	for ; si < len(sn.segs); si++ {
		sg := sn.segs[si]
		f, err := os.Open(filepath.Join(s.dir, sg.name))
		if errors.Is(err, os.ErrNotExist) {
			return errPurged
		}
		if err != nil {
			return fmt.Errorf("audit: open segment %s: %w", sg.name, err)
		}
		start := off
		if start == 0 {
			start = sg.start
		}
		off = 0
		fr := &frameReader{name: sg.name, r: newBufReader(io.NewSectionReader(f, start, sg.end-start)), off: start, end: sg.end, buf: buf}
		seq := sg.first - 1
		for {
			at := fr.off
			typ, p, err := fr.next()
			if errors.Is(err, errEnd) {
				break
			}
			if err != nil {
				f.Close()
				return fmt.Errorf("audit: %w", err)
			}
			v := &frameVisit{seg: sg, off: at, typ: typ, payload: p}
			if typ == frameRecord {
				if rs, ok := rawSeq(p); ok {
					seq = rs
				} else {
					seq++
				}
				v.seq = seq
			}
			if n++; n%1024 == 0 {
				if err := ctx.Err(); err != nil {
					f.Close()
					return err
				}
			}
			more, err := fn(v)
			if err != nil || !more {
				f.Close()
				return err
			}
		}
		buf = fr.buf
		f.Close()
	}
	return nil
}

// Export implements auditlog.Storage: the boundary, then every record
// above it and the checkpoints in between, as the segments stood when
// Export began (they are append-only: later appends are not read; a
// purge that removes a segment not yet read is reported: export again).
func (s *Store) Export(ctx context.Context, fn func(seal.Entry) error) error {
	sn, err := s.snap()
	if err != nil {
		return err
	}
	return s.export(ctx, sn, fn)
}

func (s *Store) export(ctx context.Context, sn snapshot, fn func(seal.Entry) error) error {
	floor := sn.floor()
	if b := sn.boundary; b != nil {
		if err := fn(seal.CheckpointEntry(*b)); err != nil {
			return err
		}
	}
	return s.scan(ctx, sn, 0, 0, func(v *frameVisit) (bool, error) {
		switch v.typ {
		case frameRecord:
			if v.seq <= floor {
				return true, nil
			}
			return true, fn(seal.RecordEntry(bytes.Clone(v.payload)))
		case frameCheckpoint:
			var c seal.Checkpoint
			if err := json.Unmarshal(v.payload, &c); err != nil {
				return false, fmt.Errorf("audit: segment %s offset %d: unreadable checkpoint", v.seg.name, v.off)
			}
			if c.Boundary || c.Seq <= floor {
				return true, nil
			}
			return true, fn(seal.CheckpointEntry(c))
		default:
			return false, fmt.Errorf("audit: segment %s offset %d: a second segment header", v.seg.name, v.off)
		}
	})
}

// locate returns the segment index and offset of record seq in sn, from
// the index; ok is false when it is not indexed.
func (s *Store) locate(sn snapshot, seq uint64) (int, int64, bool) {
	if s.idx == nil {
		return 0, 0, false
	}
	num, off, ok := s.idx.position(seq)
	if !ok {
		return 0, 0, false
	}
	for i, sg := range sn.segs {
		if sg.num == num {
			return i, off, true
		}
	}
	return 0, 0, false
}

// Query implements auditlog.Storage: the time index narrows the seq
// range, then the records of that range are read in order.
func (s *Store) Query(ctx context.Context, f audit.Filter) ([]audit.Record, error) {
	if f.Limit <= 0 {
		f.Limit = audit.DefaultLimit
	}
	sn, err := s.snap()
	if err != nil {
		return nil, err
	}
	lo, hi := sn.floor()+1, sn.head.Seq
	if s.idx != nil {
		if err := s.idx.flush(); err != nil {
			return nil, err
		}
		if !f.From.IsZero() || !f.To.IsZero() {
			tlo, thi, ok, err := s.idx.timeRange(f.From, f.To)
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, nil
			}
			lo, hi = max(lo, tlo), min(hi, thi)
		}
	}
	if lo > hi {
		return nil, nil
	}
	si, off, ok := s.locate(sn, lo)
	if !ok {
		si, off = 0, 0
	}
	var out []audit.Record
	err = s.scan(ctx, sn, si, off, func(v *frameVisit) (bool, error) {
		if v.typ != frameRecord || v.seq < lo {
			return true, nil
		}
		if v.seq > hi {
			return false, nil
		}
		sl, err := seal.Unseal(bytes.Clone(v.payload))
		if err != nil {
			return false, fmt.Errorf("audit: record %d: %w", v.seq, err)
		}
		if f.Match(sl.Record) {
			out = append(out, sl.Record)
		}
		return len(out) < f.Limit, nil
	})
	return out, err
}

// Subject implements auditlog.Storage, through the subject index.
func (s *Store) Subject(ctx context.Context, pseudonym string) ([]audit.Record, error) {
	if pseudonym == "" {
		return nil, nil
	}
	sn, err := s.snap()
	if err != nil {
		return nil, err
	}
	floor := sn.floor()
	var out []audit.Record
	keep := func(p []byte, seq uint64) error {
		sl, err := seal.Unseal(bytes.Clone(p))
		if err != nil {
			return fmt.Errorf("audit: record %d: %w", seq, err)
		}
		if sl.Record.Subject == pseudonym { // the index keys a hash of it
			out = append(out, sl.Record)
		}
		return nil
	}
	if s.idx == nil { // read-only: a scan
		err := s.scan(ctx, sn, 0, 0, func(v *frameVisit) (bool, error) {
			if v.typ == frameRecord && v.seq > floor && bytes.Contains(v.payload, []byte(pseudonym)) {
				return true, keep(v.payload, v.seq)
			}
			return true, nil
		})
		return out, err
	}
	if err := s.idx.flush(); err != nil {
		return nil, err
	}
	places, err := s.idx.subject(pseudonym, floor)
	if err != nil {
		return nil, err
	}
	files := map[uint64]*os.File{}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for _, pl := range places {
		var sg *segment
		for i := range sn.segs {
			if sn.segs[i].num == pl.seg {
				sg = &sn.segs[i]
			}
		}
		if sg == nil {
			continue // purged
		}
		f := files[pl.seg]
		if f == nil {
			if f, err = os.Open(filepath.Join(s.dir, sg.name)); err != nil {
				if errors.Is(err, os.ErrNotExist) {
					continue
				}
				return nil, err
			}
			files[pl.seg] = f
		}
		fr := &frameReader{name: sg.name, r: newSection(f, pl.off, sg.end), off: pl.off, end: sg.end}
		typ, p, err := fr.next()
		if err != nil || typ != frameRecord {
			return nil, fmt.Errorf("audit: record %d: the index points at no record (%v)", pl.seq, err)
		}
		if err := keep(p, pl.seq); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Purge implements auditlog.Storage: the prefix of records older than
// before is hidden at once behind the signed boundary (the boundary
// file, replaced atomically), and every segment wholly inside it is
// deleted.
func (s *Store) Purge(ctx context.Context, before time.Time, boundary func(chain string, seq uint64, head string) (seal.Checkpoint, error)) (int, error) {
	if s.readOnly {
		return 0, errors.New("audit: the log is open read-only")
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	sn, err := s.snap()
	if err != nil {
		return 0, err
	}
	floor := sn.floor()
	if sn.head.Seq <= floor {
		return 0, nil
	}
	// Every record below the first minute that may hold a recent one is
	// old; from there, read until the first recent record.
	from := floor + 1
	if err := s.idx.flush(); err != nil {
		return 0, err
	}
	if lo, _, ok, err := s.idx.timeRange(before, time.Time{}); err != nil {
		return 0, err
	} else if ok {
		from = max(from, lo)
	} else {
		from = sn.head.Seq + 1
	}
	last := from - 1
	var lastSealed seal.Sealed
	si, off, ok := s.locate(sn, from)
	if from <= sn.head.Seq {
		if !ok {
			si, off = 0, 0
		}
		err = s.scan(ctx, sn, si, off, func(v *frameVisit) (bool, error) {
			if v.typ != frameRecord || v.seq < from {
				return true, nil
			}
			sl, err := seal.Unseal(bytes.Clone(v.payload))
			if err != nil {
				return false, fmt.Errorf("audit: purge: record %d: %w", v.seq, err)
			}
			if !sl.Record.Time.Before(before) {
				return false, nil
			}
			last, lastSealed = v.seq, sl
			return true, nil
		})
		if err != nil {
			return 0, err
		}
	}
	if last <= floor {
		return 0, nil
	}
	if lastSealed.Seq != last {
		if lastSealed, err = s.record(sn, last); err != nil {
			return 0, err
		}
	}
	// Signed outside any lock readers wait on: a remote signer may be slow.
	cp, err := boundary(lastSealed.Chain, last, lastSealed.Hash)
	if err != nil {
		return 0, err
	}
	if !cp.Boundary || cp.Seq != last || cp.Head != lastSealed.Hash {
		return 0, errors.New("audit: purge: the boundary checkpoint does not match the last purged record")
	}
	if err := writeBoundary(s.dir, cp); err != nil {
		return 0, err
	}
	s.mu.Lock()
	s.boundary = &cp
	s.head.LastCheckpoint = max(s.head.LastCheckpoint, cp.Seq)
	var gone []segment
	for len(s.segs) > 1 && s.segs[1].first-1 <= cp.Seq {
		gone = append(gone, s.segs[0])
		s.segs = s.segs[1:]
	}
	s.mu.Unlock()
	for _, sg := range gone {
		if err := os.Remove(filepath.Join(s.dir, sg.name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, fmt.Errorf("audit: purge: remove segment %s: %w", sg.name, err)
		}
		// The torn tails saved from it are as old as its records.
		torn, _ := filepath.Glob(filepath.Join(s.dir, sg.name+".torn-*"))
		for _, f := range torn {
			if err := os.Remove(f); err != nil {
				return 0, fmt.Errorf("audit: purge: %w", err)
			}
		}
	}
	if len(gone) > 0 {
		if err := syncDir(s.dir); err != nil {
			return 0, err
		}
	}
	s.idx.purged(cp.Seq)
	return int(last - floor), nil
}

// record reads one record of the snapshot.
func (s *Store) record(sn snapshot, seq uint64) (seal.Sealed, error) {
	si, off, ok := s.locate(sn, seq)
	if !ok {
		si, off = 0, 0
	}
	var out seal.Sealed
	found := false
	err := s.scan(context.Background(), sn, si, off, func(v *frameVisit) (bool, error) {
		if v.typ != frameRecord || v.seq < seq {
			return true, nil
		}
		if v.seq == seq {
			sl, err := seal.Unseal(bytes.Clone(v.payload))
			out, found = sl, err == nil
			return false, err
		}
		return false, nil
	})
	if err == nil && !found {
		err = fmt.Errorf("audit: record %d not found", seq)
	}
	return out, err
}

// sortCheckpoints orders a batch's checkpoints: boundaries first, then
// by seq (the order they are written in).
func sortCheckpoints(cps []seal.Checkpoint) []seal.Checkpoint {
	out := slices.Clone(cps)
	slices.SortStableFunc(out, func(a, b seal.Checkpoint) int {
		if a.Boundary != b.Boundary {
			if a.Boundary {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.Seq, b.Seq)
	})
	return out
}

func newSection(f *os.File, off, end int64) io.Reader { return io.NewSectionReader(f, off, end-off) }

func newBufReader(r io.Reader) io.Reader { return bufio.NewReaderSize(r, 64<<10) }
