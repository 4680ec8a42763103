package main

import (
	"context"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/relais-broker/relais/adapters/remote"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
)

// familyQuotientSource is what a source administration writes: the typed
// service, answered from its own system (here, a map of fictitious
// households). It fills only the scopes the broker says the caller may
// receive, and answers with gRPC codes the broker understands:
// NotFound, FailedPrecondition (several people match), Unavailable (with
// RetryInfo), and honours the deadline of the incoming call.
type familyQuotientSource struct {
	familyquotientv1.UnimplementedFamilyQuotientServiceServer
	households map[string]*familyquotientv1.GetFamilyQuotientResponse
}

// key is how this source matches people: upper-cased birth name, first
// given name and birth date.
func key(id *commonv1.SubjectIdentity) string {
	first := ""
	if len(id.GetGivenNames()) > 0 {
		first = id.GetGivenNames()[0]
	}
	return strings.ToUpper(id.GetBirthName() + "|" + first + "|" + id.GetBirthDate())
}

func newFamilyQuotientSource() *familyQuotientSource {
	person := func(name, given, date string, sex commonv1.Sex) *commonv1.Person {
		return &commonv1.Person{BirthName: name, GivenNames: []string{given}, BirthDate: date, Sex: sex}
	}
	return &familyQuotientSource{households: map[string]*familyquotientv1.GetFamilyQuotientResponse{
		"LEBLANC|CAMILLE|1985-06-01": {
			Value: proto.Int32(820), ReferenceYear: proto.Int32(2026), ReferenceMonth: proto.Int32(10), Regime: familyquotientv1.Regime_REGIME_CNAF,
			Beneficiaries: []*commonv1.Person{person("LEBLANC", "Camille", "1985-06-01", commonv1.Sex_SEX_FEMALE)},
			Children:      []*commonv1.Person{person("LEBLANC", "Noa", "2016-02-02", commonv1.Sex_SEX_MALE)},
			Address:       &commonv1.PostalAddress{StreetLine: "3 RUE DE LA SOURCE", PostalCode: "33000", City: "BORDEAUX", Country: "FRANCE"},
		},
	}}
}

// GetFamilyQuotient implements the typed service.
func (s *familyQuotientSource) GetFamilyQuotient(ctx context.Context, req *familyquotientv1.GetFamilyQuotientRequest) (*familyquotientv1.GetFamilyQuotientResponse, error) {
	switch k := key(req.GetSubject()); {
	case strings.HasPrefix(k, "LENT|"): // a slow back end: waits for the deadline
		<-ctx.Done()
		return nil, status.Error(codes.DeadlineExceeded, "back end too slow")
	case strings.HasPrefix(k, "PANNE|"): // the back end is down
		st, _ := status.New(codes.Unavailable, "back end down").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(10 * time.Second)})
		return nil, st.Err()
	case strings.HasPrefix(k, "HOMONYME|"):
		return nil, status.Error(codes.FailedPrecondition, "several people match")
	}
	h, ok := s.households[key(req.GetSubject())]
	if !ok {
		return nil, status.Error(codes.NotFound, "unknown")
	}
	allowed := remote.AllowedScopes(ctx)
	resp := &familyquotientv1.GetFamilyQuotientResponse{
		Source: &commonv1.SourceMetadata{SourceId: "exemple-caf", Provider: "Source d'exemple (données fictives)", ProducedAt: timestamppb.Now(),
			ValidUntil: timestamppb.New(time.Now().Add(24 * time.Hour))},
	}
	if allowed.Has("family_quotient.value") {
		resp.Value, resp.ReferenceYear, resp.ReferenceMonth, resp.Regime = h.Value, h.ReferenceYear, h.ReferenceMonth, h.Regime
	}
	if allowed.Has("family_quotient.beneficiaries") {
		resp.Beneficiaries = h.Beneficiaries
	}
	if allowed.Has("family_quotient.children") {
		resp.Children = h.Children
	}
	if allowed.Has("family_quotient.address") {
		resp.Address = h.Address
	}
	return resp, nil
}
