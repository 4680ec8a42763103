package devidp_test

import (
	"regexp"
	"testing"

	"github.com/relais-broker/relais/adapters/sandbox"
	"github.com/relais-broker/relais/internal/devidp"
	"github.com/relais-broker/relais/internal/devidp/devidptest"
)

// TestSandboxCitizens is what `relaisd dev` does: every sandbox citizen
// becomes a login-page user, with unique labels, and a token of each
// resolves through userinfo to exactly its sandbox identity.
func TestSandboxCitizens(t *testing.T) {
	var users []devidp.User
	byID := map[string]*sandbox.Citizen{}
	for _, c := range sandbox.Default().Citizens() {
		u, err := devidp.UserFromIdentity(c.ID, c.Identity)
		if err != nil {
			t.Fatal(err)
		}
		users = append(users, u)
		byID[c.ID] = c
	}
	s := devidptest.Start(t, devidptest.Options{Users: users})
	labels := s.Provider.Labels()
	t.Logf("login page labels: %q", labels)
	if len(labels) != len(users) {
		t.Fatalf("%d labels for %d users", len(labels), len(users))
	}
	tokenPattern := regexp.MustCompile(`^[A-Za-z0-9._~+/-]+=*$`) // the proto's citizen_access_token rule
	for i, label := range labels {
		tok := s.Token(t, devidp.ClientCitizenPortal, label)
		if !tokenPattern.MatchString(tok) || len(tok) > 4096 {
			t.Fatalf("token of %s breaks the proto's pattern", label)
		}
		claims := verifiedUserinfo(t, s, tok)
		id := byID[users[i].ID].Identity
		if claims["family_name"] != id.GetBirthName() || claims["birthdate"] != id.GetBirthDate() ||
			claims["birthplace"] != id.GetBirthPlaceCog() || claims["birthcountry"] != id.GetBirthCountryCog() {
			t.Errorf("%s: userinfo %v does not match the sandbox identity", label, claims)
		}
		if u, _ := claims["preferred_username"].(string); u != id.GetUsageName() {
			t.Errorf("%s: preferred_username %q, want %q", label, u, id.GetUsageName())
		}
	}
	if _, err := devidp.UserFromIdentity("x", nil); err == nil {
		t.Error("nil identity accepted")
	}
}
