// Package cluster is what a relaisd replica knows of its peers when several
// replicas share one PostgreSQL database: who is alive (membership by
// heartbeats), which replica runs a job that must run once (leader leases),
// and how a grant's per-second rate is shared among the live replicas.
// cmd/relaisd picks the implementation: Local (this package) for the
// embedded single-process bbolt mode, pgcluster for PostgreSQL; both pass
// broker/cluster/clustertest.
//
// # Design
//
// Membership. A replica joins with a unique id. The id is held by a
// session-level advisory lock taken on a connection of its own (not a pool
// connection): two processes started with one id would write one audit
// chain, so the second is refused at Join (ErrIDInUse), and the id is free
// again the moment the holder's connection closes — a crash, a kill, a
// network cut, a graceful Leave. Every Interval (1 s by default) the
// replica writes a heartbeat on that same connection, so a beat that
// succeeds also proves the lock is still held; a beat that fails drops the
// connection and the next beat reconnects and takes the lock again (if
// another process took the id meanwhile, Run stops with ErrIDInUse). Beat
// times are the database server's clock, so the replicas' clocks may
// differ; each replica translates the ages it reads into its own clock.
//
// Live(now) counts the replicas whose last beat is within LiveBeats
// intervals, ourselves always included (never less than 1), without any
// I/O: it is called on every rate decision. When this replica itself has
// not refreshed its view for LiveBeats intervals (the database is out of
// reach) it keeps the count of its last successful refresh instead of
// falling to 1, so a replica cut off from its peers does not raise its own
// share. Leave deletes the replica's row, so the others' count drops at
// their next beat (at most one interval) rather than after LiveBeats.
//
// Leases. Lease(name).Run(ctx, job) runs job while this replica holds the
// lease: a session advisory lock on a dedicated connection, tried again
// every RetryInterval by the replicas that do not hold it. The holder
// checks its connection every CheckInterval; when the check fails (the
// connection was dropped or terminated, so the database has released the
// lock), the job's context is cancelled and another replica takes over at
// its next retry. Advisory locks give no fencing token: between the moment
// the database drops the holder's session and the moment the holder's
// check fails (at most CheckInterval plus the statement timeout) two
// copies of a job may run, so jobs under a lease must be idempotent (the
// retention purge is: it removes what is older than a bound).
//
// Rate shares. The per-second token buckets stay in each replica's memory
// (no database round trip per call): each replica enforces Scale(q, live),
// the grant's rate and burst divided by Live(). Tolerance: while
// membership changes, a replica that just joined takes its share before
// the others have shrunk theirs, so the global rate can exceed the grant
// by up to one replica's share for up to LiveBeats heartbeat intervals; a
// replica that dies leaves the others enforcing a smaller share (under the
// grant, never over) until its beats are LiveBeats intervals old. The
// share assumes the load balancer spreads a consumer's calls evenly: a
// consumer whose single HTTP/2 connection lands on one replica (HAProxy in
// TCP mode) gets only that replica's share — use client-side round robin
// over the replicas' addresses, or several connections. Daily caps need no
// share: they are counted exactly in the database (ratelimit/pgquota).
package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"time"
)

// LiveBeats is how many heartbeat intervals a beat counts as alive: one
// late beat (a GC pause, a slow statement) does not drop a replica.
const LiveBeats = 3

// DefaultInterval is the heartbeat interval when none is configured.
const DefaultInterval = time.Second

// Errors of the cluster contracts.
var (
	// ErrIDInUse refuses a Join (and stops Run) when another live process
	// holds the replica id: two writers of one audit chain.
	ErrIDInUse = errors.New("replica id in use")
	// ErrInvalid is wrapped by every refusal of bad input (an id, a name,
	// an address), with the field and why.
	ErrInvalid = errors.New("invalid")
	// ErrNotJoined refuses Run and Beat before Join (or after Leave).
	ErrNotJoined = errors.New("replica has not joined")
	// ErrJoined refuses a second Join of one Membership.
	ErrJoined = errors.New("replica already joined")
	// ErrLeaseRunning refuses a second concurrent Run of one Lease value.
	ErrLeaseRunning = errors.New("lease is already running")
)

