package certs

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/relais-broker/relais/broker/identity"
)

// Revocations is the set of revoked certificate serials the broker
// enforces, on every new connection and on every call. It has two parts:
// serials revoked through the broker (effective at once) and the serials
// of the issuer's CRL (refreshed by WatchCRL, so a revocation done
// directly in Vault is honoured too). Serials are compared in the
// identity.NormaliseSerial form. Safe for concurrent use.
type Revocations struct {
	mu     sync.RWMutex
	local  map[string]struct{}
	crl    map[string]struct{}
	loaded time.Time
}

// NewRevocations returns an empty set.
func NewRevocations() *Revocations {
	return &Revocations{local: map[string]struct{}{}, crl: map[string]struct{}{}}
}

// Add revokes serials at once (as written by any hex form). Invalid
// serials are ignored and reported in the result.
func (r *Revocations) Add(serials ...string) (invalid []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range serials {
		n := identity.NormaliseSerial(s)
		if n == "" {
			invalid = append(invalid, s)
			continue
		}
		r.local[n] = struct{}{}
	}
	return invalid
}

// SetCRL replaces the CRL part with serials, fetched at when.
func (r *Revocations) SetCRL(serials []string, when time.Time) {
	crl := make(map[string]struct{}, len(serials))
	for _, s := range serials {
		if n := identity.NormaliseSerial(s); n != "" {
			crl[n] = struct{}{}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.crl, r.loaded = crl, when
}

// IsRevoked reports whether serial (any hex form) is revoked. A nil set
// revokes nothing.
func (r *Revocations) IsRevoked(serial string) bool {
	if r == nil {
		return false
	}
	n := identity.NormaliseSerial(serial)
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, local := r.local[n]
	_, crl := r.crl[n]
	return local || crl
}

// CRLLoadedAt is when the CRL part was last refreshed; zero if never.
func (r *Revocations) CRLLoadedAt() time.Time {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.loaded
}

// CRLSource lists the serials an issuer has revoked, from its signed CRL.
type CRLSource interface {
	RevokedSerials(ctx context.Context) ([]string, error)
}

// WatchCRL refreshes the CRL part of r from src now and every interval
// until ctx ends. A failed refresh keeps the last good list (revocations
// are never forgotten because the issuer is unreachable) and is logged.
func WatchCRL(ctx context.Context, r *Revocations, src CRLSource, interval time.Duration, log *slog.Logger, now func() time.Time) {
	if now == nil {
		now = time.Now
	}
	refresh := func() {
		serials, err := src.RevokedSerials(ctx)
		if err != nil {
			if ctx.Err() == nil && log != nil {
				log.Warn("crl refresh failed; keeping the last revocation list", "error", err.Error())
			}
			return
		}
		r.SetCRL(serials, now())
	}
	for {
		refresh()
		if !sleep(ctx, interval) {
			return
		}
	}
}
