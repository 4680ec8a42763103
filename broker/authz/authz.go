// Package authz decides, deny by default, whether a consumer may make a
// call: it must be active, hold a grant for the service whose purposes
// include the declared purpose, whose validity window contains now and
// which allows the way the call designates its subject (typed identity or
// citizen login). The scopes it may receive are the union of those
// grants' scopes, intersected with what it asked for.
package authz

import (
	"slices"
	"time"

	"github.com/relais-broker/relais/broker/errcat"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/scope"
)

// Decision is an allowed call.
type Decision struct {
	// Grants are the grants that allow the call (same service, purpose
	// included, valid now).
	Grants []registry.Grant
	// Scopes are the scopes the response may carry: the grants' scopes
	// intersected with the requested ones.
	Scopes scope.Set
	// Quota is the most generous quota among Grants.
	Quota registry.Quota
}

// Decide is DecideMode for a subject typed by the consumer.
func Decide(c registry.Consumer, grants []registry.Grant, purpose string, requested scope.Set, now time.Time) (Decision, error) {
	return DecideMode(c, grants, purpose, registry.DesignationTyped, requested, now)
}

// DecideMode returns the decision for a call by consumer c, holding
// grants for the called service, declaring purpose, designating its
// subject in mode (a registry.Designation* constant) and asking for
// requested scopes. Denials are catalogued errors; the most specific
// reason wins: suspended, then no grant, then purpose not granted, then
// not yet valid / expired, then designation mode not granted, then no
// requested scope granted. Only the grants that allow mode count, for
// the scopes and the quota alike.
func DecideMode(c registry.Consumer, grants []registry.Grant, purpose, mode string, requested scope.Set, now time.Time) (Decision, error) {
	if c.Status != registry.StatusActive {
		return Decision{}, errcat.New(errcat.ConsumerSuspended)
	}
	// A revoked grant never authorises, even if a store returns it.
	revoked := func(g registry.Grant) bool { return !g.RevokedAt.IsZero() }
	if slices.ContainsFunc(grants, revoked) {
		grants = slices.DeleteFunc(slices.Clone(grants), revoked)
	}
	if len(grants) == 0 {
		return Decision{}, errcat.New(errcat.NoGrant)
	}
	var d Decision
	purposeSeen, early, otherMode := false, false, false
	for _, g := range grants {
		if !g.HasPurpose(purpose) {
			continue
		}
		purposeSeen = true
		switch {
		case now.Before(g.NotBefore):
			early = true
		case !now.Before(g.NotAfter):
		case !g.Allows(mode):
			otherMode = true
		default:
			d.Grants = append(d.Grants, g)
			d.Scopes = d.Scopes.Union(g.Scopes)
			if len(d.Grants) == 1 || moreGenerous(g.Quota, d.Quota) {
				d.Quota = g.Quota
			}
		}
	}
	switch {
	case !purposeSeen:
		return Decision{}, errcat.New(errcat.PurposeNotGranted)
	case len(d.Grants) == 0 && otherMode:
		return Decision{}, errcat.New(errcat.DesignationNotGranted)
	case len(d.Grants) == 0 && early:
		return Decision{}, errcat.New(errcat.GrantNotYetValid)
	case len(d.Grants) == 0:
		return Decision{}, errcat.New(errcat.GrantExpired)
	}
	d.Scopes = d.Scopes.Intersect(requested)
	if d.Scopes.Len() == 0 {
		return Decision{}, errcat.New(errcat.ScopeNotGranted)
	}
	return d, nil
}

// moreGenerous reports whether quota a allows more than b. A zero rate
// means no limit and beats any rate.
func moreGenerous(a, b registry.Quota) bool {
	switch {
	case b.RatePerSecond == 0:
		return false
	case a.RatePerSecond == 0:
		return true
	case a.RatePerSecond != b.RatePerSecond:
		return a.RatePerSecond > b.RatePerSecond
	default:
		return a.Burst > b.Burst
	}
}
