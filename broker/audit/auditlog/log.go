// Package auditlog is the audit log writer of Relais over any Storage:
// group commit, sealing into the hash chain (broker/audit/seal), signed
// checkpoints and retention. The same Log serves the embedded bbolt file
// and the shared PostgreSQL table.
//
// Appends are durable before they return, and grouped: one goroutine
// commits whatever queued while the previous commit was on disk, in one
// transaction, with no artificial delay, so durability does not
// serialise every call behind its own fsync. A failed append is an
// error: the broker then returns no data (fail closed).
package auditlog

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/audit/seal"
)

// Options configure a Log.
type Options struct {
	// Signer signs checkpoints; required.
	Signer seal.Signer
	// Chain is this writer's chain id ("" for the single chain of an
	// embedded broker).
	Chain string
	// CheckpointEvery and CheckpointInterval: a checkpoint is written
	// after this many records or this long after the last one (1000, 1 min).
	CheckpointEvery    int
	CheckpointInterval time.Duration
	// Retention: Purge deletes the records older (12 months when zero;
	// the CNIL range is 6 to 12 months).
	Retention time.Duration
	// OnCommit, when set, is told each commit's duration and number of
	// records (metrics); OnCommitError each failed commit (alerts).
	OnCommit      func(d time.Duration, records int)
	OnCommitError func(err error)
	// Clock is the time of checkpoints and retention (time.Now when nil).
	Clock func() time.Time
	// CommitTimeout bounds one commit (10 s when zero): the appends of a
	// stuck commit fail rather than hang.
	CommitTimeout time.Duration
	// MaxBatch bounds the records of one commit (1024 when zero).
	MaxBatch int
	// OneCommitPerRecord disables group commit (benchmarks only).
	OneCommitPerRecord bool
}

// Log is an open audit log. Safe for concurrent use.
type Log struct {
	st    Storage
	opts  Options
	queue chan *pending
	jobs  chan *job
	stop  chan struct{}
	done  sync.WaitGroup
	once  sync.Once
	// mu guards closed: appends enqueue under its read lock, so none
	// lands in the queue once Close has set closed.
	mu     sync.RWMutex
	closed bool
	// health is the outcome of the last commit or signature, for readiness.
	health atomic.Pointer[errBox]
	// head is the writer goroutine's; headMu lets Head read it.
	headMu sync.Mutex
	head   seal.Head
}

type errBox struct{ err error }

type pending struct {
	rec        audit.Record
	checkpoint bool
	err        chan error
}

// pendings recycles the appends' pending (and its channel): once its
// caller has read the outcome, the writer holds it no more.
var pendings = sync.Pool{New: func() any { return &pending{err: make(chan error, 1)} }}

// job is work that must not interleave with commits (retention): the
// writer runs it between two batches, then re-reads the head.
type job struct {
	run func(ctx context.Context) error
	err chan error
}

var _ audit.Recorder = (*Log)(nil)

// ErrClosed is returned by appends after Close.
var ErrClosed = errors.New("audit: log closed")

