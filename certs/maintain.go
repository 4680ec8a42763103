package certs

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"time"
)

// ServerCertKeeper keeps the broker's own certificate fresh: it issues a
// new one from the issuer when two thirds of the current one's life have
// passed and swaps it into src, which the live tls.Config reads at every
// handshake. No restart, no dropped connection.
type ServerCertKeeper struct {
	Issuer   Issuer
	Source   *CertSource
	DNSNames []string
	IPs      []net.IP
	TTL      time.Duration
	Logger   *slog.Logger
	Clock    func() time.Time
	// MinRetry/MaxRetry bound the back-off after a failure (5 s, 1 min).
	MinRetry, MaxRetry time.Duration
}

// Issue issues a certificate now and swaps it in.
func (k *ServerCertKeeper) Issue(ctx context.Context) error {
	cred, err := k.Issuer.IssueServer(ctx, k.DNSNames, k.IPs, k.TTL)
	if err != nil {
		return err
	}
	if err := k.Source.Set(cred.FullChainPEM(), cred.KeyPEM); err != nil {
		return err
	}
	k.logger().Info("server certificate issued", "serial", cred.Serial, "not_after", cred.NotAfter)
	return nil
}

// Run renews the certificate whenever due until ctx ends. Failures are
// retried with back-off and logged; the current certificate stays in use.
func (k *ServerCertKeeper) Run(ctx context.Context) {
	now := k.Clock
	if now == nil {
		now = time.Now
	}
	minRetry, maxRetry := k.MinRetry, k.MaxRetry
	if minRetry <= 0 {
		minRetry = 5 * time.Second
	}
	if maxRetry < minRetry {
		maxRetry = max(time.Minute, minRetry)
	}
	wait := minRetry
	for {
		next := now()
		if c := k.Source.Certificate(); c != nil && c.Leaf != nil {
			next = c.Leaf.NotBefore.Add(c.Leaf.NotAfter.Sub(c.Leaf.NotBefore) * 2 / 3)
		}
		if !sleep(ctx, next.Sub(now())) {
			return
		}
		if err := k.Issue(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			k.logger().Warn("server certificate renewal failed; keeping the current one", "error", err.Error(), "retry_in", wait.String())
			if !sleep(ctx, wait) {
				return
			}
			wait = min(wait*2, maxRetry)
			continue
		}
		wait = minRetry
	}
}

func (k *ServerCertKeeper) logger() *slog.Logger {
	if k.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return k.Logger
}

// KeepTrust reloads the trust bundle from issuer every interval until ctx
// ends, so that a new or rotated CA is trusted without restart. A failed
// reload keeps the current bundle.
func KeepTrust(ctx context.Context, issuer Issuer, pool *TrustPool, interval time.Duration, log *slog.Logger) {
	var last []byte
	for {
		bundle, err := issuer.TrustBundle(ctx)
		switch {
		case err != nil:
			if ctx.Err() == nil && log != nil {
				log.Warn("trust bundle reload failed; keeping the current one", "error", err.Error())
			}
		case !bytes.Equal(bundle, last):
			if err := pool.Set(bundle); err != nil {
				if log != nil {
					log.Error("issuer answered an unusable trust bundle; keeping the current one", "error", err.Error())
				}
			} else {
				last = bundle
			}
		}
		if !sleep(ctx, interval) {
			return
		}
	}
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
