package boltreg

import (
	"fmt"
	"net/mail"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/certs"
)

// invalid builds the error of a refused write: which field, and why.
func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", registry.ErrInvalid, field, fmt.Sprintf(format, args...))
}

var purposeCode = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,63}$`)

func checkText(field, v string, maxLen int) error {
	if strings.TrimSpace(v) == "" {
		return invalid(field, "is required")
	}
	if !utf8.ValidString(v) || utf8.RuneCountInString(v) > maxLen {
		return invalid(field, "must be valid text of at most %d characters", maxLen)
	}
	return nil
}

func (s *Store) checkConsumer(c registry.Consumer) error {
	if err := certs.ValidSIRET(c.SIRET); err != nil {
		return invalid("siret", "%q: %v", c.SIRET, err)
	}
	if err := checkText("name", c.Name, 200); err != nil {
		return err
	}
	if c.Status != registry.StatusActive && c.Status != registry.StatusSuspended {
		return invalid("status", "%q: want active or suspended", c.Status)
	}
	if len(c.Contacts) > 10 {
		return invalid("contacts", "at most 10")
	}
	for i, ct := range c.Contacts {
		if err := checkText(fmt.Sprintf("contacts[%d].name", i), ct.Name, 200); err != nil {
			return err
		}
		if ct.Email != "" {
			if a, err := mail.ParseAddress(ct.Email); err != nil || a.Address != ct.Email {
				return invalid(fmt.Sprintf("contacts[%d].email", i), "%q is not an e-mail address", ct.Email)
			}
		}
	}
	return nil
}

// checkGrant validates g for creation; the consumer's existence is
// checked in the transaction.
func (s *Store) checkGrant(g registry.Grant, now time.Time) error {
	if err := certs.ValidSIRET(g.Consumer); err != nil {
		return invalid("consumer", "%q: %v", g.Consumer, err)
	}
	allowed, ok := s.cat.ServiceScopes(g.Service)
	if !ok {
		return invalid("service", "%q is not a service of the catalogue (relaisctl scopes lists them)", g.Service)
	}
	if g.Scopes.Len() == 0 {
		return invalid("scopes", "at least one scope is required")
	}
	for _, sc := range g.Scopes.Sorted() {
		if !allowed.Has(sc) {
			return invalid("scopes", "%q is not a scope of %s (its scopes: %s)", sc, g.Service, strings.Join(allowed.Sorted(), ", "))
		}
	}
	if len(g.Purposes) == 0 {
		return invalid("purposes", "at least one purpose is required")
	}
	seen := map[string]bool{}
	for i, p := range g.Purposes {
		field := fmt.Sprintf("purposes[%d]", i)
		if !purposeCode.MatchString(p.Code) {
			return invalid(field+".code", "%q must match %s", p.Code, purposeCode)
		}
		if seen[p.Code] {
			return invalid(field+".code", "%q is listed twice", p.Code)
		}
		seen[p.Code] = true
		if err := checkText(field+".label", p.Label, 200); err != nil {
			return err
		}
		if strings.TrimSpace(p.LegalBasis) == "" {
			return invalid(field+".legal_basis", "purpose %q has no legal basis: name the text that allows the exchange (e.g. CRPA art. L114-8)", p.Code)
		}
		if err := checkText(field+".legal_basis", p.LegalBasis, 500); err != nil {
			return err
		}
	}
	if err := checkWindow(g.NotBefore, g.NotAfter, now); err != nil {
		return err
	}
	switch q := g.Quota; {
	case q.RatePerSecond < 0 || q.RatePerSecond > 10000:
		return invalid("quota.rate_per_second", "%v must be within [0, 10000] (0: no limit)", q.RatePerSecond)
	case q.RatePerSecond > 0 && q.Burst < 1:
		return invalid("quota.burst", "must be at least 1 when a rate is set")
	case q.Burst < 0 || q.DailyCap < 0:
		return invalid("quota", "burst and daily cap cannot be negative")
	}
	if g.ExpectedDailyVolume < 0 {
		return invalid("expected_daily_volume", "cannot be negative")
	}
	return nil
}

func checkWindow(notBefore, notAfter, now time.Time) error {
	switch {
	case notBefore.IsZero() || notAfter.IsZero():
		return invalid("validity", "not_before and not_after are required")
	case !notAfter.After(notBefore):
		return invalid("not_after", "%s is not after not_before %s", notAfter.UTC().Format(time.RFC3339), notBefore.UTC().Format(time.RFC3339))
	case !notAfter.After(now):
		return invalid("not_after", "%s is in the past", notAfter.UTC().Format(time.RFC3339))
	}
	return nil
}
