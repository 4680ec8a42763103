package identity

import (
	"errors"
	"testing"
)

func TestValidSIRET(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		siret string
		ok    bool
	}{
		{"luhn", "73282932000074", true},
		{"la poste head office by luhn", "35600000000048", true},
		{"la poste by digit sum", "35600000049837", true},
		{"wrong checksum", "73282932000075", false},
		{"13 digits", "7328293200007", false},
		{"15 digits", "732829320000740", false},
		{"letters", "7328293200007A", false},
		{"empty", "", false},
		{"non-ascii digits", "７３２８２９３２０００７", false},
		{"digit sum rule outside la poste", "73282932000103", false},
		{"la poste failing both rules", "35600000049900", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := ValidSIRET(tt.siret)
			if tt.ok && err != nil {
				t.Fatalf("ValidSIRET(%q) = %v, want nil", tt.siret, err)
			}
			if !tt.ok && !errors.Is(err, ErrInvalidSIRET) {
				t.Fatalf("ValidSIRET(%q) = %v, want ErrInvalidSIRET", tt.siret, err)
			}
		})
	}
}
