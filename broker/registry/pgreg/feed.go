package pgreg

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/relais-broker/relais/internal/pgdb"
)

// The change feed (issue 14) keeps a Store's snapshot within a bounded
// delay of the database when other replicas write. Three paths, any of
// which suffices on its own:
//
//   - LISTEN on Channel over a dedicated connection: a notified version
//     above Version triggers a Reload. Notifications are coalesced: the
//     listener only records the highest version seen and wakes the
//     reloader, so a burst of writes while a Reload runs costs one more
//     Reload, not one per write.
//   - every (re)connection of that listener triggers a Reload at once,
//     since whatever was notified while it was down is lost;
//   - every SafetyInterval, StoredVersion is compared with Version (a
//     notification lost without the connection breaking, a writer that
//     bumped the version without notifying).
//
// Reconnections and failed reloads back off exponentially with jitter
// (so that N replicas do not hammer a recovering server in step), and
// the listening connection is pinged when idle for SafetyInterval, so a
// half-open TCP connection is replaced instead of waited on forever.
//
// Hand-written rather than jackc/pgxlisten: pgxlisten retries with a
// fixed delay, runs its handler inline on the listening connection (no
// coalescing while a Reload runs) and has no idle liveness check.

// Defaults of FollowOptions.
const (
	DefaultSafetyInterval = 5 * time.Second
	DefaultMinBackoff     = 100 * time.Millisecond
	DefaultMaxBackoff     = 10 * time.Second
	// reloadTimeout bounds one Reload or StoredVersion, so that a hung
	// server cannot stall the feed.
	reloadTimeout = 30 * time.Second
	// pingTimeout bounds the liveness check of an idle listener.
	pingTimeout = 5 * time.Second
)

// FollowOptions configure Follow. The zero value is the production
// setting.
type FollowOptions struct {
	// SafetyInterval is how often the stored version is compared with
	// the served one, and how long the listener may stay silent before
	// it is pinged; DefaultSafetyInterval when zero.
	SafetyInterval time.Duration
	// MinBackoff and MaxBackoff bound the wait between reconnections and
	// between failed reloads (doubling from MinBackoff); the defaults
	// when zero.
	MinBackoff, MaxBackoff time.Duration
	// Logger receives the feed's failures (never the DSN or password:
	// pgx's errors do not carry it); slog.Default() when nil.
	Logger *slog.Logger
	// OnReload, when set, is called after every successful Reload with
	// the version now served and how long the Reload took, for metrics.
	OnReload func(version uint64, took time.Duration)
}

// Follow runs the change feed of s until ctx ends, then returns nil: it
// never gives up on a failing database, it logs and retries. Run one per
// Store (relaisd: in the composition root's errgroup).
func (s *Store) Follow(ctx context.Context, o FollowOptions) error {
	if o.SafetyInterval <= 0 {
		o.SafetyInterval = DefaultSafetyInterval
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	o.MaxBackoff = max(o.MaxBackoff, o.MinBackoff)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	// The pool's settings (address, login, TLS, timeouts), on a
	// connection of its own: a pooled one held forever would shrink the
	// pool and outlive its health checks.
	cfg := s.pool.Config().ConnConfig
	if app := cfg.RuntimeParams["application_name"]; app != "" {
		cfg.RuntimeParams["application_name"] = app + " registry feed"
	}
	f := &feed{s: s, o: o, log: o.Logger.With("component", "registry feed"), wake: make(chan struct{}, 1),
		cfg: cfg, password: cfg.Password}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.listen(ctx)
	}()
	f.reload(ctx)
	<-done
	return nil
}

type feed struct {
	s   *Store
	o   FollowOptions
	log *slog.Logger
	cfg *pgx.ConnConfig
	// notified is the highest version a notification carried.
	notified atomic.Uint64
	// force asks for a Reload whatever the versions say (a reconnection,
	// an unreadable payload).
	force atomic.Bool
	// wake has room for one signal: signals sent while the reloader is
	// busy merge into the one it will read next.
	wake chan struct{}
	// password is kept out of the logs should an error ever quote it.
	password string
}

// text is err's message for the logs, without the password.
func (f *feed) text(err error) string { return pgdb.Redact(err, f.password).Error() }

