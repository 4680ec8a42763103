package devenv

import (
	"github.com/relais-broker/relais/adapters/sandbox"
	"github.com/relais-broker/relais/internal/devidp"
)

// IdPUsers are the sandbox's fictitious citizens as the dev identity
// provider offers them on its login page: the same identities the sandbox
// matches, so a citizen who logs in is found by every sandbox service
// exactly as when a consumer types that identity.
func IdPUsers(ds *sandbox.Dataset) ([]devidp.User, error) {
	var out []devidp.User
	for _, c := range ds.Citizens() {
		u, err := devidp.UserFromIdentity(c.ID, c.Identity)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}
