package sandbox

import (
	"fmt"
	"strings"

	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
)

// Markdown renders the citizen table of docs/sandbox.md.
func (d *Dataset) Markdown() string {
	var b strings.Builder
	b.WriteString("# Sandbox citizens\n\n")
	b.WriteString("<!-- Generated from adapters/sandbox/citizens.yaml by `make generate`; do not edit. -->\n\n")
	b.WriteString("Every person below is fictitious. Call any typed service with one of these\n")
	b.WriteString("identities (or the INE / France Travail identifier shown) to get the answer\n")
	b.WriteString("described. Sources match on birth name, first given name, sex and birth\n")
	b.WriteString("date, ignoring case, accents, hyphens and apostrophes; birth place and\n")
	b.WriteString("country narrow the match. Any other identity answers `subject_not_found`.\n\n")
	b.WriteString("| id | birth name | given names | sex | birth date | born in | identifiers | known to | demonstrates |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, c := range d.citizens {
		id := c.Identity
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			c.ID, nameCell(id), strings.Join(id.GetGivenNames(), ", "), sexCell(id.GetSex()), id.GetBirthDate(),
			bornIn(id), identifiers(c), d.knownTo(c), c.Note)
	}
	return b.String()
}

func nameCell(id *commonv1.SubjectIdentity) string {
	if id.GetUsageName() != "" {
		return id.GetBirthName() + " (usage " + id.GetUsageName() + ")"
	}
	return id.GetBirthName()
}

func sexCell(s commonv1.Sex) string {
	for k, v := range sexes {
		if v == s {
			return k
		}
	}
	return "?"
}

func bornIn(id *commonv1.SubjectIdentity) string {
	if id.GetBirthCountryCog() == franceCOG {
		return "`" + id.GetBirthPlaceCog() + "` / `" + franceCOG + "`"
	}
	return "`" + id.GetBirthCountryCog() + "`"
}

func identifiers(c *Citizen) string {
	var ids []string
	if c.INE != "" {
		ids = append(ids, "INE `"+c.INE+"`")
	}
	if c.FranceTravailID != "" {
		ids = append(ids, "FT `"+c.FranceTravailID+"`")
	}
	return strings.Join(ids, "<br>")
}

func (d *Dataset) knownTo(c *Citizen) string {
	if c.Behaviour != BehaveNormally {
		return "*" + string(c.Behaviour) + "*"
	}
	var keys []string
	for _, key := range d.order {
		if _, ok := c.Records[d.services[key]]; ok {
			keys = append(keys, key)
		}
	}
	return strings.Join(keys, "<br>")
}
