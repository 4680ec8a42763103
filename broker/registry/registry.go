// Package registry defines the habilitations the broker enforces: the
// consuming public bodies and their grants (which service, which scopes,
// which purposes, for how long, at which rate), and the records of the
// certificates issued to them. Reader is the read side the authorization
// stage uses; Store is what storage backends (boltreg, pgreg) implement.
//
// The backends share one implementation of everything that is not storage:
// the validation of every write (validate.go), the rules of each change
// (writes.go) and the immutable in-memory Snapshot every call reads
// (snapshot.go), so a write refused by one backend is refused by the other
// with the same message, and authorization never waits on storage.
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
	// ErrUnavailable is wrapped by a write (or a read that must reach
	// storage) refused because the storage cannot be reached; the snapshot
	// keeps serving reads, and the same call succeeds once storage is back.
	ErrUnavailable = errors.New("registry storage unavailable")
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
	// Anomaly overrides, for this grant, how the broker reacts to calls
	// that look like enumeration; the zero value keeps the defaults.
	Anomaly AnomalyPolicy
	// Designations are the ways the consumer may designate the subject of
	// a call under this grant (the Designation* constants). Empty means
	// DesignationTyped only, what every grant allowed before citizen
	// login existed; citizen login is never implied: deny by default.
	Designations []string
	// Disclosure defers the citizen's sight of this grant's accesses (a
	// fraud control, an investigation); the zero value discloses them at
	// once.
	Disclosure Disclosure
	// CreatedAt is set by the store; RevokedAt when the grant was ended.
	// A revoked grant is kept for history and never authorises.
	CreatedAt, RevokedAt time.Time
}

// Anomaly actions: what the broker does when a grant's calls cross its
// anomaly thresholds.
const (
	// AnomalyDefault ("") keeps the broker's configured action.
	AnomalyDefault = ""
	// AnomalyAlert only records and reports the anomaly.
	AnomalyAlert = "alert"
	// AnomalyThrottle slows the consumer down on top of the alert.
	AnomalyThrottle = "throttle"
	// AnomalySuspend suspends the consumer on top of the alert.
	AnomalySuspend = "suspend"
)

// Designation modes: how a call names its subject.
const (
	// DesignationTyped is a subject typed by the consumer: a civil
	// identity or a domain identifier (INE, France Travail id).
	DesignationTyped = "typed"
	// DesignationCitizenLogin is a subject designated by the citizen's own
	// login: the consumer passes the citizen's OpenID Connect access token
	// and the broker reads the identity from the identity provider.
	DesignationCitizenLogin = "citizen_login"
)

// Allows reports whether the grant lets the consumer designate subjects
// in mode (a Designation* constant); no Designations means typed only.
func (g Grant) Allows(mode string) bool {
	if len(g.Designations) == 0 {
		return mode == DesignationTyped
	}
	for _, m := range g.Designations {
		if m == mode {
			return true
		}
	}
	return false
}

// Disclosure is a grant's deferred disclosure: its accesses are shown to
// the citizen (the transparency portal) only Delay after they happened,
// under the legal reference that allows it. The audit record of each
// such access carries its disclosure date, so the deferral is part of
// the trace.
type Disclosure struct {
	// Delay is how long after the call the access is disclosed; zero
	// means at once.
	Delay time.Duration
	// LegalReference is the text that allows the deferral (required with
	// a Delay), e.g. "Code de la sécurité sociale, art. L114-9".
	LegalReference string
}

// AnomalyPolicy is a grant's own thresholds for the anomaly detector,
// overriding the broker-wide defaults field by field; zero fields keep
// the default.
type AnomalyPolicy struct {
	// MaxNotFoundRatio is the share of calls answering "subject not
	// found" above which the calls look like enumeration, in [0, 1].
	MaxNotFoundRatio float64
	// MaxDistinctSubjects bounds the distinct subjects per detector window.
	MaxDistinctSubjects int
	// Action is one of the Anomaly* constants.
	Action string
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

// RevocationReader answers "is this certificate revoked?" from the
// registry's credential records, so that a revocation written through any
// replica's store is enforced by all of them.
type RevocationReader interface {
	// Revoked reports whether serial (identity.SerialHex form) has a
	// revoked record; it reads the snapshot and never does I/O, so the
	// TLS handshake and every call may ask it.
	Revoked(serial string) bool
	// Credential returns the record of serial, or ErrNotFound; it reads
	// storage by key (never a scan).
	Credential(ctx context.Context, serial string) (CredentialRecord, error)
}

// Versioned is the seam of the change feed (several replicas on one
// database): every committed write bumps Version, and Reload rebuilds the
// snapshot from storage, for the writes made by another process.
type Versioned interface {
	// Version is the version of the snapshot being served: monotonic,
	// bumped by every committed write, stored with the data.
	Version() uint64
	// Reload rebuilds the snapshot from storage in full. A store reloads
	// after its own writes; Reload is for the writes of other replicas
	// (the change feed calls it on a newer version or a reconnect).
	Reload(ctx context.Context) error
}

// Store is a registry that operators change. Every write is validated
// first (by this package's shared rules) and either fully applied or not
// at all; the broker sees it at the next call, from the snapshot.
type Store interface {
	Reader
	RevocationReader
	Versioned
	Transfer
	AddConsumer(ctx context.Context, c Consumer) (Consumer, error)
	ListConsumers(ctx context.Context) ([]Consumer, error)
	SetConsumerStatus(ctx context.Context, siret string, s Status) (Consumer, error)
	AddGrant(ctx context.Context, g Grant) (Grant, error)
	ListGrants(ctx context.Context, f GrantFilter) ([]Grant, error)
	RevokeGrant(ctx context.Context, id string) (Grant, error)
	ExtendGrant(ctx context.Context, id string, notAfter time.Time) (Grant, error)
	// PutCredential records an issued or renewed certificate, or its
	// revocation (Status revoked). A revocation is final: a revoked
	// record is never turned back to active.
	PutCredential(ctx context.Context, r CredentialRecord) error
	// RevokeCredentials marks every serial revoked in one write (all or
	// nothing), creating a bare revoked record for a serial the registry
	// never saw (a certificate issued outside relaisd), and returns the
	// records as stored. Serials already revoked keep their first date.
	RevokeCredentials(ctx context.Context, serials ...string) ([]CredentialRecord, error)
	// ListCredentials returns the records of subject (all when empty),
	// newest first (by NotBefore, then serial).
	ListCredentials(ctx context.Context, subject string) ([]CredentialRecord, error)
	// Import adds consumers and grants in one write (all or nothing),
	// each validated as AddConsumer and AddGrant do, and returns the
	// grants with their ids: bulk onboarding and the dev registry.
	Import(ctx context.Context, consumers []Consumer, grants []Grant) ([]Grant, error)
	Close() error
}
