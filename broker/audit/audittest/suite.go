package audittest

import (
	"cmp"
	"context"
	"errors"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/audit/auditlog"
	"github.com/relais-broker/relais/broker/audit/seal"
)

// Option changes how Run drives the storage.
type Option func(*config)

type config struct {
	reopen func(t *testing.T, closed auditlog.Storage) auditlog.Storage
	chain  string
}

// WithReopen gives the suite a way to open again, on the same location,
// a storage it has closed: "head after reopen" runs only with it.
func WithReopen(reopen func(t *testing.T, closed auditlog.Storage) auditlog.Storage) Option {
	return func(c *config) { c.reopen = reopen }
}

// WithChain makes the suite seal its records in this chain (the one the
// storage was opened for), instead of "".
func WithChain(chain string) Option { return func(c *config) { c.chain = chain } }

// Run is the conformance suite of auditlog.Storage. newStorage returns a
// storage on a fresh, empty location (a file in t.TempDir(), a fresh
// database); the suite closes every storage it gets, once, and the
// factory's cleanups may then remove the location.
func Run(t *testing.T, newStorage func(t *testing.T) auditlog.Storage, opts ...Option) {
	cfg := config{}
	for _, o := range opts {
		o(&cfg)
	}
	s := suite{cfg: cfg, newStorage: newStorage, signer: NewSigner(t)}
	s.pub = s.signer.Public()
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"Empty", s.empty},
		{"CommitAndHead", s.commitAndHead},
		{"RefusedCommitChangesNothing", s.refusedCommit},
		{"HeadAfterReopen", s.headAfterReopen},
		{"QueryFiltersAndLimit", s.queryFilters},
		{"QueryDefaultLimit", s.queryDefaultLimit},
		{"QueryDeferredOnly", s.queryDeferred},
		{"SubjectIndex", s.subjectIndex},
		{"ExportStopsAtCallbackError", s.exportStops},
		{"ExportIsOneSnapshot", s.exportSnapshot},
		{"PurgeLeavesAVerifiableBoundary", s.purge},
		{"PurgeKeepsTheChainContiguous", s.purgeUnordered},
		{"ConcurrentAppendsThroughLog", s.concurrent},
		{"FailedCommitFailsClosedAndRereadsHead", s.failedCommit},
		{"CloseWritesAFinalCheckpoint", s.closeCheckpoint},
		{"CheckpointEveryNAndInterval", s.checkpointRules},
	} {
		t.Run(tc.name, tc.fn)
	}
}

type suite struct {
	cfg        config
	newStorage func(t *testing.T) auditlog.Storage
	signer     seal.Ed25519Signer
	pub        []byte
}

// open returns a fresh storage closed at the end of the test.
func (s *suite) open(t *testing.T) auditlog.Storage {
	t.Helper()
	st := s.newStorage(t)
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { _ = st.Close() }) })
	return st
}

