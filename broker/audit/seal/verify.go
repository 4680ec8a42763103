package seal

import (
	"bufio"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
)

// Head is where a chain stands: what the next record follows.
type Head struct {
	Seq  uint64
	Hash [32]byte
	// LastCheckpoint is the seq of the last checkpoint (boundary ones
	// included), 0 when none.
	LastCheckpoint uint64
}

// Entry is one line of an export: a record (its stored bytes, exactly)
// or a checkpoint. An export is JSON lines of Entry, per chain in seq
// order, a checkpoint after the record of its seq and a boundary before
// the records that follow it.
type Entry struct {
	Record     json.RawMessage `json:"record,omitempty"`
	Checkpoint *Checkpoint     `json:"checkpoint,omitempty"`
}

// RecordEntry is the export entry of stored record bytes.
func RecordEntry(raw []byte) Entry { return Entry{Record: raw} }

// CheckpointEntry is the export entry of a checkpoint.
func CheckpointEntry(c Checkpoint) Entry { return Entry{Checkpoint: &c} }

// Writer writes an export as JSON lines.
type Writer struct {
	enc *json.Encoder
	// N counts the entries written.
	N int
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // keep the record bytes as stored
	return &Writer{enc: enc}
}

// Write writes one entry; it has the signature Storage.Export wants.
func (w *Writer) Write(e Entry) error {
	if err := w.enc.Encode(e); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	w.N++
	return nil
}

// ReadExport calls fn with each entry of an export, in order.
func ReadExport(r io.Reader, fn func(Entry) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		if len(sc.Bytes()) == 0 {
			continue
		}
		var e Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return fmt.Errorf("export line %d: %w", line, err)
		}
		if (e.Record == nil) == (e.Checkpoint == nil) {
			return fmt.Errorf("export line %d: want one record or one checkpoint", line)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("export line %d: %w", line+1, err)
	}
	return nil
}

// Report is the outcome of a verification.
type Report struct {
	// FirstSeq and LastSeq bound the records verified (of the only chain,
	// when there is one); Records and Checkpoints count them over all
	// chains.
	FirstSeq, LastSeq, Records uint64
	Checkpoints                int
	// Problem is empty when everything verifies; else Chain and BadSeq
	// name the first place that does not.
	Problem string
	Chain   string
	BadSeq  uint64
	// Chains has one line per chain met, sorted by chain id.
	Chains []ChainReport
}

// ChainReport is what was verified of one chain.
type ChainReport struct {
	Chain                      string
	FirstSeq, LastSeq, Records uint64
	Checkpoints                int
	// Boundary is the seq of the retention boundary, 0 when none.
	Boundary uint64
}

// OK reports whether everything verified.
func (r *Report) OK() bool { return r.Problem == "" }

// Verifier checks a log streamed entry by entry with the public key
// alone: contiguous sequence numbers from 1 or from a retention boundary,
// each record's prev and own hash, every checkpoint's signature, and that
// every checkpoint (of the log or expected from an archive) matches the
// chain. It keeps only the head of each chain and the checkpoints still
// ahead, so an export of any size verifies in constant memory.
type Verifier struct {
	pub     ed25519.PublicKey
	earlier []ed25519.PublicKey
	chains  map[string]*chainState
	problem string
	chain   string
	badSeq  uint64
}

type chainState struct {
	id          string
	next        uint64 // expected seq
	prev        string // hash the next record must follow
	boundary    uint64
	first, last uint64
	records     uint64
	checkpoints int
	pending     []pendingCP // ahead of the records, by seq
}

type pendingCP struct {
	cp       Checkpoint
	exported bool
}

// NewVerifier returns a Verifier for logs signed by pub. earlier are the
// public keys of signing keys rotated out: checkpoints they signed before
// the rotation still verify (the hash chain binds them to the records
// either way).
func NewVerifier(pub ed25519.PublicKey, earlier ...ed25519.PublicKey) *Verifier {
	return &Verifier{pub: pub, earlier: earlier, chains: map[string]*chainState{}}
}

// signedByUs reports whether c carries a signature of the current key or
// of an earlier one.
func (v *Verifier) signedByUs(c Checkpoint) bool {
	if c.VerifySig(v.pub) {
		return true
	}
	for _, k := range v.earlier {
		if c.VerifySig(k) {
			return true
		}
	}
	return false
}

func (v *Verifier) state(chain string) *chainState {
	st, ok := v.chains[chain]
	if !ok {
		st = &chainState{id: chain, next: 1, prev: Hex(ZeroHash)}
		v.chains[chain] = st
	}
	return st
}

