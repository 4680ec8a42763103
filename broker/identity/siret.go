package identity

import (
	"errors"
	"fmt"
)

// ErrInvalidSIRET is wrapped by every error ValidSIRET returns.
var ErrInvalidSIRET = errors.New("invalid siret")

// laPosteSIREN is La Poste's SIREN; its many establishments exhausted the
// Luhn space, so INSEE accepts their SIRETs when the digit sum is a
// multiple of 5 instead.
const laPosteSIREN = "356000000"

// ValidSIRET reports whether s is a well-formed SIRET: 14 ASCII digits with a
// valid Luhn checksum, or La Poste's digit-sum rule for SIREN 356000000. A
// consumer's identity is its SIRET, so the rule lives with identities.
func ValidSIRET(s string) error {
	if len(s) != 14 {
		return fmt.Errorf("%w: must be 14 digits, got %d characters", ErrInvalidSIRET, len(s))
	}
	luhn, sum := 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return fmt.Errorf("%w: must contain only digits", ErrInvalidSIRET)
		}
		d := int(c - '0')
		sum += d
		// Double every second digit counting from the right; with 14
		// digits those are the even indexes from the left.
		if i%2 == 0 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		luhn += d
	}
	if luhn%10 == 0 {
		return nil
	}
	if s[:9] == laPosteSIREN && sum%5 == 0 {
		return nil
	}
	return fmt.Errorf("%w: bad checksum", ErrInvalidSIRET)
}
