// Package registry defines the habilitations the broker enforces: the
// consuming public bodies and their grants (which service, which scopes,
// which purposes, for how long, at which rate). Reader is the read side the
// authorization stage uses; storage backends implement it.
package registry

import (
	"context"
	"errors"
	"time"

	"github.com/relais-broker/relais/broker/scope"
)

// ErrNotFound is returned for an unknown consumer.
var ErrNotFound = errors.New("not found")

// Status is whether a consumer may call at all.
type Status string

// Consumer statuses.
const (
	StatusActive    Status = "active"
	StatusSuspended Status = "suspended"
)

// Consumer is a consuming public body, identified by its SIRET.
type Consumer struct {
	SIRET  string
	Name   string
	Status Status
}

// Purpose is a declared purpose a grant allows, with its legal basis.
type Purpose struct {
	Code       string
	Label      string
	LegalBasis string
}

// Quota bounds how much a consumer may call a service.
type Quota struct {
	// RatePerSecond is the sustained rate of the token bucket; 0 means no
	// rate limit (only for trusted internal callers).
	RatePerSecond float64
	// Burst is the bucket size.
	Burst int
}

// Grant is one habilitation: a consumer may call a service for the listed
// purposes, receive the listed scopes, within a validity window.
type Grant struct {
	ID        string
	Consumer  string // SIRET
	Service   string // full proto service name
	Scopes    scope.Set
	Purposes  []Purpose
	NotBefore time.Time
	NotAfter  time.Time
	Quota     Quota
}

// HasPurpose reports whether the grant allows purpose code.
func (g Grant) HasPurpose(code string) bool {
	for _, p := range g.Purposes {
		if p.Code == code {
			return true
		}
	}
	return false
}

// Reader is what the broker needs to decide a call. Implementations must
// be safe for concurrent use and answer from current data: a change made
// by an operator is visible on the next call.
type Reader interface {
	// Consumer returns the consumer with this SIRET, or ErrNotFound.
	Consumer(ctx context.Context, siret string) (Consumer, error)
	// Grants returns the consumer's grants for a service, whatever their
	// validity window (the caller decides), possibly none.
	Grants(ctx context.Context, siret, service string) ([]Grant, error)
}