func (v *Verifier) fail(chain string, seq uint64, format string, args ...any) bool {
	if v.problem == "" {
		v.problem, v.chain, v.badSeq = fmt.Sprintf(format, args...), chain, seq
	}
	return false
}

// Failed reports whether a problem was found (later entries are ignored).
func (v *Verifier) Failed() bool { return v.problem != "" }

// Expect adds a checkpoint exported earlier (from an archive or a third
// party): it must be signed by the key and match the chain, unless
// retention purged its records since. Call it before feeding the log.
func (v *Verifier) Expect(c Checkpoint) bool {
	if v.Failed() {
		return false
	}
	if !v.signedByUs(c) {
		return v.fail(c.Chain, c.Seq, "exported checkpoint at seq %d: signature does not verify with this public key", c.Seq)
	}
	if c.Boundary {
		return true // a boundary states what was purged, nothing to match
	}
	v.state(c.Chain).ahead(pendingCP{cp: c, exported: true})
	return true
}

func (st *chainState) ahead(p pendingCP) {
	i := sort.Search(len(st.pending), func(i int) bool { return st.pending[i].cp.Seq >= p.cp.Seq })
	st.pending = slices.Insert(st.pending, i, p)
}

// Add feeds one export entry; it returns false once a problem is found.
func (v *Verifier) Add(e Entry) bool {
	switch {
	case e.Record != nil && e.Checkpoint == nil:
		return v.Record(e.Record)
	case e.Checkpoint != nil && e.Record == nil:
		return v.Checkpoint(*e.Checkpoint)
	default:
		return v.fail("", 0, "export entry holds neither one record nor one checkpoint")
	}
}

// header is what verification reads of a record before checking its hash.
type header struct {
	Chain string  `json:"chain"`
	Seq   *uint64 `json:"seq"`
	Prev  string  `json:"prev"`
	Hash  string  `json:"hash"`
}

// Record feeds the stored bytes of the next record.
func (v *Verifier) Record(raw []byte) bool {
	if v.Failed() {
		return false
	}
	var h header
	if err := json.Unmarshal(raw, &h); err != nil || h.Seq == nil {
		// Its chain is unknown: name the next seq of the only chain, if one.
		chain, seq := "", uint64(1)
		if len(v.chains) > 1 {
			seq = 0
		}
		for _, st := range v.chains {
			if len(v.chains) == 1 {
				chain, seq = st.id, st.next
			}
		}
		if seq == 0 {
			return v.fail("", 0, "a record is unreadable")
		}
		return v.fail(chain, seq, "record %d is unreadable", seq)
	}
	st := v.state(h.Chain)
	seq := *h.Seq
	if seq <= st.boundary {
		return true // before the retention boundary: purged, or about to be
	}
	if seq != st.next {
		if seq > st.next {
			return v.fail(st.id, st.next, "record %d is missing (next present is %d)", st.next, seq)
		}
		return v.fail(st.id, st.next, "record %d holds sequence %d (duplicated, moved or reordered)", st.next, seq)
	}
	if _, err := Unseal(raw); err != nil {
		return v.fail(st.id, seq, "record %d is unreadable: %v", seq, err)
	}
	if h.Prev != st.prev {
		return v.fail(st.id, seq, "record %d does not follow the previous record (chain broken)", seq)
	}
	if _, err := Check(raw); err != nil {
		return v.fail(st.id, seq, "record %d was modified (hash mismatch)", seq)
	}
	st.prev = h.Hash
	if st.records == 0 {
		st.first = seq
	}
	st.records++
	st.last = seq
	st.next = seq + 1
	for len(st.pending) > 0 && st.pending[0].cp.Seq <= seq {
		p := st.pending[0]
		st.pending = st.pending[1:]
		if p.cp.Seq == seq && p.cp.Head != st.prev {
			return v.mismatch(st, p)
		}
	}
	return true
}

func (v *Verifier) mismatch(st *chainState, p pendingCP) bool {
	what := "checkpoint"
	if p.exported {
		what = "exported checkpoint"
	}
	return v.fail(st.id, p.cp.Seq, "%s at seq %d does not match the chain", what, p.cp.Seq)
}

