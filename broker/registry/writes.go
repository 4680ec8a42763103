package registry

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"
)

// The rules of each change, shared by every store: a store looks up what
// it needs in its transaction, calls the rule, and writes what it
// returns. A rule that refuses returns an error wrapping ErrInvalid (or
// ErrExists) and the store writes nothing.
//
// Every time a rule returns is in UTC and truncated to the microsecond,
// the precision of PostgreSQL, so that what a write returns is exactly
// what any store reads back.

// Stamp normalises a time as every store keeps it: UTC, microseconds.
func Stamp(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

// NewConsumer prepares c for creation at now: active unless c.Status says
// otherwise, validated, timestamped. The store refuses an existing SIRET.
func NewConsumer(c Consumer, now time.Time) (Consumer, error) {
	if c.Status == "" {
		c.Status = StatusActive
	}
	if err := CheckConsumer(c); err != nil {
		return Consumer{}, err
	}
	c.Contacts = append([]Contact(nil), c.Contacts...)
	c.CreatedAt, c.UpdatedAt = Stamp(now), Stamp(now)
	return c, nil
}

// ChangeStatus returns c suspended or resumed at now.
func ChangeStatus(c Consumer, st Status, now time.Time) (Consumer, error) {
	if err := CheckStatus(st); err != nil {
		return Consumer{}, err
	}
	c.Status, c.UpdatedAt = st, Stamp(now)
	return c, nil
}

// NewGrant prepares g for creation at now: validated, given a fresh id
// and its creation time. The store checks that the consumer exists.
func NewGrant(cat Services, g Grant, now time.Time) (Grant, error) {
	if err := CheckGrant(cat, g, now); err != nil {
		return Grant{}, err
	}
	g.ID, g.CreatedAt, g.RevokedAt = NewGrantID(), Stamp(now), time.Time{}
	g.NotBefore, g.NotAfter = Stamp(g.NotBefore), Stamp(g.NotAfter)
	g.Purposes = append([]Purpose(nil), g.Purposes...)
	g.Designations, _ = CanonicalDesignations(g.Designations) // checked above
	return g, nil
}

// NewGrantID returns a fresh random grant id ("g-" and 16 hex digits).
func NewGrantID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "g-" + hex.EncodeToString(b[:])
}

// ErrUnregistered builds the refusal of a grant whose consumer is not
// registered (wrapping ErrInvalid): the same words in every store.
func ErrUnregistered(siret string) error {
	return fmt.Errorf("%w: consumer: %s is not registered (add it first)", ErrInvalid, siret)
}

// RevokeGrant returns g ended at now; a grant is revoked once.
func RevokeGrant(g Grant, now time.Time) (Grant, error) {
	if !g.RevokedAt.IsZero() {
		return Grant{}, fmt.Errorf("%w: grant %s was already revoked on %s", ErrInvalid, g.ID, g.RevokedAt.UTC().Format(time.RFC3339))
	}
	g.RevokedAt = Stamp(now)
	return g, nil
}

// ExtendGrant returns g ending at notAfter (later or earlier, never in
// the past); a revoked grant is not extended.
func ExtendGrant(g Grant, notAfter, now time.Time) (Grant, error) {
	if !g.RevokedAt.IsZero() {
		return Grant{}, fmt.Errorf("%w: grant %s is revoked; add a new one", ErrInvalid, g.ID)
	}
	if err := CheckWindow(g.NotBefore, notAfter, now); err != nil {
		return Grant{}, err
	}
	g.NotAfter = Stamp(notAfter)
	return g, nil
}

// NewImport prepares a bulk import at now: each consumer and grant as
// NewConsumer and NewGrant do, with the position of the first refused one
// in the error, and a SIRET listed twice refused with ErrExists. The
// caller's slices are not modified. The store checks that no consumer
// exists yet and that every grant's consumer is in the batch or stored.
func NewImport(cat Services, consumers []Consumer, grants []Grant, now time.Time) ([]Consumer, []Grant, error) {
	cs := make([]Consumer, len(consumers))
	seen := make(map[string]bool, len(consumers))
	for i, c := range consumers {
		c, err := NewConsumer(c, now)
		if err != nil {
			return nil, nil, fmt.Errorf("consumer %d (%s): %w", i, consumers[i].SIRET, err)
		}
		if seen[c.SIRET] {
			return nil, nil, fmt.Errorf("consumer %s is listed twice: %w", c.SIRET, ErrExists)
		}
		seen[c.SIRET] = true
		cs[i] = c
	}
	gs := make([]Grant, len(grants))
	for i, g := range grants {
		g, err := NewGrant(cat, g, now)
		if err != nil {
			return nil, nil, fmt.Errorf("grant %d (%s, %s): %w", i, grants[i].Consumer, grants[i].Service, err)
		}
		gs[i] = g
	}
	return cs, gs, nil
}

// NewCredential prepares r for PutCredential over old, the stored record
// of the same serial (nil when there is none): active unless r.Status
// says otherwise, validated, a revocation dated now when r carries no
// date. A revocation is final: an active record never replaces a revoked
// one, and a revoked one keeps its first date.
func NewCredential(old *CredentialRecord, r CredentialRecord, now time.Time) (CredentialRecord, error) {
	if r.Status == "" {
		r.Status = CredentialActive
	}
	if r.Status == CredentialRevoked && r.RevokedAt.IsZero() {
		r.RevokedAt = now
	}
	if err := CheckCredential(r); err != nil {
		return CredentialRecord{}, err
	}
	if old != nil && old.Status == CredentialRevoked {
		if r.Status != CredentialRevoked {
			return CredentialRecord{}, fmt.Errorf("%w: credential %s was revoked on %s; a revocation is final", ErrInvalid, r.Serial, old.RevokedAt.UTC().Format(time.RFC3339))
		}
		r.RevokedAt = old.RevokedAt
	}
	r.NotBefore, r.NotAfter, r.RevokedAt = Stamp(r.NotBefore), Stamp(r.NotAfter), Stamp(r.RevokedAt)
	return r, nil
}

// RevokeCredential returns the record of serial revoked at now: old when
// it exists (an already revoked one unchanged), else a bare record that
// only carries the serial and the revocation.
func RevokeCredential(old *CredentialRecord, serial string, now time.Time) CredentialRecord {
	if old == nil {
		return CredentialRecord{Serial: serial, Status: CredentialRevoked, RevokedAt: Stamp(now)}
	}
	r := *old
	if r.Status != CredentialRevoked {
		r.Status, r.RevokedAt = CredentialRevoked, Stamp(now)
	}
	return r
}

// CheckSerials validates the serials of RevokeCredentials: at least one,
// each in SerialHex form; a serial listed twice counts once.
func CheckSerials(serials []string) ([]string, error) {
	if len(serials) == 0 {
		return nil, Invalid("serials", "at least one serial is required")
	}
	seen := make(map[string]bool, len(serials))
	out := make([]string, 0, len(serials))
	for _, s := range serials {
		if err := CheckSerial(s); err != nil {
			return nil, err
		}
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out, nil
}
