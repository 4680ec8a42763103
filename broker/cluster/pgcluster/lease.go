package pgcluster

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/relais-broker/relais/broker/cluster"
)

// Lease returns the lease called name: a session advisory lock on a
// dedicated connection of its own, independent of Join.
func (c *Cluster) Lease(name string) cluster.Lease { return &lease{c: c, name: name} }

type lease struct {
	c       *Cluster
	name    string
	running atomic.Bool
	held    atomic.Bool
}

// Held reports whether the job runs under the lease now.
func (l *lease) Held() bool { return l.held.Load() }

// Run contends for the lease every RetryInterval and runs job while it
// holds it.
func (l *lease) Run(ctx context.Context, job func(ctx context.Context) error) error {
	if err := cluster.ValidateName("lease name", l.name); err != nil {
		return err
	}
	if job == nil {
		return fmt.Errorf("%w: lease %s has no job", cluster.ErrInvalid, l.name)
	}
	if !l.running.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: %s", cluster.ErrLeaseRunning, l.name)
	}
	defer l.running.Store(false)
	c := l.c
	var (
		sess      *session
		abandoned *sessionID
		key       int32
		haveKey   bool
		failing   bool
	)
	defer func() {
		if sess != nil {
			sess.close()
		}
	}()
	fail := func(err error) {
		if !failing {
			failing = true
			c.log.Warn("cluster: lease contention failed, retrying", "lease", l.name, "error", err)
		}
	}
	// wait is a pause between attempts; false when ctx is done.
	wait := func() bool {
		t := time.NewTimer(c.retry)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	for ctx.Err() == nil {
		if !haveKey {
			k, err := c.lockKey(ctx, "lease:"+l.name)
			if err != nil {
				fail(err)
				if !wait() {
					break
				}
				continue
			}
			key, haveKey = k, true
		}
		if sess == nil {
			s, err := c.openSession(ctx, abandoned)
			if err != nil {
				fail(err)
				if !wait() {
					break
				}
				continue
			}
			sess, abandoned = s, nil
		}
		ok, err := sess.tryLock(ctx, key, c.opTimeout)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			abandoned = &sess.id
			sess.close()
			sess = nil
			fail(err)
			if !wait() {
				break
			}
			continue
		}
		failing = false
		if !ok {
			if !wait() {
				break
			}
			continue
		}
		c.log.Info("cluster: lease acquired", "lease", l.name)
		lost, err := l.hold(ctx, sess, job)
		if !lost {
			return err
		}
		c.log.Warn("cluster: lease lost, job stopped", "lease", l.name)
		abandoned = &sess.id
		sess.close()
		sess = nil
		if !wait() {
			break
		}
	}
	return nil
}

// hold runs job under the lock held by s, checking s every CheckInterval.
// lost is true when the check failed: the job was cancelled and has
// returned, and the lock may be another replica's already.
func (l *lease) hold(ctx context.Context, s *session, job func(ctx context.Context) error) (lost bool, err error) {
	jobCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	l.held.Store(true)
	defer l.held.Store(false)
	go func() { done <- job(jobCtx) }()
	t := time.NewTicker(l.c.check)
	defer t.Stop()
	for {
		select {
		case err := <-done:
			if ctx.Err() != nil || err == nil {
				return false, nil
			}
			return false, fmt.Errorf("lease %s: job: %w", l.name, err)
		case <-ctx.Done():
			cancel()
			<-done
			return false, nil
		case <-t.C:
			octx, ocancel := l.c.opContext(ctx)
			_, err := s.conn.Exec(octx, "SELECT 1")
			ocancel()
			if err != nil {
				l.held.Store(false)
				cancel()
				<-done
				return true, nil
			}
		}
	}
}