// Open starts the writer over st, which the Log then owns (Close closes it).
func Open(st Storage, o Options) (*Log, error) {
	if st == nil {
		return nil, errors.New("audit: a storage is required")
	}
	if o.Signer == nil || len(o.Signer.Public()) == 0 {
		return nil, errors.New("audit: a checkpoint signer (Ed25519 key) is required")
	}
	if o.CheckpointEvery <= 0 {
		o.CheckpointEvery = 1000
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = time.Minute
	}
	if o.Retention <= 0 {
		o.Retention = 365 * 24 * time.Hour
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.CommitTimeout <= 0 {
		o.CommitTimeout = 10 * time.Second
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 1024
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.CommitTimeout)
	head, err := st.Head(ctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("audit: read the chain head: %w", err)
	}
	l := &Log{st: st, opts: o, queue: make(chan *pending, 4096), jobs: make(chan *job), stop: make(chan struct{}), head: head}
	l.done.Add(1)
	go l.writer()
	return l, nil
}

// Storage is the storage the log writes to, for reads.
func (l *Log) Storage() Storage { return l.st }

// QueueDepth is the number of appends waiting for the next commit.
func (l *Log) QueueDepth() int { return len(l.queue) }

// Healthy returns the error of the last commit (or checkpoint signature),
// nil when it succeeded or none happened yet.
func (l *Log) Healthy() error {
	if b := l.health.Load(); b != nil {
		return b.err
	}
	return nil
}

// Head is the head as of the last successful commit.
func (l *Log) Head() seal.Head {
	l.headMu.Lock()
	defer l.headMu.Unlock()
	return l.head
}

// Append implements audit.Recorder: it returns once r is durable, in the
// chain, after the previous records.
func (l *Log) Append(ctx context.Context, r audit.Record) error {
	p := pendings.Get().(*pending)
	p.rec, p.checkpoint = r, false
	err := l.submit(ctx, p)
	p.rec = audit.Record{} // hold no record in the pool
	pendings.Put(p)
	return err
}

// Checkpoint writes a signed checkpoint of the current head now (nothing
// when the head already has one).
func (l *Log) Checkpoint(ctx context.Context) error {
	return l.submit(ctx, &pending{checkpoint: true, err: make(chan error, 1)})
}

func (l *Log) submit(ctx context.Context, p *pending) error {
	if err := ctx.Err(); err != nil {
		return err // a caller already gone gets no record and no data
	}
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return ErrClosed
	}
	select {
	case l.queue <- p:
		l.mu.RUnlock()
	case <-ctx.Done():
		l.mu.RUnlock()
		return ctx.Err()
	}
	// Once queued the record will be written (or refused): wait for the
	// outcome even if the caller gives up, so "no record" is never mistaken.
	return <-p.err
}

// Close writes a final checkpoint, stops the writer and closes the storage.
func (l *Log) Close() error {
	var err error
	l.once.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		// The final checkpoint queues after every append accepted before.
		p := &pending{checkpoint: true, err: make(chan error, 1)}
		l.queue <- p
		err = <-p.err
		close(l.stop)
		l.done.Wait()
		if cerr := l.st.Close(); err == nil {
			err = cerr
		}
	})
	return err
}

// writer is the commit loop: it takes what is queued, commits it in one
// transaction, answers everyone, and goes again.
func (l *Log) writer() {
	defer l.done.Done()
	ticker := time.NewTicker(l.opts.CheckpointInterval)
	defer ticker.Stop()
	stale := false // the last commit failed: its outcome is unknown
	lastCPTime := l.opts.Clock()
	var batch []*pending // reused: its pendings are answered before the next round
	for {
		clear(batch)
		batch = batch[:0]
		select {
		case j := <-l.jobs:
			ctx, cancel := context.WithTimeout(context.Background(), l.opts.CommitTimeout)
			j.err <- j.run(ctx)
			cancel()
			// The job changed what is stored (a boundary checkpoint): the
			// next batch starts from the stored head.
			stale = true
			continue
		case p := <-l.queue:
			batch = append(batch, p)
		case <-ticker.C:
			batch = append(batch, &pending{checkpoint: true, err: make(chan error, 1)})
		case <-l.stop:
			return
		}
		if !l.opts.OneCommitPerRecord {
		drain:
			for len(batch) < l.opts.MaxBatch {
				select {
				case p := <-l.queue:
					batch = append(batch, p)
				default:
					break drain
				}
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), l.opts.CommitTimeout)
		if stale {
			h, err := l.st.Head(ctx)
			if err != nil {
				cancel()
				l.finish(batch, fmt.Errorf("audit: read the chain head: %w", err), nil)
				continue
			}
			l.setHead(h)
			stale = false
		}
		head, recs, cps, results, signErr := l.build(ctx, batch, &lastCPTime)
		start := time.Now()
		var err error
		if len(recs) > 0 || len(cps) > 0 {
			err = l.st.Commit(ctx, recs, cps)
		}
		cancel()
		if len(recs) > 0 && l.opts.OnCommit != nil {
			l.opts.OnCommit(time.Since(start), len(recs))
		}
		if err != nil {
			err = fmt.Errorf("audit: commit: %w", err)
			stale = true
			if l.opts.OnCommitError != nil {
				l.opts.OnCommitError(err)
			}
		} else {
			l.setHead(head)
		}
		health := err
		if health == nil {
			health = signErr
		}
		l.health.Store(&errBox{health})
		l.finish(batch, err, results)
	}
}

func (l *Log) setHead(h seal.Head) {
	l.headMu.Lock()
	l.head = h
	l.headMu.Unlock()
}

