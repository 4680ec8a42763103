package registry

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// Contents is everything a registry holds, history included (revoked
// grants, every credential record): what `relaisctl store migrate` copies
// from one store to another.
type Contents struct {
	// Consumers by SIRET.
	Consumers []Consumer
	// Grants by consumer, then id.
	Grants []Grant
	// Credentials newest first (SortCredentials).
	Credentials []CredentialRecord
}

// Transfer moves a whole registry between stores (bbolt to PostgreSQL)
// with its ids, dates and revocations; both stores implement it.
type Transfer interface {
	// Export returns the contents from one consistent view, in the
	// documented orders.
	Export(ctx context.Context) (Contents, error)
	// Restore writes c into an empty store in one write (all or nothing)
	// after CheckContents; a store that holds anything is refused with
	// ErrExists and left as it was.
	Restore(ctx context.Context, c Contents) error
}

// CheckContents validates what Restore is given, and returns it in the
// form stores keep (times in UTC to the microsecond, Export's orders). It
// applies the rules of each write except "not in the past" — a history
// holds ended and revoked grants — and checks that SIRETs, grant ids and
// serials are unique and that every grant's consumer is in c. Unrevoked
// grants must match the catalogue; revoked ones are history and are
// kept even if their service has left it.
func CheckContents(cat Services, c Contents) (Contents, error) {
	out := Contents{
		Consumers:   make([]Consumer, len(c.Consumers)),
		Grants:      make([]Grant, len(c.Grants)),
		Credentials: make([]CredentialRecord, len(c.Credentials)),
	}
	sirets := make(map[string]bool, len(c.Consumers))
	for i, cn := range c.Consumers {
		if err := CheckConsumer(cn); err != nil {
			return Contents{}, fmt.Errorf("consumer %d: %w", i, err)
		}
		if cn.CreatedAt.IsZero() || cn.UpdatedAt.IsZero() {
			return Contents{}, fmt.Errorf("consumer %s: %w", cn.SIRET, Invalid("created_at", "creation and update times are required"))
		}
		if sirets[cn.SIRET] {
			return Contents{}, fmt.Errorf("consumer %s is listed twice: %w", cn.SIRET, ErrExists)
		}
		sirets[cn.SIRET] = true
		cn.Contacts = append([]Contact(nil), cn.Contacts...)
		cn.CreatedAt, cn.UpdatedAt = Stamp(cn.CreatedAt), Stamp(cn.UpdatedAt)
		out.Consumers[i] = cn
	}
	ids := make(map[string]bool, len(c.Grants))
	for i, g := range c.Grants {
		if !grantID.MatchString(g.ID) {
			return Contents{}, fmt.Errorf("grant %d: %w", i, Invalid("id", "%q is not a grant id", g.ID))
		}
		services := cat
		if !g.RevokedAt.IsZero() {
			services = nil // history: the service may have left the catalogue
		}
		if err := checkGrantBody(services, g); err != nil {
			return Contents{}, fmt.Errorf("grant %s: %w", g.ID, err)
		}
		if g.CreatedAt.IsZero() {
			return Contents{}, fmt.Errorf("grant %s: %w", g.ID, Invalid("created_at", "is required"))
		}
		if ids[g.ID] {
			return Contents{}, fmt.Errorf("grant %s is listed twice: %w", g.ID, ErrExists)
		}
		ids[g.ID] = true
		if !sirets[g.Consumer] {
			return Contents{}, fmt.Errorf("grant %s: %w", g.ID, ErrUnregistered(g.Consumer))
		}
		g.Purposes = append([]Purpose(nil), g.Purposes...)
		g.Designations, _ = CanonicalDesignations(g.Designations) // checked above
		g.NotBefore, g.NotAfter, g.CreatedAt, g.RevokedAt = Stamp(g.NotBefore), Stamp(g.NotAfter), Stamp(g.CreatedAt), Stamp(g.RevokedAt)
		out.Grants[i] = g
	}
	serials := make(map[string]bool, len(c.Credentials))
	for i, r := range c.Credentials {
		bare := r.Kind == "" && r.Subject == "" && r.Status == CredentialRevoked && !r.RevokedAt.IsZero()
		if bare {
			if err := CheckSerial(r.Serial); err != nil {
				return Contents{}, fmt.Errorf("credential %d: %w", i, err)
			}
		} else if err := CheckCredential(r); err != nil {
			return Contents{}, fmt.Errorf("credential %d: %w", i, err)
		}
		if r.Status == CredentialRevoked && r.RevokedAt.IsZero() {
			return Contents{}, fmt.Errorf("credential %s: %w", r.Serial, Invalid("revoked_at", "a revoked credential needs its revocation time"))
		}
		if serials[r.Serial] {
			return Contents{}, fmt.Errorf("credential %s is listed twice: %w", r.Serial, ErrExists)
		}
		serials[r.Serial] = true
		r.NotBefore, r.NotAfter, r.RevokedAt = Stamp(r.NotBefore), Stamp(r.NotAfter), Stamp(r.RevokedAt)
		out.Credentials[i] = r
	}
	SortContents(&out)
	return out, nil
}

// SortContents puts c in Export's orders.
func SortContents(c *Contents) {
	slices.SortFunc(c.Consumers, func(a, b Consumer) int { return strings.Compare(a.SIRET, b.SIRET) })
	slices.SortFunc(c.Grants, compareGrants)
	SortCredentials(c.Credentials)
}
