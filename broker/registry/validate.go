package registry

import (
	"fmt"
	"net/mail"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/broker/scope"
)

// Services is what validation needs of the catalogue: the scopes each
// service offers (catalog.Catalog implements it).
type Services interface {
	// ServiceScopes returns the scopes of service, or false when the
	// service is unknown.
	ServiceScopes(service string) (scope.Set, bool)
}

// Invalid builds the error of a refused write: which field, and why. It
// wraps ErrInvalid.
func Invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalid, field, fmt.Sprintf(format, args...))
}

var purposeCode = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,63}$`)

// grantID is the form NewGrantID makes; ids read back from storage are
// checked against it before they are trusted as keys.
var grantID = regexp.MustCompile(`^g-[0-9a-f]{16}$`)

func checkText(field, v string, maxLen int) error {
	if strings.TrimSpace(v) == "" {
		return Invalid(field, "is required")
	}
	if !utf8.ValidString(v) || utf8.RuneCountInString(v) > maxLen {
		return Invalid(field, "must be valid text of at most %d characters", maxLen)
	}
	return nil
}

// CheckStatus accepts only the known consumer statuses.
func CheckStatus(s Status) error {
	if s != StatusActive && s != StatusSuspended {
		return Invalid("status", "%q: want active or suspended", s)
	}
	return nil
}

// CheckConsumer validates a consumer as every store accepts it.
func CheckConsumer(c Consumer) error {
	if err := identity.ValidSIRET(c.SIRET); err != nil {
		return Invalid("siret", "%q: %v", c.SIRET, err)
	}
	if err := checkText("name", c.Name, 200); err != nil {
		return err
	}
	if err := CheckStatus(c.Status); err != nil {
		return err
	}
	if len(c.Contacts) > 10 {
		return Invalid("contacts", "at most 10")
	}
	for i, ct := range c.Contacts {
		if err := checkText(fmt.Sprintf("contacts[%d].name", i), ct.Name, 200); err != nil {
			return err
		}
		if ct.Email != "" {
			if a, err := mail.ParseAddress(ct.Email); err != nil || a.Address != ct.Email {
				// The address is not quoted: a contact's address is personal data.
				return Invalid(fmt.Sprintf("contacts[%d].email", i), "is not an e-mail address")
			}
		}
		if utf8.RuneCountInString(ct.Phone) > 40 || !utf8.ValidString(ct.Phone) {
			return Invalid(fmt.Sprintf("contacts[%d].phone", i), "must be valid text of at most 40 characters")
		}
	}
	return nil
}

// CheckGrant validates g for creation at now: the service and scopes
// against the catalogue, purposes, window, quota and anomaly policy. The
// consumer's existence is for the store to check in its transaction.
func CheckGrant(cat Services, g Grant, now time.Time) error {
	if err := checkGrantBody(cat, g); err != nil {
		return err
	}
	return CheckWindow(g.NotBefore, g.NotAfter, now)
}

// checkGrantBody is every rule of CheckGrant except "not already over",
// which a restored history legitimately breaks; with a nil cat the
// service and scopes are not matched against a catalogue (the revoked
// grants of a history).
func checkGrantBody(cat Services, g Grant) error {
	if err := identity.ValidSIRET(g.Consumer); err != nil {
		return Invalid("consumer", "%q: %v", g.Consumer, err)
	}
	if cat != nil {
		allowed, ok := cat.ServiceScopes(g.Service)
		if !ok {
			return Invalid("service", "%q is not a service of the catalogue (relaisctl scopes lists them)", g.Service)
		}
		for _, sc := range g.Scopes.Sorted() {
			if !allowed.Has(sc) {
				return Invalid("scopes", "%q is not a scope of %s (its scopes: %s)", sc, g.Service, strings.Join(allowed.Sorted(), ", "))
			}
		}
	} else if checkText("service", g.Service, 200) != nil {
		return Invalid("service", "is required")
	}
	if g.Scopes.Len() == 0 {
		return Invalid("scopes", "at least one scope is required")
	}
	if len(g.Purposes) == 0 {
		return Invalid("purposes", "at least one purpose is required")
	}
	seen := map[string]bool{}
	for i, p := range g.Purposes {
		field := fmt.Sprintf("purposes[%d]", i)
		if !purposeCode.MatchString(p.Code) {
			return Invalid(field+".code", "%q must match %s", p.Code, purposeCode)
		}
		if seen[p.Code] {
			return Invalid(field+".code", "%q is listed twice", p.Code)
		}
		seen[p.Code] = true
		if err := checkText(field+".label", p.Label, 200); err != nil {
			return err
		}
		if strings.TrimSpace(p.LegalBasis) == "" {
			return Invalid(field+".legal_basis", "purpose %q has no legal basis: name the text that allows the exchange (e.g. CRPA art. L114-8)", p.Code)
		}
		if err := checkText(field+".legal_basis", p.LegalBasis, 500); err != nil {
			return err
		}
	}
	if g.NotBefore.IsZero() || g.NotAfter.IsZero() {
		return Invalid("validity", "not_before and not_after are required")
	}
	if !g.NotAfter.After(g.NotBefore) {
		return Invalid("not_after", "%s is not after not_before %s", g.NotAfter.UTC().Format(time.RFC3339), g.NotBefore.UTC().Format(time.RFC3339))
	}
	switch q := g.Quota; {
	case !(q.RatePerSecond >= 0 && q.RatePerSecond <= 10000): // NaN too
		return Invalid("quota.rate_per_second", "%v must be within [0, 10000] (0: no limit)", q.RatePerSecond)
	case q.RatePerSecond > 0 && q.Burst < 1:
		return Invalid("quota.burst", "must be at least 1 when a rate is set")
	case q.Burst < 0 || q.DailyCap < 0:
		return Invalid("quota", "burst and daily cap cannot be negative")
	}
	if g.ExpectedDailyVolume < 0 {
		return Invalid("expected_daily_volume", "cannot be negative")
	}
	if _, err := CanonicalDesignations(g.Designations); err != nil {
		return err
	}
	if err := CheckDisclosure(g.Disclosure); err != nil {
		return err
	}
	return CheckAnomaly(g.Anomaly)
}

// designationOrder is the canonical order of a grant's designations.
var designationOrder = []string{DesignationTyped, DesignationCitizenLogin}

// CanonicalDesignations validates a grant's designation modes (known
// values, none listed twice) and returns them in canonical order (typed,
// then citizen_login), the form every store keeps; nil for none.
func CanonicalDesignations(ds []string) ([]string, error) {
	if len(ds) == 0 {
		return nil, nil
	}
	seen := make(map[string]bool, len(ds))
	for i, d := range ds {
		field := fmt.Sprintf("designations[%d]", i)
		if !slices.Contains(designationOrder, d) {
			return nil, Invalid(field, "%q is not a designation: want typed or citizen_login", d)
		}
		if seen[d] {
			return nil, Invalid(field, "%q is listed twice", d)
		}
		seen[d] = true
	}
	out := make([]string, 0, len(ds))
	for _, d := range designationOrder {
		if seen[d] {
			out = append(out, d)
		}
	}
	return out, nil
}

// MaxDisclosureDelay bounds a grant's deferred disclosure: ten years of
// 365 days, the longest a citizen may be kept from seeing an access.
const MaxDisclosureDelay = 10 * 365 * 24 * time.Hour

// CheckDisclosure validates a grant's deferred disclosure: a delay of
// whole seconds within [0, MaxDisclosureDelay], and a legal reference of 1
// to 256 characters with a delay, none without.
func CheckDisclosure(d Disclosure) error {
	switch {
	case d.Delay < 0 || d.Delay > MaxDisclosureDelay:
		return Invalid("disclosure.delay", "%s must be within [0, %s] (ten years)", d.Delay, MaxDisclosureDelay)
	case d.Delay%time.Second != 0:
		return Invalid("disclosure.delay", "%s must be a whole number of seconds", d.Delay)
	case d.Delay == 0 && d.LegalReference != "":
		return Invalid("disclosure.legal_reference", "is set without a delay: a reference only goes with a deferred disclosure")
	case d.Delay == 0:
		return nil
	case strings.TrimSpace(d.LegalReference) == "":
		return Invalid("disclosure.legal_reference", "a deferred disclosure needs its legal reference: name the text that allows it (e.g. Code de la sécurité sociale, art. L114-9)")
	}
	return checkText("disclosure.legal_reference", d.LegalReference, 256)
}

// CheckAnomaly validates a grant's anomaly policy.
func CheckAnomaly(a AnomalyPolicy) error {
	switch {
	case !(a.MaxNotFoundRatio >= 0 && a.MaxNotFoundRatio <= 1): // NaN too
		return Invalid("anomaly.max_not_found_ratio", "%v must be within [0, 1] (0: the default)", a.MaxNotFoundRatio)
	case a.MaxDistinctSubjects < 0:
		return Invalid("anomaly.max_distinct_subjects", "cannot be negative (0: the default)")
	}
	switch a.Action {
	case AnomalyDefault, AnomalyAlert, AnomalyThrottle, AnomalySuspend:
		return nil
	}
	return Invalid("anomaly.action", "%q: want alert, throttle, suspend or empty (the default)", a.Action)
}

// CheckWindow validates a grant's validity window at now: both ends set,
// the end after the start and not in the past.
func CheckWindow(notBefore, notAfter, now time.Time) error {
	switch {
	case notBefore.IsZero() || notAfter.IsZero():
		return Invalid("validity", "not_before and not_after are required")
	case !notAfter.After(notBefore):
		return Invalid("not_after", "%s is not after not_before %s", notAfter.UTC().Format(time.RFC3339), notBefore.UTC().Format(time.RFC3339))
	case !notAfter.After(now):
		return Invalid("not_after", "%s is in the past", notAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// CheckSerial accepts a certificate serial in identity.SerialHex form
// (lower-case hex, no colons, no leading zero), the key of the records.
func CheckSerial(serial string) error {
	if serial == "" || len(serial) > 64 || identity.NormaliseSerial(serial) != serial {
		return Invalid("serial", "%q is not a serial in lower-case hex without separators", serial)
	}
	return nil
}

// CheckCredential validates a credential record as PutCredential stores it.
func CheckCredential(r CredentialRecord) error {
	if err := CheckSerial(r.Serial); err != nil {
		return err
	}
	if r.Kind != string(identity.KindConsumer) && r.Kind != string(identity.KindOperator) {
		return Invalid("kind", "%q: want consumer or operator", r.Kind)
	}
	if err := checkText("subject", r.Subject, 64); err != nil {
		return err
	}
	if r.Kind == string(identity.KindConsumer) {
		if err := identity.ValidSIRET(r.Subject); err != nil {
			return Invalid("subject", "%q: %v", r.Subject, err)
		}
	}
	switch r.Status {
	case CredentialActive:
		if !r.RevokedAt.IsZero() {
			return Invalid("revoked_at", "set on an active credential")
		}
	case CredentialRevoked:
	default:
		return Invalid("status", "%q: want active or revoked", r.Status)
	}
	if !r.NotBefore.IsZero() && !r.NotAfter.IsZero() && !r.NotAfter.After(r.NotBefore) {
		return Invalid("not_after", "%s is not after not_before %s", r.NotAfter.UTC().Format(time.RFC3339), r.NotBefore.UTC().Format(time.RFC3339))
	}
	return utf8Max("issued_by", r.IssuedBy, 64)
}

func utf8Max(field, v string, maxLen int) error {
	if !utf8.ValidString(v) || utf8.RuneCountInString(v) > maxLen {
		return Invalid(field, "must be valid text of at most %d characters", maxLen)
	}
	return nil
}
