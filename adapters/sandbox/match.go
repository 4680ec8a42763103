package sandbox

import (
	"github.com/relais-broker/relais/broker/subject"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
)

// identityKey is what a source matches a civil identity on, the way
// French administrations match on "identité pivot": birth name, first
// given name, sex and birth date, all normalised; birth place and country
// narrow the match when the caller gives them.
type identityKey struct {
	birthName, firstGiven string
	sex                   commonv1.Sex
	birthDate             string
	place, country        string
}

func keyOf(id *commonv1.SubjectIdentity) identityKey {
	k := identityKey{
		birthName: subject.NormaliseName(id.GetBirthName()),
		sex:       id.GetSex(),
		birthDate: id.GetBirthDate(),
		place:     id.GetBirthPlaceCog(),
		country:   id.GetBirthCountryCog(),
	}
	if g := id.GetGivenNames(); len(g) > 0 {
		k.firstGiven = subject.NormaliseName(g[0])
	}
	return k
}

// matches reports whether the citizen with key c answers a query q. Birth
// place and country only narrow when both sides know them.
func (q identityKey) matches(c identityKey) bool {
	if q.birthName != c.birthName || q.firstGiven != c.firstGiven || q.sex != c.sex || q.birthDate != c.birthDate {
		return false
	}
	if q.country != "" && c.country != "" && q.country != c.country {
		return false
	}
	return q.place == "" || c.place == "" || q.place == c.place
}
