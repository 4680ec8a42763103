package authz_test

import (
	"errors"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/authz"
	"github.com/relais-broker/relais/broker/errcat"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/scope"
)

var (
	now     = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	active  = registry.Consumer{SIRET: "21990000100005", Status: registry.StatusActive}
	canteen = registry.Purpose{Code: "cantine", LegalBasis: "CRPA L114-8"}
	aid     = registry.Purpose{Code: "aide", LegalBasis: "CASF L123-5"}
)

func grant(scopes []string, purposes []registry.Purpose, from, to time.Time) registry.Grant {
	return registry.Grant{Scopes: scope.Of(scopes...), Purposes: purposes, NotBefore: from, NotAfter: to}
}

func TestDecide(t *testing.T) {
	t.Parallel()
	valid := grant([]string{"qf.value", "qf.children"}, []registry.Purpose{canteen}, now.Add(-time.Hour), now.Add(time.Hour))
	other := grant([]string{"qf.address"}, []registry.Purpose{aid}, now.Add(-time.Hour), now.Add(time.Hour))
	expired := grant([]string{"qf.value"}, []registry.Purpose{canteen}, now.Add(-2*time.Hour), now.Add(-time.Hour))
	future := grant([]string{"qf.value"}, []registry.Purpose{canteen}, now.Add(time.Hour), now.Add(2*time.Hour))
	endsNow := grant([]string{"qf.value"}, []registry.Purpose{canteen}, now.Add(-time.Hour), now)
	all := scope.Of("qf.value", "qf.children", "qf.address")
	revoked := valid
	revoked.RevokedAt = now.Add(-time.Minute)
	tests := []struct {
		name       string
		consumer   registry.Consumer
		grants     []registry.Grant
		purpose    string
		requested  scope.Set
		wantReason errcat.Reason
		wantScopes string
	}{
		{"allowed: grant scopes", active, []registry.Grant{valid}, "cantine", all, "", "qf.children,qf.value"},
		{"allowed: mask narrows", active, []registry.Grant{valid}, "cantine", scope.Of("qf.value"), "", "qf.value"},
		{"allowed: mask outside grant is dropped", active, []registry.Grant{valid}, "cantine", scope.Of("qf.value", "qf.address"), "", "qf.value"},
		{"allowed: only grants with the purpose count", active, []registry.Grant{valid, other}, "cantine", all, "", "qf.children,qf.value"},
		{"allowed: union of grants with the purpose", active, []registry.Grant{valid, grant([]string{"qf.address"}, []registry.Purpose{canteen, aid}, now.Add(-time.Hour), now.Add(time.Hour))}, "cantine", all, "", "qf.address,qf.children,qf.value"},
		{"allowed: expired grant ignored next to a valid one", active, []registry.Grant{expired, valid}, "cantine", all, "", "qf.children,qf.value"},
		{"denied: suspended beats everything", registry.Consumer{Status: registry.StatusSuspended}, []registry.Grant{valid}, "cantine", all, errcat.ConsumerSuspended, ""},
		{"denied: unknown status is not active", registry.Consumer{Status: "pending"}, []registry.Grant{valid}, "cantine", all, errcat.ConsumerSuspended, ""},
		{"denied: no grant", active, nil, "cantine", all, errcat.NoGrant, ""},
		{"denied: purpose not granted", active, []registry.Grant{valid}, "aide", all, errcat.PurposeNotGranted, ""},
		{"denied: empty purpose", active, []registry.Grant{valid}, "", all, errcat.PurposeNotGranted, ""},
		{"denied: expired", active, []registry.Grant{expired}, "cantine", all, errcat.GrantExpired, ""},
		{"denied: window end is exclusive", active, []registry.Grant{endsNow}, "cantine", all, errcat.GrantExpired, ""},
		{"denied: not yet valid", active, []registry.Grant{future}, "cantine", all, errcat.GrantNotYetValid, ""},
		{"denied: not yet valid wins over expired", active, []registry.Grant{expired, future}, "cantine", all, errcat.GrantNotYetValid, ""},
		{"denied: a revoked grant never authorises", active, []registry.Grant{revoked}, "cantine", all, errcat.NoGrant, ""},
		{"denied: no requested scope granted", active, []registry.Grant{valid}, "cantine", scope.Of("qf.address"), errcat.ScopeNotGranted, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, err := authz.Decide(tt.consumer, tt.grants, tt.purpose, tt.requested, now)
			if tt.wantReason != "" {
				var e *errcat.Error
				if !errors.As(err, &e) || e.Reason != tt.wantReason {
					t.Fatalf("err = %v, want %s", err, tt.wantReason)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if d.Scopes.String() != tt.wantScopes {
				t.Errorf("scopes = %s, want %s", d.Scopes, tt.wantScopes)
			}
		})
	}
}

func TestDecideQuotaPicksMostGenerous(t *testing.T) {
	t.Parallel()
	g1 := grant([]string{"a"}, []registry.Purpose{canteen}, now.Add(-time.Hour), now.Add(time.Hour))
	g1.Quota = registry.Quota{RatePerSecond: 5, Burst: 5}
	g2 := g1
	g2.Quota = registry.Quota{RatePerSecond: 20, Burst: 1}
	d, err := authz.Decide(active, []registry.Grant{g1, g2}, "cantine", scope.Of("a"), now)
	if err != nil || d.Quota.RatePerSecond != 20 {
		t.Fatalf("quota = %+v, err = %v", d.Quota, err)
	}
	g3 := g1
	g3.Quota = registry.Quota{} // no limit
	d, _ = authz.Decide(active, []registry.Grant{g1, g3, g2}, "cantine", scope.Of("a"), now)
	if d.Quota.RatePerSecond != 0 {
		t.Fatalf("unlimited grant should win, got %+v", d.Quota)
	}
}

func TestDecideMode(t *testing.T) {
	t.Parallel()
	window := func(g registry.Grant, modes ...string) registry.Grant {
		g.Designations = modes
		return g
	}
	base := grant([]string{"qf.value"}, []registry.Purpose{canteen}, now.Add(-time.Hour), now.Add(time.Hour))
	plain := base // no designations: typed only
	login := window(grant([]string{"qf.children"}, []registry.Purpose{canteen}, now.Add(-time.Hour), now.Add(time.Hour)), registry.DesignationCitizenLogin)
	both := window(base, registry.DesignationTyped, registry.DesignationCitizenLogin)
	expiredLogin := window(grant([]string{"qf.value"}, []registry.Purpose{canteen}, now.Add(-2*time.Hour), now.Add(-time.Hour)), registry.DesignationCitizenLogin)
	all := scope.Of("qf.value", "qf.children")
	for _, tc := range []struct {
		name       string
		grants     []registry.Grant
		mode       string
		wantReason errcat.Reason
		wantScopes string
	}{
		{"typed under a grant without designations", []registry.Grant{plain}, registry.DesignationTyped, "", "qf.value"},
		{"citizen login is never implied", []registry.Grant{plain}, registry.DesignationCitizenLogin, errcat.DesignationNotGranted, ""},
		{"citizen login under a login grant", []registry.Grant{login}, registry.DesignationCitizenLogin, "", "qf.children"},
		{"typed under a login-only grant", []registry.Grant{login}, registry.DesignationTyped, errcat.DesignationNotGranted, ""},
		{"both modes allowed", []registry.Grant{both}, registry.DesignationCitizenLogin, "", "qf.value"},
		{"only the grants of the mode give scopes", []registry.Grant{plain, login}, registry.DesignationCitizenLogin, "", "qf.children"},
		{"only the grants of the mode give scopes, typed", []registry.Grant{plain, login}, registry.DesignationTyped, "", "qf.value"},
		{"expired beats designation", []registry.Grant{expiredLogin}, registry.DesignationCitizenLogin, errcat.GrantExpired, ""},
		{"designation beats expired when a valid grant exists", []registry.Grant{expiredLogin, plain}, registry.DesignationCitizenLogin, errcat.DesignationNotGranted, ""},
		{"unknown mode", []registry.Grant{both}, "franceconnect", errcat.DesignationNotGranted, ""},
	} {
		d, err := authz.DecideMode(active, tc.grants, "cantine", tc.mode, all, now)
		if tc.wantReason != "" {
			var e *errcat.Error
			if !errors.As(err, &e) || e.Reason != tc.wantReason {
				t.Errorf("%s: err = %v, want %s", tc.name, err, tc.wantReason)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got := d.Scopes.String(); got != tc.wantScopes {
			t.Errorf("%s: scopes = %s, want %s", tc.name, got, tc.wantScopes)
		}
		for _, g := range d.Grants {
			if !g.Allows(tc.mode) {
				t.Errorf("%s: decision holds a grant that does not allow %s", tc.name, tc.mode)
			}
		}
	}
}
