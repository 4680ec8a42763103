package httpjson

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/relais-broker/relais/broker/source"
	"github.com/relais-broker/relais/broker/subject"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
)

// subjectVars extracts the template variables of a request's subject.
func subjectVars(in proto.Message) (map[string]string, error) {
	des := subject.Designate(in)
	vars := map[string]string{}
	switch {
	case des.Kind != "":
		vars[des.Kind] = des.Value
	case des.Identity != nil:
		id := des.Identity
		vars["birth_name"], vars["usage_name"] = id.GetBirthName(), id.GetUsageName()
		vars["given_names"] = strings.Join(id.GetGivenNames(), " ")
		if g := id.GetGivenNames(); len(g) > 0 {
			vars["first_given_name"] = g[0]
		}
		vars["sex"] = map[commonv1.Sex]string{commonv1.Sex_SEX_FEMALE: "F", commonv1.Sex_SEX_MALE: "M"}[id.GetSex()]
		vars["birth_date"], vars["birth_place_cog"], vars["birth_country_cog"] = id.GetBirthDate(), id.GetBirthPlaceCog(), id.GetBirthCountryCog()
		// Sources that take the date of birth in parts (API particulier's
		// anneeDateNaissance, moisDateNaissance, jourDateNaissance) get
		// them unpadded, as they publish them.
		if d, err := time.Parse(time.DateOnly, id.GetBirthDate()); err == nil {
			vars["birth_year"], vars["birth_month"], vars["birth_day"] = strconv.Itoa(d.Year()), strconv.Itoa(int(d.Month())), strconv.Itoa(d.Day())
		}
	default:
		return nil, fmt.Errorf("%w: the request carries no subject", source.ErrNotIdentifiable)
	}
	return vars, nil
}

// expand replaces {name} in t with escape(vars[name]).
func expand(t string, vars map[string]string, escape func(string) string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(t, '{')
		j := strings.IndexByte(t[max(i, 0):], '}')
		if i < 0 || j < 0 {
			b.WriteString(t)
			return b.String()
		}
		b.WriteString(t[:i])
		b.WriteString(escape(vars[t[i+1:i+j]]))
		t = t[i+j+1:]
	}
}

func setSource(resp proto.Message, id, provider string, now time.Time, validFor time.Duration) {
	meta := &commonv1.SourceMetadata{SourceId: id, Provider: provider, ProducedAt: timestamppb.New(now)}
	if validFor > 0 {
		meta.ValidUntil = timestamppb.New(now.Add(validFor))
	}
	source.SetMetadata(resp, meta)
}
