package auditlog_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/audit/auditlog"
	"github.com/relais-broker/relais/broker/audit/audittest"
	"github.com/relais-broker/relais/broker/audit/seal"
)

// gated holds the first commit until released, so appends queue behind it.
type gated struct {
	*audittest.Memory
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (g *gated) Commit(ctx context.Context, recs []seal.Sealed, cps []seal.Checkpoint) error {
	first := false
	g.once.Do(func() { first = true })
	if first {
		close(g.entered)
		<-g.release
	}
	return g.Memory.Commit(ctx, recs, cps)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestGroupCommitTakesWhatQueuedDuringTheCommit(t *testing.T) {
	g := &gated{Memory: &audittest.Memory{}, entered: make(chan struct{}), release: make(chan struct{})}
	var mu sync.Mutex
	var sizes []int
	l, err := auditlog.Open(g, auditlog.Options{Signer: audittest.NewSigner(t), OnCommit: func(_ time.Duration, n int) {
		mu.Lock()
		sizes = append(sizes, n)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := l.Append(ctx, audittest.Record(1)); err != nil {
			t.Error(err)
		}
	})
	<-g.entered
	for i := 2; i <= 11; i++ {
		wg.Go(func() {
			if err := l.Append(ctx, audittest.Record(i)); err != nil {
				t.Error(err)
			}
		})
	}
	waitFor(t, "10 queued appends", func() bool { return l.QueueDepth() == 10 })
	close(g.release)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(sizes) != 2 || sizes[0] != 1 || sizes[1] != 10 {
		t.Fatalf("commit sizes %v, want [1 10]", sizes)
	}
	if h := l.Head(); h.Seq != 11 {
		t.Fatalf("head %+v", h)
	}
}

// flakySigner fails while fail is set.
type flakySigner struct {
	seal.Ed25519Signer
	fail atomic.Bool
}

var errSigner = errors.New("signer unreachable")

func (f *flakySigner) Sign(ctx context.Context, msg []byte) ([]byte, error) {
	if f.fail.Load() {
		return nil, errSigner
	}
	return f.Ed25519Signer.Sign(ctx, msg)
}

func TestSignerOutageKeepsRecordsAndRetriesTheCheckpoint(t *testing.T) {
	m := &audittest.Memory{}
	s := &flakySigner{Ed25519Signer: audittest.NewSigner(t)}
	l, err := auditlog.Open(m, auditlog.Options{Signer: s, CheckpointEvery: 2})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	app := func(i int) {
		t.Helper()
		if err := l.Append(ctx, audittest.Record(i)); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	app(1)
	app(2)
	s.fail.Store(true)
	app(3)
	app(4) // durable although its checkpoint cannot be signed
	if err := l.Healthy(); !errors.Is(err, errSigner) {
		t.Fatalf("Healthy during a signer outage: %v", err)
	}
	if err := l.Checkpoint(ctx); !errors.Is(err, errSigner) {
		t.Fatalf("explicit checkpoint during a signer outage: %v", err)
	}
	if h, _ := m.Head(ctx); h.Seq != 4 || h.LastCheckpoint != 2 {
		t.Fatalf("head during the outage %+v", h)
	}
	s.fail.Store(false)
	app(5)
	if h, _ := m.Head(ctx); h.LastCheckpoint != 5 || l.Healthy() != nil {
		t.Fatalf("after the outage: %+v, %v", h, l.Healthy())
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := audittest.Verify(t, m.Reopen(), s.Public()); !rep.OK() || rep.Records != 5 || rep.Checkpoints != 2 {
		t.Fatalf("%+v", rep)
	}
}

func TestAppendWithADeadContextIsRefusedBeforeQueueing(t *testing.T) {
	m := &audittest.Memory{}
	l, err := auditlog.Open(m, auditlog.Options{Signer: audittest.NewSigner(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Append(ctx, audittest.Record(1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("append with a cancelled context: %v", err)
	}
	if h, _ := m.Head(context.Background()); h.Seq != 0 {
		t.Fatalf("the refused append was written: %+v", h)
	}
}

func TestOpenRefusesAMissingSignerOrStorage(t *testing.T) {
	if _, err := auditlog.Open(&audittest.Memory{}, auditlog.Options{}); err == nil {
		t.Fatal("opened without a signer")
	}
	if _, err := auditlog.Open(&audittest.Memory{}, auditlog.Options{Signer: seal.Ed25519Signer(ed25519.PrivateKey(nil))}); err == nil {
		t.Fatal("opened with an empty key")
	}
	if _, err := auditlog.Open(nil, auditlog.Options{Signer: audittest.NewSigner(t)}); err == nil {
		t.Fatal("opened without a storage")
	}
	f := &audittest.Faulty{Storage: &audittest.Memory{}}
	f.Set(false, false, true)
	if _, err := auditlog.Open(f, auditlog.Options{Signer: audittest.NewSigner(t)}); err == nil {
		t.Fatal("opened while the head cannot be read")
	}
}

func TestFollow(t *testing.T) {
	s := audittest.NewSigner(t)
	ctx := context.Background()
	r1, _, h1, _ := seal.Seal("", 1, seal.ZeroHash, audittest.Record(1))
	r2, _, h2, _ := seal.Seal("", 2, h1, audittest.Record(2))
	cp2, _ := seal.Sign(ctx, s, seal.Checkpoint{Seq: 2, Head: seal.Hex(h2)})
	h, err := auditlog.Follow(seal.Head{}, []seal.Sealed{r1, r2}, []seal.Checkpoint{cp2})
	if err != nil || h != (seal.Head{Seq: 2, Hash: h2, LastCheckpoint: 2}) {
		t.Fatalf("follow: %+v, %v", h, err)
	}
	// A history copied from a purged log starts at its boundary.
	b, _ := seal.Sign(ctx, s, seal.Checkpoint{Seq: 1, Head: seal.Hex(h1), Boundary: true})
	if h, err := auditlog.Follow(seal.Head{}, []seal.Sealed{r2}, []seal.Checkpoint{b}); err != nil || h.Seq != 2 || h.LastCheckpoint != 1 {
		t.Fatalf("follow a boundary: %+v, %v", h, err)
	}
	if _, err := auditlog.Follow(seal.Head{Seq: 1, Hash: h1}, []seal.Sealed{r1}, nil); err == nil {
		t.Fatal("a replayed record followed")
	}
	if _, err := auditlog.Follow(seal.Head{Seq: 1, Hash: h1}, nil, []seal.Checkpoint{cp2}); err == nil {
		t.Fatal("a checkpoint ahead of the chain followed")
	}
}
