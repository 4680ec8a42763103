// Package transparency is the one implementation of "the accesses to a
// person's data, as told to that person": the audit records of a
// pseudonym, read through the subject index, joined with the registry
// (the body's name, SIRET and contacts, the purpose's label and legal
// basis) and the scope catalogue (the categories of data returned, in
// plain words), with the outcome of each call and whether the citizen
// initiated it. It applies the deferred-disclosure rule: an access whose
// grant defers its disclosure is hidden from the citizen until its date.
// The citizen portal and the operators' SubjectAccesses both read it, so
// a citizen and an operator answering that citizen see the same thing.
package transparency

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/registry"
)

// AuditReader reads the accesses to one subject through the subject
// index; auditlog.Log (and so boltlog.Log) implements it.
type AuditReader interface {
	// Subject returns the records of the subject with this pseudonym,
	// oldest first, never by scanning the log.
	Subject(ctx context.Context, pseudonym string) ([]audit.Record, error)
}

// Registry is the part of the registry the join needs; every
// registry.Store implements it from its in-memory snapshot.
type Registry interface {
	// Consumer returns the body with this SIRET, or registry.ErrNotFound.
	Consumer(ctx context.Context, siret string) (registry.Consumer, error)
	// ListGrants returns grants, revoked ones included: an access may
	// predate the end of the grant it was made under.
	ListGrants(ctx context.Context, f registry.GrantFilter) ([]registry.Grant, error)
}

// Config configures a Service.
type Config struct {
	// Audit is where the records are read; required.
	Audit AuditReader
	// Registry gives the bodies and their grants; required.
	Registry Registry
	// Catalog maps returned fields to their scopes (catalog.Default() when nil).
	Catalog *catalog.Catalog
	// Now is the time the deferral rule compares with (time.Now when nil).
	Now func() time.Time
}

// Service reads accesses as told to the citizen. Safe for concurrent use.
type Service struct {
	audit AuditReader
	reg   Registry
	cat   *catalog.Catalog
	now   func() time.Time
}

