package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/relais-broker/relais/broker/cluster"
)

// view is what Live counts from: the peers' last beats in the local clock,
// as of the last successful refresh.
type view struct {
	refreshed time.Time // local clock; zero before the first refresh
	count     int       // Live at refresh time, ourselves included
	peers     []time.Time
}

// beatSQL writes our heartbeat and reads the others' in one round trip.
// The SELECT sees the table as before the upsert (it excludes our row
// anyway); a data-modifying WITH always runs to completion.
const beatSQL = `WITH beat AS (
	INSERT INTO cluster_member AS m (id, data_addr, admin_addr, started_at, beat_at)
	VALUES ($1, $2, $3, $4, now())
	ON CONFLICT (id) DO UPDATE SET data_addr = EXCLUDED.data_addr, admin_addr = EXCLUDED.admin_addr,
		started_at = EXCLUDED.started_at, beat_at = EXCLUDED.beat_at
	RETURNING m.id
)
SELECT beat_at, now() FROM cluster_member
WHERE id <> $1 AND beat_at > now() - make_interval(secs => $5)`

// Join takes the replica id's lock on a dedicated connection (refusing an
// id another live process holds), writes the first heartbeat and reads the
// live replicas, so Live is right as soon as Join returns.
func (c *Cluster) Join(ctx context.Context, r cluster.Replica) error {
	if err := cluster.ValidateReplica(r); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.self != nil {
		return fmt.Errorf("%w as %q", cluster.ErrJoined, c.self.ID)
	}
	if c.hasLeft {
		return fmt.Errorf("%w: this membership has left", cluster.ErrNotJoined)
	}
	key, err := c.lockKey(ctx, "member:"+r.ID)
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	s, err := c.openSession(ctx, nil)
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	ok, err := s.tryLock(ctx, key, c.opTimeout)
	if err != nil {
		s.close()
		return fmt.Errorf("join: take the replica id lock: %w", err)
	}
	if !ok {
		s.close()
		return fmt.Errorf("%w: replica id %q is held by the open database session of another relaisd: give each replica its own id, or stop the other one first", cluster.ErrIDInUse, r.ID)
	}
	c.self, c.key, c.sess = &r, key, s
	octx, cancel := c.opContext(ctx)
	defer cancel()
	_, err = s.conn.Exec(octx, `DELETE FROM cluster_member WHERE beat_at < now() - make_interval(secs => $1)`, staleAfter.Seconds())
	if err == nil {
		err = c.beatLocked(ctx)
	}
	if err != nil {
		s.close()
		c.self, c.sess = nil, nil
		return fmt.Errorf("join: first heartbeat: %w", err)
	}
	c.log.Info("cluster: joined", "replica", r.ID, "live", c.Live(c.clock()))
	return nil
}

// opContext bounds one statement on a dedicated connection; it is not
// cancelled with ctx, so a shutdown does not break the session (and free
// the id) in the middle of a beat.
func (c *Cluster) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), c.opTimeout)
}