// Checkpoint feeds the log's next checkpoint.
func (v *Verifier) Checkpoint(c Checkpoint) bool {
	if v.Failed() {
		return false
	}
	if !v.signedByUs(c) {
		return v.fail(c.Chain, c.Seq, "checkpoint at seq %d: signature does not verify with this public key", c.Seq)
	}
	st := v.state(c.Chain)
	st.checkpoints++
	if c.Boundary {
		if st.records > 0 && st.last > c.Seq {
			return v.fail(st.id, c.Seq, "boundary checkpoint at seq %d comes after record %d (export out of order)", c.Seq, st.last)
		}
		if st.records > 0 && st.last == c.Seq && st.prev != c.Head {
			return v.fail(st.id, c.Seq, "boundary checkpoint at seq %d does not match the chain", c.Seq)
		}
		// What came before is purged (or about to be): start after it.
		st.boundary, st.next, st.prev = c.Seq, c.Seq+1, c.Head
		st.first, st.last, st.records = 0, 0, 0
		for len(st.pending) > 0 && st.pending[0].cp.Seq <= c.Seq {
			st.pending = st.pending[1:]
		}
		return true
	}
	switch {
	case c.Seq <= st.boundary:
		return true // superseded by the boundary
	case c.Seq == st.next-1:
		if c.Head != st.prev {
			return v.mismatch(st, pendingCP{cp: c})
		}
		return true
	case c.Seq >= st.next:
		st.ahead(pendingCP{cp: c})
		return true
	default:
		return v.fail(st.id, c.Seq, "checkpoint at seq %d comes after record %d (export out of order)", c.Seq, st.last)
	}
}

// Report ends the verification: a checkpoint still ahead of the last
// record means records it covers are missing.
func (v *Verifier) Report() *Report {
	ids := make([]string, 0, len(v.chains))
	for id := range v.chains {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		st := v.chains[id]
		if len(st.pending) > 0 && !v.Failed() {
			p := st.pending[len(st.pending)-1]
			what := "a checkpoint covers them"
			if p.exported {
				what = "an exported checkpoint covers them"
			}
			v.fail(id, st.next, "records %d to %d are missing: %s", st.next, p.cp.Seq, what)
		}
	}
	rep := &Report{Problem: v.problem, Chain: v.chain, BadSeq: v.badSeq}
	for _, id := range ids {
		st := v.chains[id]
		rep.Chains = append(rep.Chains, ChainReport{Chain: id, FirstSeq: st.first, LastSeq: st.last, Records: st.records, Checkpoints: st.checkpoints, Boundary: st.boundary})
		rep.Records += st.records
		rep.Checkpoints += st.checkpoints
	}
	if len(rep.Chains) == 1 {
		rep.FirstSeq, rep.LastSeq = rep.Chains[0].FirstSeq, rep.Chains[0].LastSeq
	}
	return rep
}

// VerifyExport verifies an export (JSON lines of Entry) with pub, and
// against checkpoints exported earlier when given.
func VerifyExport(r io.Reader, pub ed25519.PublicKey, expected ...Checkpoint) (*Report, error) {
	v := NewVerifier(pub)
	for _, c := range expected {
		v.Expect(c)
	}
	if err := v.Consume(func(fn func(Entry) error) error { return ReadExport(r, fn) }); err != nil {
		return nil, err
	}
	return v.Report(), nil
}

// Consume feeds v every entry export yields (a storage's Export, or an
// export file read back), in order, until v finds a problem. Its error is
// export's own (the entries could not be read); the verdict is v.Report().
func (v *Verifier) Consume(export func(fn func(Entry) error) error) error {
	errStop := errors.New("stop")
	err := export(func(e Entry) error {
		if !v.Add(e) {
			return errStop
		}
		return nil
	})
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

// WriteCheckpoints writes the checkpoints export yields as JSON lines —
// what an operator archives out of the broker's reach, for verifying a
// log against later — and returns how many.
func WriteCheckpoints(export func(fn func(Entry) error) error, w io.Writer) (int, error) {
	n := 0
	err := export(func(e Entry) error {
		if e.Checkpoint == nil {
			return nil
		}
		raw, err := json.Marshal(e.Checkpoint)
		if err != nil {
			return err
		}
		n++
		_, err = fmt.Fprintf(w, "%s\n", raw)
		return err
	})
	return n, err
}

// ReadCheckpoints reads archived checkpoints: JSON lines of Checkpoint
// (relaisctl audit checkpoints) or an export of Entry, whose records are
// skipped.
func ReadCheckpoints(r io.Reader) ([]Checkpoint, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var out []Checkpoint
	for line := 1; sc.Scan(); line++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var probe struct {
			Record     json.RawMessage `json:"record"`
			Checkpoint *Checkpoint     `json:"checkpoint"`
			Seq        *uint64         `json:"seq"`
		}
		if err := json.Unmarshal(sc.Bytes(), &probe); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		switch {
		case probe.Checkpoint != nil:
			out = append(out, *probe.Checkpoint)
		case probe.Record != nil:
		case probe.Seq != nil:
			var c Checkpoint
			if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
			out = append(out, c)
		default:
			return nil, fmt.Errorf("line %d: neither a checkpoint nor an export entry", line)
		}
	}
	return out, sc.Err()
}
