package sandbox

import (
	"strings"
	"unicode"

	"golang.org/x/text/runes"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"

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
		birthName: NormaliseName(id.GetBirthName()),
		sex:       id.GetSex(),
		birthDate: id.GetBirthDate(),
		place:     id.GetBirthPlaceCog(),
		country:   id.GetBirthCountryCog(),
	}
	if g := id.GetGivenNames(); len(g) > 0 {
		k.firstGiven = NormaliseName(g[0])
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

// stripMarks removes combining marks once names are decomposed.
var stripMarks = runes.Remove(runes.In(unicode.Mn))

// NormaliseName folds a name the way sources compare them: accents
// removed, upper case, hyphens and apostrophes as spaces, runs of spaces
// collapsed. "Le Gall-Kerbrat" and "LE GALL KERBRAT" are the same name.
func NormaliseName(s string) string {
	folded, _, err := transform.String(transform.Chain(norm.NFD, stripMarks, norm.NFC), s)
	if err != nil {
		folded = s
	}
	folded = strings.Map(func(r rune) rune {
		switch r {
		case '-', '\'', '’', '‐', '‑':
			return ' '
		}
		return unicode.ToUpper(r)
	}, folded)
	return strings.Join(strings.Fields(folded), " ")
}
