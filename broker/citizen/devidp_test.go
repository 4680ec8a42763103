package citizen_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/relais-broker/relais/broker/citizen"
	"github.com/relais-broker/relais/broker/errcat"
	"github.com/relais-broker/relais/internal/devidp/devidptest"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
)

// TestDevProvider resolves tokens of the real dev provider (relaisd
// dev's), obtained through its real login flow (authorization code with
// PKCE, the login page, the token endpoint), with one clock for both.
func TestDevProvider(t *testing.T) {
	clk := &clock{now: time.Now().Truncate(time.Second)}
	s := devidptest.Start(t, devidptest.Options{Now: clk.Now})
	r, err := citizen.New(citizen.Config{
		Providers:  []citizen.ProviderConfig{{Issuer: s.Issuer, ClientID: "relais", AcceptedACR: []string{"eidas1"}}},
		HTTPClient: s.HTTPClient(),
		Clock:      clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		citizen string
		want    *commonv1.SubjectIdentity
	}{
		{"DUPONT Zoé", &commonv1.SubjectIdentity{BirthName: "DUPONT", GivenNames: []string{"Zoé", "Marie"}, Sex: commonv1.Sex_SEX_FEMALE,
			BirthDate: "1984-03-12", BirthPlaceCog: "75056", BirthCountryCog: "99100"}},
		{"BENALI Yasmine", nil}, // born abroad: no birth place
		{"LEROY Camille", nil},  // a usage name
	} {
		t.Run(tc.citizen, func(t *testing.T) {
			id, err := r.Resolve(ctx, s.Token(t, "citizen-portal", tc.citizen))
			if err != nil {
				t.Fatal(err)
			}
			if tc.want != nil && !proto.Equal(id, tc.want) {
				t.Fatalf("identity = %v, want %v", id, tc.want)
			}
			switch tc.citizen {
			case "BENALI Yasmine":
				if id.GetBirthPlaceCog() != "" || id.GetBirthCountryCog() == "99100" {
					t.Fatalf("born abroad: %v", id)
				}
			case "LEROY Camille":
				if id.GetUsageName() != "MARTIN" || id.GetBirthName() != "LEROY" {
					t.Fatalf("usage name: %v", id)
				}
			}
		})
	}

	t.Run("wrong audience", func(t *testing.T) {
		tok := s.Token(t, "other-town", "DUPONT Zoé")
		_, err := r.Resolve(ctx, tok)
		checkRefusal(t, nil, err, errcat.CitizenTokenWrongAudience, codes.InvalidArgument, tok)
	})
	t.Run("tampered", func(t *testing.T) {
		tok := []byte(s.Token(t, "citizen-portal", "DUPONT Zoé"))
		i := len(tok) / 2
		tok[i] = map[bool]byte{true: 'B', false: 'A'}[tok[i] == 'A']
		_, err := r.Resolve(ctx, string(tok))
		checkRefusal(t, nil, err, errcat.CitizenTokenInvalid, codes.InvalidArgument, string(tok))
	})
	t.Run("expired", func(t *testing.T) {
		tok := s.Token(t, "citizen-portal", "DUPONT Zoé")
		clk.Advance(time.Hour)
		_, err := r.Resolve(ctx, tok)
		checkRefusal(t, nil, err, errcat.CitizenTokenExpired, codes.InvalidArgument, tok)
	})
	t.Run("down", func(t *testing.T) {
		tok := s.Token(t, "citizen-portal", "DUPONT Zoé")
		s.TLS.Close()
		_, err := r.Resolve(ctx, tok)
		checkRefusal(t, nil, err, errcat.IdentityProviderUnavailable, codes.Unavailable, tok)
	})
}