// log opens a Log over a Faulty wrapper of a fresh storage: the Log's
// Close leaves the storage readable; the storage is closed at cleanup.
func (s *suite) log(t *testing.T, o auditlog.Options) (*auditlog.Log, *Faulty) {
	t.Helper()
	f := &Faulty{Storage: s.open(t)}
	o.Signer, o.Chain = s.signer, s.cfg.chain
	l, err := auditlog.Open(f, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l, f
}

func (s *suite) verifyOK(t *testing.T, st auditlog.Storage, first, last uint64) *seal.Report {
	t.Helper()
	rep := Verify(t, st, s.pub)
	if !rep.OK() || rep.FirstSeq != first || rep.LastSeq != last {
		t.Fatalf("verify: %+v, want OK from seq %d to %d", rep, first, last)
	}
	return rep
}

func head(t *testing.T, st auditlog.Storage) seal.Head {
	t.Helper()
	h, err := st.Head(context.Background())
	if err != nil {
		t.Fatalf("head: %v", err)
	}
	return h
}

func query(t *testing.T, st auditlog.Storage, f audit.Filter) []audit.Record {
	t.Helper()
	got, err := st.Query(context.Background(), f)
	if err != nil {
		t.Fatalf("query %+v: %v", f, err)
	}
	return got
}

func requestIDs(recs []audit.Record) []string {
	out := make([]string, 0, len(recs))
	for _, r := range recs {
		out = append(out, r.RequestID)
	}
	return out
}

func (s *suite) empty(t *testing.T) {
	st := s.open(t)
	if h := head(t, st); h != (seal.Head{}) {
		t.Fatalf("head of an empty chain: %+v", h)
	}
	if e := Entries(t, st); len(e) != 0 {
		t.Fatalf("export of an empty chain: %d entries", len(e))
	}
	if q := query(t, st, audit.Filter{}); len(q) != 0 {
		t.Fatalf("query of an empty chain: %d records", len(q))
	}
	n, err := st.Purge(context.Background(), T0.Add(1000*time.Hour), func(string, uint64, string) (seal.Checkpoint, error) {
		t.Error("boundary asked on an empty chain")
		return seal.Checkpoint{}, errors.New("no")
	})
	if err != nil || n != 0 {
		t.Fatalf("purge of an empty chain: %d, %v", n, err)
	}
}

func (s *suite) commitAndHead(t *testing.T) {
	st := s.open(t)
	want := Seed(t, st, s.signer, s.cfg.chain, Records(1, 25), 10)
	if h := head(t, st); h != want || h.Seq != 25 || h.LastCheckpoint != 20 {
		t.Fatalf("head %+v, want %+v", h, want)
	}
	rep := s.verifyOK(t, st, 1, 25)
	if rep.Records != 25 || rep.Checkpoints != 2 {
		t.Fatalf("report %+v", rep)
	}
	// Export order: each checkpoint right after the record of its seq.
	var order []string
	for _, e := range Entries(t, st) {
		if e.Checkpoint != nil {
			order = append(order, "cp")
			continue
		}
		sl, err := seal.Unseal(e.Record)
		if err != nil {
			t.Fatal(err)
		}
		if len(order) > 0 && order[len(order)-1] == "cp" || len(order) == 0 {
			order = append(order, sl.Record.RequestID)
		}
	}
	if want := []string{"req-1", "cp", "req-11", "cp", "req-21"}; !slices.Equal(order, want) {
		t.Fatalf("export order %v, want %v", order, want)
	}
	got := query(t, st, audit.Filter{})
	if !reflect.DeepEqual(got, Records(1, 25)) {
		t.Fatalf("records do not come back as written:\n got %+v\nwant %+v", got[0], Record(1))
	}
}

func (s *suite) refusedCommit(t *testing.T) {
	st := s.open(t)
	h := Seed(t, st, s.signer, s.cfg.chain, Records(1, 3), 3)
	before := Entries(t, st)
	ctx := context.Background()
	r4, _, h4, _ := seal.Seal(s.cfg.chain, 4, h.Hash, Record(4))
	r5, _, _, _ := seal.Seal(s.cfg.chain, 5, h4, Record(5))
	r6, _, _, _ := seal.Seal(s.cfg.chain, 6, h4, Record(6))
	wrongPrev, _, _, _ := seal.Seal(s.cfg.chain, 4, seal.ZeroHash, Record(4))
	dup, _, _, _ := seal.Seal(s.cfg.chain, 3, h.Hash, Record(3))
	badCP, _ := seal.Sign(ctx, s.signer, seal.Checkpoint{Chain: s.cfg.chain, Seq: 4, Head: seal.Hex(seal.ZeroHash), Time: T0})
	boundary, _ := seal.Sign(ctx, s.signer, seal.Checkpoint{Chain: s.cfg.chain, Seq: 9, Head: seal.Hex(h4), Time: T0, Boundary: true})
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		recs []seal.Sealed
		cps  []seal.Checkpoint
	}{
		{"a gap after a good record", ctx, []seal.Sealed{r4, r6}, nil},
		{"a wrong prev", ctx, []seal.Sealed{wrongPrev}, nil},
		{"a seq already in the chain", ctx, []seal.Sealed{dup}, nil},
		{"a good record then a stale one", ctx, []seal.Sealed{r4, r5, dup}, nil},
		{"a checkpoint that does not match", ctx, []seal.Sealed{r4}, []seal.Checkpoint{badCP}},
		{"a boundary on a chain that is not empty", ctx, []seal.Sealed{r4}, []seal.Checkpoint{boundary}},
		{"a cancelled context", cancelled, []seal.Sealed{r4}, nil},
	} {
		if err := st.Commit(tc.ctx, tc.recs, tc.cps); err == nil {
			t.Errorf("%s: commit accepted", tc.name)
		}
		if got := head(t, st); got != h {
			t.Fatalf("%s: head moved to %+v", tc.name, got)
		}
		if after := Entries(t, st); !reflect.DeepEqual(after, before) {
			t.Fatalf("%s: the refused commit left %d entries, had %d", tc.name, len(after), len(before))
		}
		if q := query(t, st, audit.Filter{}); len(q) != 3 {
			t.Fatalf("%s: %d records", tc.name, len(q))
		}
	}
	if err := st.Commit(ctx, []seal.Sealed{r4, r5}, nil); err != nil {
		t.Fatalf("the good batch after refusals: %v", err)
	}
	s.verifyOK(t, st, 1, 5)
}

