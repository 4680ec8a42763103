package fastvalid

import (
	"regexp"
	"time"

	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
)

// The hand-written replacements of the CEL rules the data API uses,
// bound to them by model.KnownCEL (rule id and expression hash). Each
// returns exactly the message its expression evaluates to.

var (
	reSiretDigits = regexp.MustCompile(`^[0-9]{14}$`)
	reISODate     = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`)
)

// celSiret is the predefined rule string.siret (relais.options.v1.siret).
func celSiret(v string) string {
	if !reSiretDigits.MatchString(v) {
		return "must be a SIRET: exactly 14 digits"
	}
	double := [10]int{0, 2, 4, 6, 8, 1, 3, 5, 7, 9}
	luhn, plain := 0, 0
	for i := 0; i < 14; i++ {
		d := int(v[i] - '0')
		plain += d
		if i%2 == 0 {
			luhn += double[d]
		} else {
			luhn += d
		}
	}
	if luhn%10 == 0 {
		return ""
	}
	if v[:9] == "356000000" && plain%5 == 0 {
		return ""
	}
	return "is not a valid SIRET: checksum mismatch"
}

// celBirthDate is the predefined rule string.birth_date
// (relais.options.v1.birth_date).
func celBirthDate(v string, s *state) string {
	if msg := calendarDate(v); msg != "" {
		return msg
	}
	y := atoi(v[0:4])
	if y < 1900 {
		return "must not be before 1900"
	}
	t := time.Date(y, time.Month(atoi(v[5:7])), atoi(v[8:10]), 0, 0, 0, 0, time.UTC)
	if t.After(s.now()) {
		return "must not be in the future"
	}
	return ""
}

// celCalendarDate is the predefined rule string.calendar_date
// (relais.options.v1.calendar_date): empty, or a calendar date.
func celCalendarDate(v string) string {
	if v == "" {
		return ""
	}
	return calendarDate(v)
}

// calendarDate is the YYYY-MM-DD part common to both date rules.
func calendarDate(v string) string {
	if !reISODate.MatchString(v) {
		return "must be a date written YYYY-MM-DD"
	}
	y, m, d := atoi(v[0:4]), atoi(v[5:7]), atoi(v[8:10])
	if m < 1 || m > 12 {
		return "must be a calendar date"
	}
	feb := 28
	if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
		feb = 29
	}
	days := [12]int{31, feb, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}
	if d < 1 || d > days[m-1] {
		return "must be a calendar date"
	}
	return ""
}

// atoi reads ASCII digits the patterns above have already checked.
func atoi(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n
}

// celBirthPlaceRequired is the message rule subject.birth_place_required
// on relais.common.v1.SubjectIdentity.
func celBirthPlaceRequired(m *commonv1.SubjectIdentity) bool {
	return m.GetBirthCountryCog() != "99100" || m.GetBirthPlaceCog() != ""
}
