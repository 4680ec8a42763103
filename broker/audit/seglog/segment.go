package seglog

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/relais-broker/relais/broker/audit/seal"
)

// Names in the directory.
const (
	lockName     = "LOCK"
	indexName    = "index.db"
	boundaryName = "boundary"
	segExt       = ".seg"
	tmpExt       = ".tmp"
	segMagic     = "relais-audit-segment-v1"
)

// segHeader is the first frame of every segment: where the chain stood
// when the segment was created, so that a segment is read without the
// ones before it.
type segHeader struct {
	Magic string `json:"magic"`
	// Number orders the segments (1, 2, …); First is the seq of its
	// first record; Prev the hash that record follows.
	Number         uint64 `json:"segment"`
	First          uint64 `json:"first"`
	Prev           string `json:"prev"`
	LastCheckpoint uint64 `json:"last_checkpoint"`
}

// segment is one segment file as the store knows it.
type segment struct {
	num   uint64
	first uint64 // from the name
	name  string
	start int64 // end of its header
	end   int64 // end of its frames (the active one grows)
}

// segName is "<number>-<first seq>.seg", both 16 hex digits (etcd's
// shape), so that names sort in chain order.
func segName(num, first uint64) string { return fmt.Sprintf("%016x-%016x%s", num, first, segExt) }

func parseSegName(name string) (num, first uint64, ok bool) {
	if !strings.HasSuffix(name, segExt) || len(name) != 33+len(segExt) {
		return 0, 0, false
	}
	_, err := fmt.Sscanf(name[:33], "%016x-%016x", &num, &first)
	return num, first, err == nil
}

// listSegments returns the segments in the directory, in order.
func listSegments(dir string) ([]segment, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("audit: read %s: %w", dir, err)
	}
	var segs []segment
	for _, e := range ents {
		if num, first, ok := parseSegName(e.Name()); ok && e.Type().IsRegular() {
			segs = append(segs, segment{num: num, first: first, name: e.Name()})
		}
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].num < segs[j].num })
	for i := 1; i < len(segs); i++ {
		if segs[i].num != segs[i-1].num+1 {
			return nil, fmt.Errorf("audit: %s: segment %d is missing (after %s)", dir, segs[i-1].num+1, segs[i-1].name)
		}
		if segs[i].first < segs[i-1].first {
			return nil, fmt.Errorf("audit: %s: segment %s starts before the one ahead of it", dir, segs[i].name)
		}
	}
	return segs, nil
}

// readHeader reads a segment's header frame.
func readHeader(f *os.File, name string) (segHeader, int64, error) {
	st, err := f.Stat()
	if err != nil {
		return segHeader{}, 0, err
	}
	fr := &frameReader{name: name, r: io.NewSectionReader(f, 0, st.Size()), end: st.Size()}
	typ, p, err := fr.next()
	if err == nil && typ != frameHeader {
		err = &badFrame{name, 0, "the segment does not start with its header"}
	}
	if errors.Is(err, errEnd) {
		err = &badFrame{name, 0, "the segment has no header"}
	}
	if err != nil {
		return segHeader{}, 0, err
	}
	var h segHeader
	if err := json.Unmarshal(p, &h); err != nil || h.Magic != segMagic {
		return segHeader{}, 0, &badFrame{name, 0, "not a Relais audit segment"}
	}
	return h, fr.off, nil
}

// createSegment writes a new segment atomically: a temporary file,
// preallocated, with its header, made durable, then renamed into place
// and the directory synced. It returns the open file and the end of the
// header.
func createSegment(dir string, h segHeader, size int64) (*os.File, string, int64, error) {
	name := segName(h.Number, h.First)
	tmp := filepath.Join(dir, name+tmpExt)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, "", 0, fmt.Errorf("audit: create segment %s: %w", name, err)
	}
	fail := func(err error) (*os.File, string, int64, error) {
		f.Close()
		os.Remove(tmp)
		return nil, "", 0, fmt.Errorf("audit: create segment %s: %w", name, err)
	}
	// Without the room to preallocate, the segment grows with its
	// appends: the log serves while the disk has space, and a write that
	// meets a full disk is refused and taken back (Store.undo).
	if err := preallocate(f, size); err != nil && !noSpace(err) {
		return fail(err)
	}
	h.Magic = segMagic
	p, err := json.Marshal(h)
	if err != nil {
		return fail(err)
	}
	frame := appendFrame(nil, frameHeader, p)
	if _, err := f.WriteAt(frame, 0); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil { // the size changed: fsync, not fdatasync
		return fail(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fail(err)
	}
	f.Close()
	if err := syncDir(dir); err != nil {
		return nil, "", 0, fmt.Errorf("audit: create segment %s: %w", name, err)
	}
	// Reopened by its name, so that errors name the segment.
	if f, err = os.OpenFile(filepath.Join(dir, name), os.O_RDWR, 0o600); err != nil {
		return nil, "", 0, fmt.Errorf("audit: open segment %s: %w", name, err)
	}
	return f, name, int64(len(frame)), nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// writeBoundary replaces the boundary file atomically with the frame of
// c: the signed statement of what retention purged.
func writeBoundary(dir string, c seal.Checkpoint) error {
	p, err := json.Marshal(c)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, boundaryName+tmpExt)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("audit: write the boundary: %w", err)
	}
	_, err = f.Write(appendFrame(nil, frameCheckpoint, p))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, boundaryName))
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("audit: write the boundary: %w", err)
	}
	return nil
}

// readBoundary reads the boundary file; nil when there is none.
func readBoundary(dir string) (*seal.Checkpoint, error) {
	f, err := os.Open(filepath.Join(dir, boundaryName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	fr := &frameReader{name: boundaryName, r: io.NewSectionReader(f, 0, st.Size()), end: st.Size()}
	typ, p, err := fr.next()
	if err == nil && typ != frameCheckpoint {
		err = &badFrame{boundaryName, 0, "not a checkpoint frame"}
	}
	if errors.Is(err, errEnd) {
		err = &badFrame{boundaryName, 0, "empty"}
	}
	if err != nil {
		return nil, fmt.Errorf("audit: the boundary file is damaged: %w", err)
	}
	var c seal.Checkpoint
	if err := json.Unmarshal(p, &c); err != nil || !c.Boundary {
		return nil, fmt.Errorf("audit: the boundary file does not hold a boundary checkpoint")
	}
	return &c, nil
}