func (s *suite) headAfterReopen(t *testing.T) {
	if s.cfg.reopen == nil {
		t.Skip("no audittest.WithReopen given for this storage")
	}
	st := s.newStorage(t)
	want := Seed(t, st, s.signer, s.cfg.chain, Records(1, 12), 5)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = s.cfg.reopen(t, st)
	defer st.Close()
	if h := head(t, st); h != want {
		t.Fatalf("head after reopen %+v, want %+v", h, want)
	}
	// A Log on the reopened storage continues the chain.
	l, err := auditlog.Open(&Faulty{Storage: st}, auditlog.Options{Signer: s.signer, Chain: s.cfg.chain})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(context.Background(), Record(13)); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	s.verifyOK(t, st, 1, 13)
}

func (s *suite) queryFilters(t *testing.T) {
	st := s.open(t)
	all := Records(1, 40)
	Seed(t, st, s.signer, s.cfg.chain, all, 0)
	for _, f := range []audit.Filter{
		{},
		{Consumer: "21750001600019"},
		{Method: "/relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient"},
		{Code: "PermissionDenied"},
		{Consumer: "21990000100005", Code: "OK"},
		{From: T0.Add(10 * time.Minute)},
		{To: T0.Add(10 * time.Minute)},
		{From: T0.Add(10 * time.Minute), To: T0.Add(20 * time.Minute)},
		{From: T0.Add(10 * time.Minute), To: T0.Add(20 * time.Minute), Consumer: "21750001600019"},
		{Limit: 5},
		{Code: "OK", Limit: 3},
		{Consumer: "nobody"},
		{From: T0.Add(time.Hour)},
	} {
		var want []audit.Record
		limit := f.Limit
		if limit == 0 {
			limit = audit.DefaultLimit
		}
		for _, r := range all {
			if f.Match(r) && len(want) < limit {
				want = append(want, r)
			}
		}
		if got := query(t, st, f); !slices.Equal(requestIDs(got), requestIDs(want)) {
			t.Errorf("filter %+v: got %v, want %v", f, requestIDs(got), requestIDs(want))
		}
	}
}

// queryDeferred: DeferredOnly keeps exactly the records with a disclosure
// date, with the other filters and the limit, and the deferral fields
// come back as written.
func (s *suite) queryDeferred(t *testing.T) {
	st := s.open(t)
	all := Records(1, 30)
	var deferred []string
	for i := range all {
		if i%3 == 1 {
			all[i].SubjectOrigin = audit.OriginCitizenLogin
			all[i].DiscloseAfter = all[i].Time.Add(365 * 24 * time.Hour)
			all[i].DisclosureReference = "Code de la sécurité sociale, art. L114-9"
			deferred = append(deferred, all[i].RequestID)
		}
	}
	Seed(t, st, s.signer, s.cfg.chain, all, 0)
	got := query(t, st, audit.Filter{DeferredOnly: true})
	if !slices.Equal(requestIDs(got), deferred) || len(deferred) != 10 {
		t.Fatalf("deferred only: got %v, want %v", requestIDs(got), deferred)
	}
	for i, r := range got {
		want := all[3*i+1]
		if !r.DiscloseAfter.Equal(want.DiscloseAfter) || r.DisclosureReference != want.DisclosureReference || r.SubjectOrigin != want.SubjectOrigin {
			t.Fatalf("record %s: deferral read back as %v %q %q, want %v %q %q", r.RequestID, r.DiscloseAfter, r.DisclosureReference, r.SubjectOrigin,
				want.DiscloseAfter, want.DisclosureReference, want.SubjectOrigin)
		}
	}
	for _, f := range []audit.Filter{
		{DeferredOnly: true, Consumer: "21750001600019"},
		{DeferredOnly: true, Code: "OK", Limit: 4},
		{DeferredOnly: true, From: T0.Add(10 * time.Minute), To: T0.Add(20 * time.Minute)},
	} {
		var want []audit.Record
		limit := cmp.Or(f.Limit, audit.DefaultLimit)
		for _, r := range all {
			if f.Match(r) && len(want) < limit {
				want = append(want, r)
			}
		}
		if len(want) == 0 {
			t.Fatalf("filter %+v matches nothing: the case cannot fail", f)
		}
		if got := query(t, st, f); !slices.Equal(requestIDs(got), requestIDs(want)) {
			t.Errorf("filter %+v: got %v, want %v", f, requestIDs(got), requestIDs(want))
		}
	}
}