// Replica is what a replica says of itself when it joins.
type Replica struct {
	// ID names the replica (and its audit chain): unique among the live
	// replicas, stable across restarts of one deployment slot.
	ID string
	// DataAddr and AdminAddr are the host:port of its data and admin
	// listeners, for the ops view (empty when not listening).
	DataAddr, AdminAddr string
	// StartedAt is when the process started.
	StartedAt time.Time
}

// Member is one replica as the ops view lists it.
type Member struct {
	Replica
	// LastBeat is the time of its last heartbeat (the database's clock
	// for shared implementations).
	LastBeat time.Time
	// Live is whether that beat is within LiveBeats intervals.
	Live bool
	// Self marks the replica that produced the list.
	Self bool
}

// Membership is a replica's view of the live replicas.
type Membership interface {
	// Join registers r, refusing an id held by another live process
	// (ErrIDInUse) and bad input (ErrInvalid) without any effect.
	Join(ctx context.Context, r Replica) error
	// Run beats every interval until ctx is done or Leave is called (nil,
	// also when Leave came first), or until the id is lost to another
	// process (ErrIDInUse: the caller must stop writing as this replica).
	// Failed beats are retried. Before Join it returns ErrNotJoined.
	Run(ctx context.Context) error
	// Beat sends one heartbeat and refreshes the view now (Run calls it
	// every interval).
	Beat(ctx context.Context) error
	// Live is the number of live replicas at now, ourselves included,
	// never less than 1; it does no I/O.
	Live(now time.Time) int
	// List reads every known replica, for an admin or ops view.
	List(ctx context.Context) ([]Member, error)
	// Leave removes this replica (graceful shutdown, after its last audit
	// write) and frees its id; it is idempotent.
	Leave(ctx context.Context) error
}

// Lease runs a job that must run on one replica at a time.
type Lease interface {
	// Run runs job whenever this replica holds the lease, until ctx is
	// done (then nil). job's context is cancelled when the lease is lost,
	// and Run contends again once job has returned. job must return when
	// its context is done. If job returns while the lease is held, the
	// lease is released and Run returns job's error (nil: the job is
	// finished).
	Run(ctx context.Context, job func(ctx context.Context) error) error
	// Held reports whether this replica holds the lease now.
	Held() bool
}

// Leaser hands out leases by name.
type Leaser interface {
	// Lease returns the lease called name (validated by Run).
	Lease(name string) Lease
}

// nameRE is the shape of replica ids and lease names: short, printable,
// safe in a chain name, a log line and a file name.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// ValidateName checks a replica id or lease name; what names the field in
// the error.
func ValidateName(what, name string) error {
	if name == "" {
		return fmt.Errorf("%w: %s is empty", ErrInvalid, what)
	}
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%w: %s must be 1 to 63 characters among letters, digits, '.', '_' and '-', starting with a letter or digit", ErrInvalid, what)
	}
	return nil
}

// ValidateReplica checks what a replica says of itself at Join.
func ValidateReplica(r Replica) error {
	if err := ValidateName("replica id", r.ID); err != nil {
		return err
	}
	for _, a := range []struct{ field, addr string }{{"data address", r.DataAddr}, {"admin address", r.AdminAddr}} {
		if a.addr == "" {
			continue
		}
		if len(a.addr) > 255 {
			return fmt.Errorf("%w: %s is longer than 255 bytes", ErrInvalid, a.field)
		}
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			return fmt.Errorf("%w: %s %q is not host:port", ErrInvalid, a.field, a.addr)
		}
	}
	if r.StartedAt.IsZero() {
		return fmt.Errorf("%w: start time is not set", ErrInvalid)
	}
	return nil
}

// JoinFirstFree joins m as r under the first of ids that no live process
// holds (for `relaisd dev`, where a second process on the same database
// becomes the next replica), and returns that id. Any error other than
// ErrIDInUse stops the search.
func JoinFirstFree(ctx context.Context, m Membership, r Replica, ids ...string) (string, error) {
	if len(ids) == 0 {
		return "", fmt.Errorf("%w: no replica id to try", ErrInvalid)
	}
	for _, id := range ids {
		r.ID = id
		err := m.Join(ctx, r)
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, ErrIDInUse) {
			return "", err
		}
	}
	return "", fmt.Errorf("%w: every one of the %d replica ids tried is held by a live process", ErrIDInUse, len(ids))
}

// LiveWindow is how old a beat may be to count as alive, for a heartbeat
// interval.
func LiveWindow(interval time.Duration) time.Duration { return LiveBeats * interval }
