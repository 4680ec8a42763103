package devenv

import (
	"path/filepath"
	"strings"
)

// FirstCallMethod is the method of the call dev mode prints.
const FirstCallMethod = "relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient"

// FirstCallRequest is the JSON request dev mode prints: a sandbox citizen
// with full family-quotient data, called by the full demo consumer for
// itself. It must never contain a single quote (it is shell-quoted).
const FirstCallRequest = `{"access_context":{"recipient":"21990000100005","purpose":"tarification_sociale","case_reference":"DOSSIER-2026-0001"},` +
	`"subject":{"birth_name":"DUPONT","given_names":["Zoé"],"sex":"SEX_FEMALE","birth_date":"1984-03-12","birth_place_cog":"75056","birth_country_cog":"99100"}}`

// FirstCallCommand is the grpcurl command line for the first call with
// consumer's credentials against addr.
func FirstCallCommand(e *Env, consumer DemoConsumer, addr string) string {
	dir := e.ConsumerDir(consumer)
	return strings.Join([]string{
		"grpcurl",
		"-cacert", shellQuote(filepath.Join(e.Dir, "ca.pem")),
		"-cert", shellQuote(filepath.Join(dir, "cert.pem")),
		"-key", shellQuote(filepath.Join(dir, "key.pem")),
		"-d", "'" + FirstCallRequest + "'",
		addr, FirstCallMethod,
	}, " ")
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '/' || r == '.' || r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