// New returns a Service over cfg.
func New(cfg Config) (*Service, error) {
	if cfg.Audit == nil {
		return nil, errors.New("transparency: an audit reader is required")
	}
	if cfg.Registry == nil {
		return nil, errors.New("transparency: a registry is required")
	}
	if cfg.Catalog == nil {
		cfg.Catalog = catalog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{audit: cfg.Audit, reg: cfg.Registry, cat: cfg.Catalog, now: cfg.Now}, nil
}

// View says who reads: the deferral rule hides accesses from the citizen
// only.
type View int

// Views.
const (
	// CitizenView hides every access whose disclosure date is after now.
	CitizenView View = iota
	// OperatorView shows every access, the deferred ones marked Deferred
	// (an operator lists them; the citizen does not see them yet).
	OperatorView
)

// Outcome is how a call ended, as a citizen understands it.
type Outcome string

// Outcomes.
const (
	// OutcomeGiven: the body received data.
	OutcomeGiven Outcome = "data_given"
	// OutcomeNotFound: the source found nobody (or nobody with certainty);
	// nothing was given.
	OutcomeNotFound Outcome = "nothing_found"
	// OutcomeRefused: Relais refused the call (no grant, bad request,
	// rate limit…); nothing was given.
	OutcomeRefused Outcome = "refused"
	// OutcomeFailed: a technical failure (source down, timeout); nothing
	// was given.
	OutcomeFailed Outcome = "failed"
)

// OutcomeOf classifies a record's gRPC code name and catalogue reason.
func OutcomeOf(code, reason string) Outcome {
	switch {
	case code == "OK" || code == "":
		return OutcomeGiven
	case reason == "subject_not_found" || reason == "subject_not_identifiable":
		return OutcomeNotFound
	}
	switch code {
	case "PermissionDenied", "InvalidArgument", "Unauthenticated", "ResourceExhausted", "Aborted", "FailedPrecondition", "OutOfRange", "AlreadyExists":
		return OutcomeRefused
	case "NotFound":
		return OutcomeNotFound
	default:
		return OutcomeFailed
	}
}

// Body is a public body as the registry names it.
type Body struct {
	SIRET string
	// Name is empty when the body is no longer in the registry.
	Name string
	// Contacts are the body's contacts in the registry: whom the citizen
	// writes to about the access.
	Contacts []registry.Contact
}

// Purpose is why the body made the call.
type Purpose struct {
	Code string
	// Label and LegalBasis come from the grant the call was made under;
	// empty when the grant is gone.
	Label, LegalBasis string
}

// Category is one category of data returned: a scope and its label.
type Category struct {
	Scope string
	Label Label
}

// Access is one access to the citizen's data as told to the citizen.
type Access struct {
	Time time.Time
	// Reference is the call's request id: what the citizen quotes when
	// writing to the body or to the operator.
	Reference string
	Body      Body
	// OnBehalfOf is the body the call was made for, when it is another
	// than the caller (access_context.recipient); zero otherwise.
	OnBehalfOf Body
	// Service is the data asked for, in plain words; Method the gRPC path.
	Service Label
	Method  string
	Purpose Purpose
	// Categories are the categories of data returned (none unless Given).
	Categories []Category
	Outcome    Outcome
	// CitizenInitiated is true when the citizen designated itself by its
	// own login (the call was made at its initiative).
	CitizenInitiated bool
	// DiscloseAfter and DisclosureReference are the deferral of the
	// access, zero when it was disclosed at once.
	DiscloseAfter       time.Time
	DisclosureReference string
	// Deferred is true, in the operator view only, for an access the
	// citizen does not see yet.
	Deferred bool
	// Code, Reason and FieldsReturned are the record's own, for the
	// operators' API (SubjectAccess), which shows them as they are.
	Code, Reason   string
	FieldsReturned []string
}

// Accesses returns the accesses to the subject with this pseudonym, newest
// first. In the citizen view an access whose disclosure date is after now
// is left out: its existence is not hinted at either.
func (s *Service) Accesses(ctx context.Context, pseudonym string, view View) ([]Access, error) {
	if pseudonym == "" {
		return nil, errors.New("transparency: no pseudonym")
	}
	recs, err := s.audit.Subject(ctx, pseudonym)
	if err != nil {
		return nil, fmt.Errorf("transparency: read the subject index: %w", err)
	}
	now := s.now()
	j := joiner{s: s, ctx: ctx, bodies: map[string]Body{}, grants: map[string][]registry.Grant{}}
	out := make([]Access, 0, len(recs))
	for _, r := range recs {
		if r.Subject != pseudonym { // the index answers for this pseudonym only; be sure
			continue
		}
		deferred := !r.DiscloseAfter.IsZero() && r.DiscloseAfter.After(now)
		if deferred && view != OperatorView {
			continue
		}
		a, err := j.access(r)
		if err != nil {
			return nil, err
		}
		a.Deferred = deferred
		out = append(out, a)
	}
	slices.SortStableFunc(out, func(a, b Access) int { return b.Time.Compare(a.Time) })
	return out, nil
}

// joiner caches the registry reads of one answer.
type joiner struct {
	s      *Service
	ctx    context.Context
	bodies map[string]Body
	grants map[string][]registry.Grant
}

func (j *joiner) body(siret string) (Body, error) {
	if b, ok := j.bodies[siret]; ok {
		return b, nil
	}
	b := Body{SIRET: siret}
	c, err := j.s.reg.Consumer(j.ctx, siret)
	switch {
	case err == nil:
		b.Name, b.Contacts = c.Name, c.Contacts
	case !errors.Is(err, registry.ErrNotFound):
		return Body{}, fmt.Errorf("transparency: read body %s: %w", siret, err)
	}
	j.bodies[siret] = b
	return b, nil
}

func (j *joiner) access(r audit.Record) (Access, error) {
	body, err := j.body(r.Consumer)
	if err != nil {
		return Access{}, err
	}
	a := Access{
		Time: r.Time, Reference: r.RequestID, Body: body, Method: r.Method, Service: ServiceLabel(serviceOf(r.Method)),
		Purpose: Purpose{Code: r.Purpose}, Outcome: OutcomeOf(r.Code, r.Reason), CitizenInitiated: r.SubjectOrigin == audit.OriginCitizenLogin,
		DiscloseAfter: r.DiscloseAfter, DisclosureReference: r.DisclosureReference,
		Code: r.Code, Reason: r.Reason, FieldsReturned: r.FieldsReturned,
	}
	if r.Recipient != "" && r.Recipient != r.Consumer {
		if a.OnBehalfOf, err = j.body(r.Recipient); err != nil {
			return Access{}, err
		}
	}
	if g, ok, err := j.grant(r); err != nil {
		return Access{}, err
	} else if ok {
		for _, p := range g.Purposes {
			if p.Code == r.Purpose {
				a.Purpose.Label, a.Purpose.LegalBasis = p.Label, p.LegalBasis
			}
		}
	}
	if a.Outcome == OutcomeGiven {
		a.Categories = j.s.categories(r.Method, r.FieldsReturned)
	}
	return a, nil
}

// grant finds the grant the call was made under: of the consumer's grants
// for the service with the call's purpose, the one in force at the call's
// time, else the latest created.
func (j *joiner) grant(r audit.Record) (registry.Grant, bool, error) {
	gs, ok := j.grants[r.Consumer]
	if !ok {
		var err error
		gs, err = j.s.reg.ListGrants(j.ctx, registry.GrantFilter{Consumer: r.Consumer})
		if err != nil {
			return registry.Grant{}, false, fmt.Errorf("transparency: read the grants of %s: %w", r.Consumer, err)
		}
		j.grants[r.Consumer] = gs
	}
	service := serviceOf(r.Method)
	var best registry.Grant
	found, inForce := false, false
	for _, g := range gs {
		if g.Service != service || !g.HasPurpose(r.Purpose) {
			continue
		}
		now := (g.NotBefore.IsZero() || !r.Time.Before(g.NotBefore)) && (g.NotAfter.IsZero() || r.Time.Before(g.NotAfter)) &&
			(g.RevokedAt.IsZero() || r.Time.Before(g.RevokedAt))
		switch {
		case !found, now && !inForce, now == inForce && g.CreatedAt.After(best.CreatedAt):
			best, found, inForce = g, true, now
		}
	}
	return best, found, nil
}

// categories maps a record's returned fields (mask paths, or scope names
// in records older than per-field masks) to the scopes of the catalogue,
// in the order of the response's fields, without duplicates. A field the
// catalogue does not know is told as "other data" rather than dropped.
func (s *Service) categories(method string, fields []string) []Category {
	m, known := s.cat.Method(method)
	seen := map[string]bool{}
	var out []Category
	add := func(sc string) {
		if !seen[sc] {
			seen[sc] = true
			out = append(out, Category{Scope: sc, Label: ScopeLabel(sc)})
		}
	}
	for _, p := range fields {
		if !known {
			add(OtherScope)
			continue
		}
		if m.Scopes.Has(p) {
			add(p)
			continue
		}
		top, _, _ := strings.Cut(p, ".")
		f, ok := m.Field(top)
		switch {
		case !ok:
			add(OtherScope)
		case f.NotPersonal: // source metadata: not the person's data
		default:
			add(f.Scope)
		}
	}
	return out
}

// serviceOf is the full service name of a gRPC method path.
func serviceOf(method string) string {
	s := strings.TrimPrefix(method, "/")
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		return s[:i]
	}
	return s
}