// beatLocked sends one heartbeat on the session and refreshes the view.
func (c *Cluster) beatLocked(ctx context.Context) error {
	octx, cancel := c.opContext(ctx)
	defer cancel()
	window := cluster.LiveWindow(c.interval)
	r := c.self
	rows, err := c.sess.conn.Query(octx, beatSQL, r.ID, r.DataAddr, r.AdminAddr, r.StartedAt, 2*window.Seconds())
	if err != nil {
		return err
	}
	var peers []time.Time
	var ages []time.Duration
	for rows.Next() {
		var beat, dbNow time.Time
		if err := rows.Scan(&beat, &dbNow); err != nil {
			rows.Close()
			return err
		}
		ages = append(ages, dbNow.Sub(beat))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	now := c.clock()
	count := 1
	for _, age := range ages {
		peers = append(peers, now.Add(-age))
		if age <= window {
			count++
		}
	}
	c.view.Store(&view{refreshed: now, count: count, peers: peers})
	return nil
}

// Beat sends one heartbeat now. When the beat fails on the session it
// had, the session is dropped and Beat reconnects at once, taking the id's
// lock again (first ending our previous session if the server still has
// it). When another process holds the id by then, the error is
// ErrIDInUse, for good.
func (c *Cluster) Beat(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.self == nil || c.hasLeft {
		return cluster.ErrNotJoined
	}
	if c.lost != nil {
		return c.lost
	}
	if c.sess != nil {
		err := c.beatLocked(ctx)
		if err == nil {
			c.recovered()
			return nil
		}
		c.abandoned = &c.sess.id
		c.sess.close()
		c.sess = nil
		if ctx.Err() != nil {
			return c.beatFailed(err)
		}
	}
	s, err := c.openSession(ctx, c.abandoned)
	if err != nil {
		return c.beatFailed(err)
	}
	c.abandoned = nil
	ok, err := s.tryLock(ctx, c.key, c.opTimeout)
	if err != nil {
		c.abandoned = &s.id
		s.close()
		return c.beatFailed(err)
	}
	if !ok {
		s.close()
		c.lost = fmt.Errorf("%w: replica id %q was taken by another relaisd while this one was cut from the database: this process must stop", cluster.ErrIDInUse, c.self.ID)
		c.log.Error("cluster: replica id lost", "replica", c.self.ID)
		return c.lost
	}
	c.sess = s
	if err := c.beatLocked(ctx); err != nil {
		c.abandoned = &c.sess.id
		c.sess.close()
		c.sess = nil
		return c.beatFailed(err)
	}
	c.recovered()
	return nil
}

// recovered logs the end of an outage.
func (c *Cluster) recovered() {
	if c.failing {
		c.failing = false
		c.log.Info("cluster: heartbeats resumed", "replica", c.self.ID)
	}
}

// beatFailed logs the first failure of an outage and wraps err.
func (c *Cluster) beatFailed(err error) error {
	if !c.failing {
		c.failing = true
		c.log.Warn("cluster: heartbeat failed, retrying", "replica", c.self.ID, "error", err)
	}
	return fmt.Errorf("heartbeat: %w", err)
}

// Run beats every interval until ctx is done or Leave is called.
func (c *Cluster) Run(ctx context.Context) error {
	c.mu.Lock()
	joined := c.self != nil
	c.mu.Unlock()
	if !joined {
		return cluster.ErrNotJoined
	}
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.left:
			return nil
		case <-t.C:
		}
		err := c.Beat(ctx)
		switch {
		case errors.Is(err, cluster.ErrIDInUse):
			return err
		case errors.Is(err, cluster.ErrNotJoined):
			return nil // left meanwhile
		}
	}
}

// Live counts the replicas whose last beat, as of the last refresh, is
// within cluster.LiveBeats intervals of now; when that refresh is itself
// older than that, the count it saw.
func (c *Cluster) Live(now time.Time) int {
	v := c.view.Load()
	if v.refreshed.IsZero() {
		return 1
	}
	window := cluster.LiveWindow(c.interval)
	if now.Sub(v.refreshed) > window {
		return max(1, v.count)
	}
	n := 1
	for _, seen := range v.peers {
		if now.Sub(seen) <= window {
			n++
		}
	}
	return n
}

// List reads every replica row (live or not) through the pool.
func (c *Cluster) List(ctx context.Context) ([]cluster.Member, error) {
	rows, err := c.pool.Query(ctx, `SELECT id, data_addr, admin_addr, started_at, beat_at, now() FROM cluster_member ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list replicas: %w", err)
	}
	defer rows.Close()
	c.mu.Lock()
	var self string
	if c.self != nil && !c.hasLeft {
		self = c.self.ID
	}
	c.mu.Unlock()
	window := cluster.LiveWindow(c.interval)
	var out []cluster.Member
	for rows.Next() {
		var m cluster.Member
		var dbNow time.Time
		if err := rows.Scan(&m.ID, &m.DataAddr, &m.AdminAddr, &m.StartedAt, &m.LastBeat, &dbNow); err != nil {
			return nil, fmt.Errorf("list replicas: %w", err)
		}
		m.Live = dbNow.Sub(m.LastBeat) <= window
		m.Self = m.ID == self
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list replicas: %w", err)
	}
	return out, nil
}

// Leave deletes this replica's row and closes its session, which frees
// the id. Without a session (the database is out of reach) the row is
// left to age out.
func (c *Cluster) Leave(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hasLeft {
		return nil
	}
	c.hasLeft = true
	close(c.left)
	c.view.Store(&view{})
	if c.self == nil || c.sess == nil {
		return nil
	}
	octx, cancel := context.WithTimeout(ctx, c.opTimeout)
	defer cancel()
	_, err := c.sess.conn.Exec(octx, `DELETE FROM cluster_member WHERE id = $1`, c.self.ID)
	c.sess.close()
	c.sess = nil
	if err != nil {
		return fmt.Errorf("leave: delete the replica row (it will age out): %w", err)
	}
	return nil
}
