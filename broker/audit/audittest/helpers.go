package audittest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/audit/auditlog"
	"github.com/relais-broker/relais/broker/audit/seal"
)

// T0 is the time of the first record the helpers make.
var T0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

// NewSigner returns a fresh Ed25519 checkpoint signer.
func NewSigner(t testing.TB) seal.Ed25519Signer {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return seal.Ed25519Signer(k)
}

// Record returns the i-th record of a test log: a minute apart from T0,
// three subjects, two consumers, two methods, some refusals.
func Record(i int) audit.Record {
	r := audit.Record{
		Time: T0.Add(time.Duration(i) * time.Minute), RequestID: fmt.Sprintf("req-%d", i), Consumer: "21990000100005",
		CertSerial: "4a:1f", Recipient: "21990000100005", Method: "/relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient",
		Purpose: "tarification_sociale", CaseReference: fmt.Sprintf("case-%d", i), Subject: fmt.Sprintf("%064x", i%3),
		FieldsRequested: []string{"family_quotient.value"}, FieldsReturned: []string{"family_quotient.value"}, Source: "sandbox",
		Code: "OK", Latency: time.Duration(i) * time.Millisecond,
	}
	if i%4 == 0 {
		r.Consumer = "21750001600019"
		r.Method = "/relais.studentstatus.v1.StudentStatusService/GetStudentStatus"
	}
	if i%5 == 0 {
		r.Code, r.Reason, r.FieldsReturned = "PermissionDenied", "no_grant", nil
	}
	if i%7 == 0 { // an admin action: no subject
		r.Subject, r.Operator, r.Target, r.Method = "", "ops-1", "consumer 21990000100005", "/relais.admin.v1.RegistryAdminService/SuspendConsumer"
	}
	return r
}

// Records returns Record(from) to Record(to), inclusive.
func Records(from, to int) []audit.Record {
	var out []audit.Record
	for i := from; i <= to; i++ {
		out = append(out, Record(i))
	}
	return out
}

// Seed commits recs to st directly (no Log), sealed in chain after its
// head, with a checkpoint every `every` records (none when 0), 100
// records per commit, and returns the head.
func Seed(t testing.TB, st auditlog.Storage, signer seal.Signer, chain string, recs []audit.Record, every int) seal.Head {
	t.Helper()
	ctx := context.Background()
	h, err := st.Head(ctx)
	if err != nil {
		t.Fatalf("head: %v", err)
	}
	for len(recs) > 0 {
		n := min(100, len(recs))
		var batch []seal.Sealed
		var cps []seal.Checkpoint
		for _, r := range recs[:n] {
			s, _, hash, err := seal.Seal(chain, h.Seq+1, h.Hash, r)
			if err != nil {
				t.Fatal(err)
			}
			batch = append(batch, s)
			h.Seq, h.Hash = s.Seq, hash
			if every > 0 && h.Seq%uint64(every) == 0 {
				cp, err := seal.Sign(ctx, signer, seal.Checkpoint{Chain: chain, Seq: h.Seq, Head: seal.Hex(h.Hash), Time: r.Time})
				if err != nil {
					t.Fatal(err)
				}
				cps = append(cps, cp)
				h.LastCheckpoint = h.Seq
			}
		}
		if err := st.Commit(ctx, batch, cps); err != nil {
			t.Fatalf("commit records %d to %d: %v", batch[0].Seq, h.Seq, err)
		}
		recs = recs[n:]
	}
	return h
}

// Entries returns st's export.
func Entries(t testing.TB, st auditlog.Storage) []seal.Entry {
	t.Helper()
	var out []seal.Entry
	if err := st.Export(context.Background(), func(e seal.Entry) error { out = append(out, e); return nil }); err != nil {
		t.Fatalf("export: %v", err)
	}
	return out
}

// Verify verifies st's export with pub.
func Verify(t testing.TB, st auditlog.Storage, pub ed25519.PublicKey) *seal.Report {
	t.Helper()
	return VerifyEntries(pub, Entries(t, st))
}

// VerifyEntries verifies export entries with pub.
func VerifyEntries(pub ed25519.PublicKey, entries []seal.Entry) *seal.Report {
	v := seal.NewVerifier(pub)
	for _, e := range entries {
		if !v.Add(e) {
			break
		}
	}
	return v.Report()
}

// Faulty wraps a Storage to fail commits on demand, for the fail-closed
// paths: before writing (nothing durable) or after (durable, but the
// writer is told it failed: the outcome a lost connection leaves). Its
// Close does not close the wrapped storage, so a test can read it after
// the Log is closed.
type Faulty struct {
	auditlog.Storage
	mu          sync.Mutex
	failBefore  bool
	failAfter   bool
	headFails   bool
	closed      bool
	HeadReads   int
	CommitCalls int
}

// ErrInjected is what Faulty returns.
var ErrInjected = errors.New("audittest: injected failure")

// Set chooses the failures of the next calls.
func (f *Faulty) Set(before, after, head bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failBefore, f.failAfter, f.headFails = before, after, head
}

// Head implements auditlog.Storage.
func (f *Faulty) Head(ctx context.Context) (seal.Head, error) {
	f.mu.Lock()
	f.HeadReads++
	fail := f.headFails
	f.mu.Unlock()
	if fail {
		return seal.Head{}, ErrInjected
	}
	return f.Storage.Head(ctx)
}

// Commit implements auditlog.Storage.
func (f *Faulty) Commit(ctx context.Context, recs []seal.Sealed, cps []seal.Checkpoint) error {
	f.mu.Lock()
	f.CommitCalls++
	before, after := f.failBefore, f.failAfter
	f.mu.Unlock()
	if before {
		return ErrInjected
	}
	if err := f.Storage.Commit(ctx, recs, cps); err != nil {
		return err
	}
	if after {
		return ErrInjected
	}
	return nil
}

// Close marks the wrapper closed and leaves the storage open.
func (f *Faulty) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

// Closed reports whether Close was called.
func (f *Faulty) Closed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

// Clock is an injected clock tests move by hand.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now is the clock's time; pass it as Options.Clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// Add moves the clock by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