// Filter narrows a list of accesses, for the page and its exports alike;
// zero fields match everything.
type Filter struct {
	// From is inclusive, To exclusive.
	From, To time.Time
	// Body is a SIRET: the accesses by that body (or on its behalf).
	Body string
}

// Match reports whether a passes f.
func (f Filter) Match(a Access) bool {
	return (f.From.IsZero() || !a.Time.Before(f.From)) && (f.To.IsZero() || a.Time.Before(f.To)) &&
		(f.Body == "" || a.Body.SIRET == f.Body || a.OnBehalfOf.SIRET == f.Body)
}

// Apply returns the accesses that pass f, in their order.
func (f Filter) Apply(as []Access) []Access {
	out := make([]Access, 0, len(as))
	for _, a := range as {
		if f.Match(a) {
			out = append(out, a)
		}
	}
	return out
}

// Bodies returns the distinct bodies of as (callers and those called for),
// sorted by name then SIRET: the choices of a filter by body.
func Bodies(as []Access) []Body {
	seen := map[string]bool{}
	var out []Body
	for _, a := range as {
		for _, b := range []Body{a.Body, a.OnBehalfOf} {
			if b.SIRET != "" && !seen[b.SIRET] {
				seen[b.SIRET] = true
				out = append(out, b)
			}
		}
	}
	slices.SortFunc(out, func(a, b Body) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.SIRET, b.SIRET)
	})
	return out
}