func (f *feed) signal() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// listen holds the listening connection: connect, LISTEN, ask for a
// Reload, then record notifications until the connection breaks; then
// back off and start again, until ctx ends.
func (f *feed) listen(ctx context.Context) {
	var base time.Duration
	for ctx.Err() == nil {
		conn, err := f.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			base = f.backoff(base)
			wait := jitter(base)
			f.log.Warn("cannot listen for registry changes; retrying", "error", f.text(err), "retry_in", wait)
			if !sleep(ctx, wait) {
				return
			}
			continue
		}
		// Connected: whatever was committed while we were away is only
		// found by a full Reload.
		connected := time.Now()
		f.force.Store(true)
		f.signal()
		err = f.receive(ctx, conn)
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_ = conn.Close(closeCtx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if time.Since(connected) > f.o.MaxBackoff {
			base = 0 // a connection that lasted: start the backoff afresh
		}
		base = f.backoff(base)
		wait := jitter(base)
		f.log.Warn("registry change listener disconnected; reconnecting", "error", f.text(err), "retry_in", wait)
		if !sleep(ctx, wait) {
			return
		}
	}
}

func (f *feed) connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, f.cfg.Copy())
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{Channel}.Sanitize()); err != nil {
		_ = conn.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	return conn, nil
}

// receive records the notifications of conn until it fails or ctx ends.
// Silent for SafetyInterval, the connection is pinged.
func (f *feed) receive(ctx context.Context, conn *pgx.Conn) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, f.o.SafetyInterval)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil && conn.IsClosed():
			return err
		case err != nil && pgconn.Timeout(err):
			pctx, cancel := context.WithTimeout(ctx, pingTimeout)
			err = conn.Ping(pctx)
			cancel()
			if err != nil {
				return err
			}
			continue
		case err != nil:
			return err
		case n == nil:
			continue
		}
		v, perr := strconv.ParseUint(n.Payload, 10, 64)
		if perr != nil {
			f.force.Store(true)
		} else {
			for cur := f.notified.Load(); v > cur && !f.notified.CompareAndSwap(cur, v); cur = f.notified.Load() {
			}
		}
		f.signal()
	}
}

// reload runs the Reloads until ctx ends: when woken by the listener
// (if forced or a notified version is ahead), on the safety-net tick
// (if the stored version is ahead), and after a failure (with backoff).
func (f *feed) reload(ctx context.Context) {
	tick := time.NewTicker(f.o.SafetyInterval)
	defer tick.Stop()
	var retry <-chan time.Time
	var base time.Duration
	for {
		due := false
		select {
		case <-ctx.Done():
			return
		case <-f.wake:
			due = f.force.Load() || f.notified.Load() > f.s.Version()
		case <-retry:
			retry = nil
			due = true
		case <-tick.C:
			if retry != nil {
				continue // a retry is already scheduled
			}
			due = f.behind(ctx)
		}
		if !due {
			continue
		}
		if err := f.reloadOnce(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			base = f.backoff(base)
			wait := jitter(base)
			f.log.Warn("registry reload failed; retrying", "error", f.text(err), "retry_in", wait)
			retry = time.After(wait)
			continue
		}
		base, retry = 0, nil
	}
}

// behind reports whether the database holds a newer version than the
// snapshot served.
func (f *feed) behind(ctx context.Context) bool {
	rctx, cancel := context.WithTimeout(ctx, reloadTimeout)
	defer cancel()
	v, err := f.s.StoredVersion(rctx)
	if err != nil {
		if ctx.Err() == nil {
			f.log.Warn("registry version check failed", "error", f.text(err))
		}
		return false
	}
	return v > f.s.Version()
}

func (f *feed) reloadOnce(ctx context.Context) error {
	// Cleared before the Reload: a reconnection during it asks again.
	f.force.Store(false)
	rctx, cancel := context.WithTimeout(ctx, reloadTimeout)
	defer cancel()
	start := time.Now()
	if err := f.s.Reload(rctx); err != nil {
		f.force.Store(true)
		return err
	}
	if f.o.OnReload != nil {
		f.o.OnReload(f.s.Version(), time.Since(start))
	}
	return nil
}

// backoff is the next step of the exponential backoff after base (zero
// before the first failure): doubled within [MinBackoff, MaxBackoff].
func (f *feed) backoff(base time.Duration) time.Duration {
	return min(max(2*base, f.o.MinBackoff), f.o.MaxBackoff)
}

// jitter draws the wait for base in its upper half: never zero, and
// never in step with the other replicas.
func jitter(base time.Duration) time.Duration {
	return base/2 + rand.N(base/2+1)
}

// sleep waits d or until ctx ends, reporting whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
