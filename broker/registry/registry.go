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

// Errors of the registry.
var (
	// ErrNotFound is returned for an unknown consumer, grant or credential.
	ErrNotFound = errors.New("not found")
	// ErrExists is returned when creating what already exists.
	ErrExists = errors.New("already exists")
	// ErrInvalid is wrapped by every refused write, with the field and why.
	ErrInvalid = errors.New("invalid")
)

// Status is whether a consumer may call at all.
type Status string

// Consumer statuses.
const (
	StatusActive    Status = "active"
	StatusSuspended Status = "suspended"
)

// Consumer is a consuming public body, identified by its SIRET.
type Consumer struct {
	SIRET    string
	Name     string
	Status   Status
	Contacts []Contact
	// CreatedAt and UpdatedAt are set by the store.
	CreatedAt, UpdatedAt time.Time
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
	// DailyCap bounds the calls per day; 0 means none.
	DailyCap int
}

// Contact is an administrative contact of a consuming body.
type Contact struct {
	Name, Email, Phone string
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
	// ExpectedDailyVolume is what the consumer declared it would call.
	ExpectedDailyVolume int
	// CreatedAt is set by the store; RevokedAt when the grant was ended.
	// A revoked grant is kept for history and never authorises.
	CreatedAt, RevokedAt time.Time
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

// Credential statuses.
const (
	CredentialActive  = "active"
	CredentialRevoked = "revoked"
)

// CredentialRecord tracks a certificate issued to a consumer or operator:
// written when it is issued, renewed or revoked.
type CredentialRecord struct {
	// Serial is in identity.SerialHex form.
	Serial string
	// Kind is "consumer" or "operator"; Subject the SIRET or operator id.
	Kind, Subject       string
	NotBefore, NotAfter time.Time
	Status              string
	RevokedAt           time.Time
	// IssuedBy is the operator id, or "renewal" for a self-renewal.
	IssuedBy string
}

// GrantFilter selects grants; zero fields match everything.
type GrantFilter struct {
	Consumer, Service string
	// ExpiringBefore keeps unrevoked grants that end before it.
	ExpiringBefore time.Time
}

// Store is a registry that operators change. Every write is validated
// first and either fully applied or not at all; the broker sees it at the
// next call.
type Store interface {
	Reader
	AddConsumer(ctx context.Context, c Consumer) (Consumer, error)
	ListConsumers(ctx context.Context) ([]Consumer, error)
	SetConsumerStatus(ctx context.Context, siret string, s Status) (Consumer, error)
	AddGrant(ctx context.Context, g Grant) (Grant, error)
	ListGrants(ctx context.Context, f GrantFilter) ([]Grant, error)
	RevokeGrant(ctx context.Context, id string) (Grant, error)
	ExtendGrant(ctx context.Context, id string, notAfter time.Time) (Grant, error)
	PutCredential(ctx context.Context, r CredentialRecord) error
	ListCredentials(ctx context.Context, subject string) ([]CredentialRecord, error)
	Close() error
}
