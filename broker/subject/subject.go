// Package subject turns the subject of a data-API request into what the
// broker may keep: a pseudonym, the HMAC-SHA-256 of the normalised
// identity under a key held by the operator. The same person asked for
// with different spellings (case, accents, hyphens) gets the same
// pseudonym; without the key nobody can compute it, and it cannot be
// reversed. The clear identity is never stored nor logged.
package subject

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
	"google.golang.org/protobuf/proto"

	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
)

// NormaliseName folds a name the way sources compare them: accents
// removed, upper case, hyphens and apostrophes as spaces, runs of spaces
// collapsed. "Le Gall-Kerbrat" and "LE GALL KERBRAT" are the same name.
// It runs on every call (pseudonyms): ASCII names take a fast path, and
// other names are decomposed (NFD) and stripped of their combining marks
// in one pass.
func NormaliseName(s string) string {
	if ascii(s) {
		return fold(s)
	}
	decomposed := norm.NFD.String(s)
	var b strings.Builder
	b.Grow(len(decomposed))
	for _, r := range decomposed {
		if !unicode.Is(unicode.Mn, r) {
			b.WriteRune(r)
		}
	}
	return fold(norm.NFC.String(b.String()))
}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// fold upper-cases, turns hyphens and apostrophes into spaces and
// collapses spaces.
func fold(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := true // drop leading spaces
	for _, r := range s {
		switch {
		case r == '-' || r == '\'' || r == '’' || r == '‐' || r == '‑' || unicode.IsSpace(r):
			if !space {
				b.WriteByte(' ')
				space = true
			}
		default:
			b.WriteRune(unicode.ToUpper(r))
			space = false
		}
	}
	return strings.TrimSuffix(b.String(), " ")
}

// Key is the operator's pseudonymisation key (at least 32 bytes).
type Key []byte

// ErrShortKey is returned for a key under 32 bytes.
var ErrShortKey = errors.New("subject: pseudonymisation key must be at least 32 bytes")

// Pseudonymizer computes pseudonyms under one key.
type Pseudonymizer struct{ key Key }

// New returns a Pseudonymizer for key.
func New(key Key) (*Pseudonymizer, error) {
	if len(key) < 32 {
		return nil, ErrShortKey
	}
	return &Pseudonymizer{key: append(Key(nil), key...)}, nil
}

// Of returns the pseudonym of the subject a request designates (hex), or
// "" when it carries none. A civil identity is reduced to what sources
// match on — birth name, first given name, sex, birth date, birth place
// and country — normalised; a domain identifier (INE, France Travail id)
// gives its own pseudonym, tagged with the identifier's kind, since the
// broker cannot link it to a civil identity.
func (p *Pseudonymizer) Of(req proto.Message) string {
	if p == nil || req == nil {
		return ""
	}
	return p.of(Canonical(req))
}

// OfIdentity is the pseudonym of a civil identity: the same as Of gives
// for a request designating that identity (the transparency portal, for
// the citizen who logged in).
func (p *Pseudonymizer) OfIdentity(id *commonv1.SubjectIdentity) string {
	if p == nil || id == nil {
		return ""
	}
	return p.of(CanonicalIdentity(id))
}

func (p *Pseudonymizer) of(canonical string) string {
	if canonical == "" {
		return ""
	}
	mac := hmac.New(sha256.New, p.key)
	mac.Write([]byte(canonical))
	return hex.EncodeToString(mac.Sum(nil))
}

// Canonical is the normalised text the pseudonym is computed over. It
// holds the clear identity: never store or log it.
func Canonical(req proto.Message) string {
	switch d := Designate(req); {
	case d.Kind != "":
		return d.Kind + ":" + strings.ToUpper(strings.TrimSpace(d.Value))
	case d.Identity != nil:
		return CanonicalIdentity(d.Identity)
	default:
		return ""
	}
}

// CanonicalIdentity is Canonical for a civil identity.
func CanonicalIdentity(id *commonv1.SubjectIdentity) string {
	first := ""
	if g := id.GetGivenNames(); len(g) > 0 {
		first = NormaliseName(g[0])
	}
	return strings.Join([]string{"identity", NormaliseName(id.GetBirthName()), first, id.GetSex().String(),
		id.GetBirthDate(), id.GetBirthPlaceCog(), id.GetBirthCountryCog()}, "|")
}