func (s *suite) queryDefaultLimit(t *testing.T) {
	st := s.open(t)
	Seed(t, st, s.signer, s.cfg.chain, Records(1, audit.DefaultLimit+5), 0)
	got := query(t, st, audit.Filter{})
	if len(got) != audit.DefaultLimit || got[0].RequestID != "req-1" || got[len(got)-1].RequestID != "req-1000" {
		t.Fatalf("default limit: %d records, from %s", len(got), got[0].RequestID)
	}
	if got := query(t, st, audit.Filter{Limit: 2000}); len(got) != audit.DefaultLimit+5 {
		t.Fatalf("limit 2000: %d records", len(got))
	}
}

func (s *suite) subjectIndex(t *testing.T) {
	st := s.open(t)
	all := Records(1, 30)
	// A pseudonym that is a prefix of another must not match it.
	all[1].Subject = "abc"
	all[2].Subject = "abcd"
	Seed(t, st, s.signer, s.cfg.chain, all, 10)
	for _, p := range []string{Record(1).Subject, Record(3).Subject, "abc", "abcd", "unknown", ""} {
		var want []string
		for _, r := range all {
			if p != "" && r.Subject == p {
				want = append(want, r.RequestID)
			}
		}
		got, err := st.Subject(context.Background(), p)
		if err != nil {
			t.Fatalf("subject %q: %v", p, err)
		}
		if !slices.Equal(requestIDs(got), want) {
			t.Errorf("subject %q: got %v, want %v", p, requestIDs(got), want)
		}
	}
}

