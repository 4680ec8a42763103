package devidp

import (
	"fmt"

	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
)

// UserFromIdentity makes the login-page user of a civil identity, as
// `relaisd dev` does for each sandbox citizen (id is the citizen's stable
// slug). The token then resolves, through userinfo, to exactly this
// identity.
func UserFromIdentity(id string, si *commonv1.SubjectIdentity) (User, error) {
	if si == nil {
		return User{}, fmt.Errorf("devidp: citizen %s has no identity", id)
	}
	u := User{
		ID:              id,
		GivenNames:      append([]string(nil), si.GetGivenNames()...),
		BirthName:       si.GetBirthName(),
		UsageName:       si.GetUsageName(),
		BirthDate:       si.GetBirthDate(),
		BirthPlaceCOG:   si.GetBirthPlaceCog(),
		BirthCountryCOG: si.GetBirthCountryCog(),
	}
	switch si.GetSex() {
	case commonv1.Sex_SEX_FEMALE:
		u.Gender = GenderFemale
	case commonv1.Sex_SEX_MALE:
		u.Gender = GenderMale
	default:
		return User{}, fmt.Errorf("devidp: citizen %s has no recorded sex", id)
	}
	return u, nil
}