// finish answers the batch: each pending's own error first (a record that
// could not be sealed, a checkpoint that could not be signed), else err.
func (l *Log) finish(batch []*pending, err error, results map[*pending]error) {
	for _, p := range batch {
		if e, ok := results[p]; ok && e != nil {
			p.err <- e
			continue
		}
		p.err <- err
	}
}

// build seals the batch after the current head and adds the checkpoints
// due. A signature failure leaves the records to commit (they are what
// must be durable) and the checkpoint due for the next batch.
func (l *Log) build(ctx context.Context, batch []*pending, lastCPTime *time.Time) (seal.Head, []seal.Sealed, []seal.Checkpoint, map[*pending]error, error) {
	head := l.Head()
	var (
		recs    = make([]seal.Sealed, 0, len(batch))
		cps     []seal.Checkpoint
		results map[*pending]error
		signErr error
	)
	setResult := func(p *pending, err error) {
		if results == nil {
			results = map[*pending]error{}
		}
		results[p] = err
	}
	checkpoint := func() error {
		if head.Seq <= head.LastCheckpoint {
			return nil
		}
		if signErr != nil {
			return signErr
		}
		now := l.opts.Clock()
		cp, err := seal.Sign(ctx, l.opts.Signer, seal.Checkpoint{Chain: l.opts.Chain, Seq: head.Seq, Head: seal.Hex(head.Hash), Time: now})
		if err != nil {
			signErr = fmt.Errorf("audit: checkpoint: %w", err)
			return signErr
		}
		cps = append(cps, cp)
		head.LastCheckpoint = head.Seq
		*lastCPTime = now
		return nil
	}
	for _, p := range batch {
		if p.checkpoint {
			if err := checkpoint(); err != nil {
				setResult(p, err)
			}
			continue
		}
		s, _, hash, err := seal.Seal(l.opts.Chain, head.Seq+1, head.Hash, p.rec)
		if err != nil {
			setResult(p, fmt.Errorf("audit: %w", err))
			continue
		}
		recs = append(recs, s)
		head.Seq, head.Hash = s.Seq, hash
		if head.Seq-head.LastCheckpoint >= uint64(l.opts.CheckpointEvery) {
			_ = checkpoint()
		}
	}
	if l.opts.Clock().Sub(*lastCPTime) >= l.opts.CheckpointInterval {
		_ = checkpoint()
	}
	return head, recs, cps, results, signErr
}

// Query returns the records matching f, oldest first.
func (l *Log) Query(ctx context.Context, f audit.Filter) ([]audit.Record, error) {
	return l.st.Query(ctx, f)
}

// Subject returns the accesses to the subject with this pseudonym, oldest first.
func (l *Log) Subject(ctx context.Context, pseudonym string) ([]audit.Record, error) {
	return l.st.Subject(ctx, pseudonym)
}

// Export streams every record and checkpoint from one consistent read.
func (l *Log) Export(ctx context.Context, fn func(seal.Entry) error) error {
	return l.st.Export(ctx, fn)
}

// Verify verifies the log as it stands with the signer's public key (the
// broker's own view; a third party verifies an export with the key alone).
func (l *Log) Verify(ctx context.Context) (*seal.Report, error) {
	v := seal.NewVerifier(l.opts.Signer.Public())
	errStop := errors.New("stop")
	err := l.st.Export(ctx, func(e seal.Entry) error {
		if !v.Add(e) {
			return errStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, err
	}
	return v.Report(), nil
}

// Purge deletes the records older than the retention and leaves a signed
// boundary checkpoint, so verification still passes on what remains. It
// returns how many records were deleted.
//
// It runs in the writer, between two commits, so that no checkpoint of
// the writer's can land on the boundary's sequence number and replace it.
func (l *Log) Purge(ctx context.Context) (int, error) {
	var n int
	j := &job{err: make(chan error, 1), run: func(jctx context.Context) error {
		now := l.opts.Clock()
		var err error
		n, err = l.st.Purge(jctx, now.Add(-l.opts.Retention), func(chain string, seq uint64, head string) (seal.Checkpoint, error) {
			return seal.Sign(jctx, l.opts.Signer, seal.Checkpoint{Chain: chain, Seq: seq, Head: head, Time: now, Boundary: true})
		})
		return err
	}}
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return 0, ErrClosed
	}
	select {
	case l.jobs <- j:
		l.mu.RUnlock()
	case <-ctx.Done():
		l.mu.RUnlock()
		return 0, ctx.Err()
	}
	err := <-j.err
	return n, err
}