func (s *suite) exportStops(t *testing.T) {
	st := s.open(t)
	Seed(t, st, s.signer, s.cfg.chain, Records(1, 20), 5)
	stop := errors.New("enough")
	n := 0
	err := st.Export(context.Background(), func(seal.Entry) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 3 {
		t.Fatalf("export went on after the callback's error: %d entries, %v", n, err)
	}
}

func (s *suite) exportSnapshot(t *testing.T) {
	l, f := s.log(t, auditlog.Options{CheckpointEvery: 10})
	ctx := context.Background()
	for i := 1; i <= 20; i++ {
		if err := l.Append(ctx, Record(i)); err != nil {
			t.Fatal(err)
		}
	}
	var entries []seal.Entry
	var appended chan error
	err := f.Storage.Export(ctx, func(e seal.Entry) error {
		if appended == nil {
			// Write while the export reads; wait for the commit when the
			// storage lets it through (bbolt may hold a commit that grows
			// the file until the read ends; then the export goes on).
			appended = make(chan error, 1)
			go func() {
				var err error
				for i := 21; i <= 30 && err == nil; i++ {
					err = l.Append(ctx, Record(i))
				}
				appended <- err
			}()
			select {
			case err := <-appended:
				appended <- err
			case <-time.After(5 * time.Second):
			}
		}
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-appended; err != nil {
		t.Fatal(err)
	}
	rep := VerifyEntries(s.pub, entries)
	if !rep.OK() || rep.LastSeq != 20 || rep.Checkpoints != 2 {
		t.Fatalf("export during writes: %+v, want the 20 records and 2 checkpoints of the snapshot", rep)
	}
	s.verifyOK(t, f.Storage, 1, 30)
}

func (s *suite) purge(t *testing.T) {
	clock := NewClock(time.Date(2026, 3, 15, 12, 0, 0, 0, time.UTC))
	l, f := s.log(t, auditlog.Options{CheckpointEvery: 4, Retention: 365 * 24 * time.Hour, Clock: clock.Now})
	ctx := context.Background()
	var all []audit.Record
	for i := 1; i <= 15; i++ {
		r := Record(i)
		switch {
		case i <= 5:
			r.Time = time.Date(2025, 1, 10, 8, i, 0, 0, time.UTC) // older than the retention
		case i <= 10:
			r.Time = time.Date(2025, 6, 10, 8, i, 0, 0, time.UTC) // older after the clock moves
		default:
			r.Time = time.Date(2026, 3, 15, 8, i, 0, 0, time.UTC)
		}
		all = append(all, r)
		if err := l.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	n, err := l.Purge(ctx)
	if err != nil || n != 5 {
		t.Fatalf("purge: %d, %v; want 5 records deleted", n, err)
	}
	rep := s.verifyOK(t, f.Storage, 6, 15)
	if rep.Records != 10 || rep.Chains[0].Boundary != 5 {
		t.Fatalf("after purge: %+v", rep)
	}
	if got := query(t, f.Storage, audit.Filter{}); !slices.Equal(requestIDs(got), requestIDs(all[5:])) {
		t.Fatalf("records after purge: %v", requestIDs(got))
	}
	for _, r := range all[:5] {
		if r.Subject == "" {
			continue
		}
		got, err := f.Storage.Subject(ctx, r.Subject)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range got {
			if !g.Time.After(time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)) {
				t.Fatalf("the subject index still finds purged record %s", g.RequestID)
			}
		}
	}
	if n, err := l.Purge(ctx); err != nil || n != 0 {
		t.Fatalf("second purge with nothing old: %d, %v", n, err)
	}
	if err := l.Append(ctx, Record(16)); err != nil {
		t.Fatal(err)
	}
	clock.Set(time.Date(2026, 8, 15, 12, 0, 0, 0, time.UTC))
	if n, err := l.Purge(ctx); err != nil || n != 5 {
		t.Fatalf("purge after the clock moved: %d, %v; want 5", n, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	s.verifyOK(t, f.Storage, 11, 16)
}

// purgeUnordered: a record's time is its call's start, so a slow call
// can be sealed after a later one. Purge must still delete a prefix of
// the chain, never a record after one it keeps.
func (s *suite) purgeUnordered(t *testing.T) {
	clock := NewClock(time.Date(2026, 3, 15, 12, 0, 0, 0, time.UTC))
	l, f := s.log(t, auditlog.Options{CheckpointEvery: 3, Retention: 365 * 24 * time.Hour, Clock: clock.Now})
	ctx := context.Background()
	old, recent := time.Date(2025, 1, 10, 8, 0, 0, 0, time.UTC), time.Date(2026, 3, 15, 8, 0, 0, 0, time.UTC)
	for i := 1; i <= 10; i++ {
		r := Record(i)
		r.Time = recent.Add(time.Duration(i) * time.Second)
		if i <= 5 || i == 7 { // 7 is old but sealed after 6, which is not
			r.Time = old.Add(time.Duration(i) * time.Second)
		}
		if err := l.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	n, err := l.Purge(ctx)
	if err != nil || n > 5 {
		t.Fatalf("purge: %d, %v; want at most the 5 records before the first recent one", n, err)
	}
	s.verifyOK(t, f.Storage, uint64(n)+1, 10)
	if got := requestIDs(query(t, f.Storage, audit.Filter{})); !slices.Contains(got, "req-7") || len(got) != 10-n {
		t.Fatalf("records after purge: %v", got)
	}
}

func (s *suite) concurrent(t *testing.T) {
	l, f := s.log(t, auditlog.Options{CheckpointEvery: 50})
	const writers, each = 32, 25
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if err := l.Append(context.Background(), Record(w*1000+i)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep := s.verifyOK(t, f.Storage, 1, writers*each)
	if rep.Checkpoints < writers*each/50 {
		t.Fatalf("%d checkpoints for %d records, want one every 50", rep.Checkpoints, writers*each)
	}
	got := query(t, f.Storage, audit.Filter{Limit: writers * each})
	seen := map[string]bool{}
	for _, r := range got {
		seen[r.RequestID] = true
	}
	if len(got) != writers*each || len(seen) != writers*each {
		t.Fatalf("%d records, %d distinct, want %d", len(got), len(seen), writers*each)
	}
}

func (s *suite) failedCommit(t *testing.T) {
	l, f := s.log(t, auditlog.Options{})
	ctx := context.Background()
	appendOK := func(i int) {
		t.Helper()
		if err := l.Append(ctx, Record(i)); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	for i := 1; i <= 3; i++ {
		appendOK(i)
	}
	f.Set(true, false, false) // nothing written
	if err := l.Append(ctx, Record(4)); !errors.Is(err, ErrInjected) {
		t.Fatalf("append during a failing commit: %v", err)
	}
	if l.Healthy() == nil {
		t.Fatal("Healthy after a failed commit")
	}
	f.Set(false, true, false) // written, but the writer is told it failed
	if err := l.Append(ctx, Record(5)); !errors.Is(err, ErrInjected) {
		t.Fatalf("append with an unknown outcome: %v", err)
	}
	f.Set(false, false, true) // the head cannot be read: still no data
	if err := l.Append(ctx, Record(6)); !errors.Is(err, ErrInjected) {
		t.Fatalf("append while the head cannot be read: %v", err)
	}
	f.Set(false, false, false)
	appendOK(7)
	if err := l.Healthy(); err != nil {
		t.Fatalf("Healthy after recovery: %v", err)
	}
	appendOK(8)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	s.verifyOK(t, f.Storage, 1, 6)
	if got := requestIDs(query(t, f.Storage, audit.Filter{})); !slices.Equal(got, []string{"req-1", "req-2", "req-3", "req-5", "req-7", "req-8"}) {
		t.Fatalf("records after the failures: %v", got)
	}
}

func (s *suite) closeCheckpoint(t *testing.T) {
	l, f := s.log(t, auditlog.Options{CheckpointEvery: 1000})
	ctx := context.Background()
	for i := 1; i <= 7; i++ {
		if err := l.Append(ctx, Record(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if !f.Closed() {
		t.Fatal("Log.Close did not close its storage")
	}
	if h := head(t, f.Storage); h.Seq != 7 || h.LastCheckpoint != 7 {
		t.Fatalf("head after Close %+v, want a checkpoint at 7", h)
	}
	if err := l.Append(ctx, Record(8)); !errors.Is(err, auditlog.ErrClosed) {
		t.Fatalf("append after Close: %v", err)
	}
	if rep := s.verifyOK(t, f.Storage, 1, 7); rep.Checkpoints != 1 {
		t.Fatalf("%+v", rep)
	}
}

func (s *suite) checkpointRules(t *testing.T) {
	clock := NewClock(T0)
	l, f := s.log(t, auditlog.Options{CheckpointEvery: 5, CheckpointInterval: time.Hour, Clock: clock.Now})
	ctx := context.Background()
	for i := 1; i <= 12; i++ {
		if err := l.Append(ctx, Record(i)); err != nil {
			t.Fatal(err)
		}
	}
	if h := head(t, f.Storage); h.LastCheckpoint != 10 {
		t.Fatalf("after 12 records with a checkpoint every 5: %+v", h)
	}
	clock.Add(2 * time.Hour)
	if err := l.Append(ctx, Record(13)); err != nil {
		t.Fatal(err)
	}
	if h := head(t, f.Storage); h.LastCheckpoint != 13 {
		t.Fatalf("after the interval: %+v, want a checkpoint at 13", h)
	}
	if err := l.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	var cps []uint64
	for _, e := range Entries(t, f.Storage) {
		if e.Checkpoint != nil {
			cps = append(cps, e.Checkpoint.Seq)
		}
	}
	if !slices.Equal(cps, []uint64{5, 10, 13}) {
		t.Fatalf("checkpoints at %v, want [5 10 13] (none twice for one head)", cps)
	}
}
