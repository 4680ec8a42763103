package broker_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/source"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
	healthcoverv1 "github.com/relais-broker/relais/proto/relais/healthcover/v1"
	studentstatusv1 "github.com/relais-broker/relais/proto/relais/studentstatus/v1"
)

// reasonOf returns the code and ErrorInfo reason of a call error.
func reasonOf(t *testing.T, err error) (codes.Code, string) {
	t.Helper()
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return st.Code(), info.GetReason()
		}
	}
	return st.Code(), ""
}

func violations(err error) []*errdetails.BadRequest_FieldViolation {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			return br.GetFieldViolations()
		}
	}
	return nil
}

// TestDeniedCallsNeverReachTheAdapter proves the order of the chain:
// authentication, validation and authorization all run before the source
// is called, and every refusal is still traced.
func TestDeniedCallsNeverReachTheAdapter(t *testing.T) {
	h := newHarness(t, registry.Quota{})
	tests := []struct {
		name   string
		kind   identity.Kind
		id     string
		req    func() *familyquotientv1.GetFamilyQuotientRequest
		code   codes.Code
		reason string
	}{
		{"unregistered consumer", identity.KindConsumer, sirenUnknown, validFQ, codes.Unauthenticated, "consumer_unknown"},
		{"operator certificate on the data api", identity.KindOperator, "alice", validFQ, codes.Unauthenticated, "credential_invalid"},
		{"suspended consumer", identity.KindConsumer, sirenSuspended, validFQ, codes.PermissionDenied, "consumer_suspended"},
		{"invalid request before authorization", identity.KindConsumer, sirenSuspended, func() *familyquotientv1.GetFamilyQuotientRequest {
			r := validFQ()
			r.AccessContext.Recipient = "123"
			return r
		}, codes.InvalidArgument, "invalid_recipient"},
		{"purpose not granted", identity.KindConsumer, sirenFull, func() *familyquotientv1.GetFamilyQuotientRequest {
			r := validFQ()
			r.AccessContext.Purpose = "curiosite"
			return r
		}, codes.PermissionDenied, "purpose_not_granted"},
		{"mask outside the grant", identity.KindConsumer, sirenLimited, func() *familyquotientv1.GetFamilyQuotientRequest {
			r := validFQ()
			r.FieldMask = &fieldmaskpb.FieldMask{Paths: []string{"children"}}
			return r
		}, codes.PermissionDenied, "scope_not_granted"},
		{"unknown mask field", identity.KindConsumer, sirenFull, func() *familyquotientv1.GetFamilyQuotientRequest {
			r := validFQ()
			r.FieldMask = &fieldmaskpb.FieldMask{Paths: []string{"income"}}
			return r
		}, codes.InvalidArgument, "invalid_field_mask"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := h.adapter.Calls()
			client := familyquotientv1.NewFamilyQuotientServiceClient(h.conn(t, tt.kind, tt.id))
			_, err := client.GetFamilyQuotient(context.Background(), tt.req())
			if code, reason := reasonOf(t, err); code != tt.code || reason != tt.reason {
				t.Fatalf("got %s/%s, want %s/%s (%v)", code, reason, tt.code, tt.reason, err)
			}
			if h.adapter.Calls() != before {
				t.Fatal("a denied call reached the adapter")
			}
			recs := h.audit.Records()
			if last := recs[len(recs)-1]; last.Reason != tt.reason || last.Method != "/"+fqService+"/GetFamilyQuotient" {
				t.Errorf("audit record = %+v", last)
			}
		})
	}
}

func TestNoGrantAndExpiredGrant(t *testing.T) {
	h := newHarness(t, registry.Quota{})
	c2s := healthcoverv1.NewSolidarityHealthCoverServiceClient(h.conn(t, identity.KindConsumer, sirenLimited))
	fq := validFQ()
	_, err := c2s.GetSolidarityHealthCover(context.Background(), &healthcoverv1.GetSolidarityHealthCoverRequest{AccessContext: fq.AccessContext, Subject: fq.Subject})
	if code, reason := reasonOf(t, err); code != codes.PermissionDenied || reason != "no_grant" {
		t.Fatalf("got %s/%s", code, reason)
	}
	h.clock.Advance(48 * time.Hour) // past every grant's window
	client := familyquotientv1.NewFamilyQuotientServiceClient(h.conn(t, identity.KindConsumer, sirenFull))
	_, err = client.GetFamilyQuotient(context.Background(), validFQ())
	if code, reason := reasonOf(t, err); code != codes.PermissionDenied || reason != "grant_expired" {
		t.Fatalf("got %s/%s", code, reason)
	}
	if h.adapter.Calls() != 0 {
		t.Fatal("denied calls reached the adapter")
	}
}

// TestMinimisation checks two grants and a field mask: a consumer only
// ever receives the fields of its granted scopes.
func TestMinimisation(t *testing.T) {
	h := newHarness(t, registry.Quota{})
	full := familyquotientv1.NewFamilyQuotientServiceClient(h.conn(t, identity.KindConsumer, sirenFull))
	limited := familyquotientv1.NewFamilyQuotientServiceClient(h.conn(t, identity.KindConsumer, sirenLimited))
	ctx := context.Background()

	got, err := full.GetFamilyQuotient(ctx, validFQ())
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, fullResponse("/"+fqService+"/GetFamilyQuotient")) {
		t.Errorf("full grant got %v", got)
	}

	got, err = limited.GetFamilyQuotient(ctx, validFQ())
	if err != nil {
		t.Fatal(err)
	}
	if got.GetValue() != 612 || got.ReferenceMonth == nil || got.Children != nil || got.Beneficiaries != nil || got.Address != nil || got.Source == nil {
		t.Errorf("limited grant got %v", got)
	}

	req := validFQ()
	req.FieldMask = &fieldmaskpb.FieldMask{Paths: []string{"children"}}
	got, err = full.GetFamilyQuotient(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if got.Value != nil || len(got.Children) != 1 || got.Address != nil {
		t.Errorf("mask children got %v", got)
	}

	// A mask mixing granted and ungranted fields returns the granted ones only.
	req.FieldMask = &fieldmaskpb.FieldMask{Paths: []string{"children", "value"}}
	got, err = limited.GetFamilyQuotient(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if got.GetValue() != 612 || got.Children != nil {
		t.Errorf("limited with mask got %v", got)
	}

	h.adapter.mu.Lock()
	passed := h.adapter.scopes
	h.adapter.mu.Unlock()
	want := []string{
		"family_quotient.address,family_quotient.beneficiaries,family_quotient.children,family_quotient.value",
		"family_quotient.value",
		"family_quotient.children",
		"family_quotient.value",
	}
	for i, w := range want {
		if passed[i].String() != w {
			t.Errorf("call %d: adapter was asked for %s, want %s", i, passed[i], w)
		}
	}
	recs := h.audit.Records()
	if r := recs[len(recs)-1]; strings.Join(r.FieldsRequested, ",") != "children,value" || strings.Join(r.FieldsReturned, ",") != "value" {
		t.Errorf("audit fields = %v / %v", r.FieldsRequested, r.FieldsReturned)
	}
}

// TestMinimisationStripsWhatTheAdapterOverfetched: an adapter that ignores
// the scopes it was given still cannot leak.
func TestMinimisationStripsWhatTheAdapterOverfetched(t *testing.T) {
	h := newHarness(t, registry.Quota{})
	// The default fake answer ignores req.Scopes and fills everything.
	limited := familyquotientv1.NewFamilyQuotientServiceClient(h.conn(t, identity.KindConsumer, sirenLimited))
	got, err := limited.GetFamilyQuotient(context.Background(), validFQ())
	if err != nil {
		t.Fatal(err)
	}
	if got.Children != nil || got.Address != nil || got.Beneficiaries != nil {
		t.Fatalf("overfetched fields leaked: %v", got)
	}
}

func TestSourceErrors(t *testing.T) {
	h := newHarness(t, registry.Quota{})
	client := familyquotientv1.NewFamilyQuotientServiceClient(h.conn(t, identity.KindConsumer, sirenFull))
	tests := []struct {
		name   string
		answer func(ctx context.Context, req source.Request) (proto.Message, error)
		code   codes.Code
		reason string
		retry  time.Duration
	}{
		{"not found", failWith(source.ErrSubjectNotFound), codes.NotFound, "subject_not_found", 0},
		{"not identifiable", failWith(source.ErrNotIdentifiable), codes.FailedPrecondition, "subject_not_identifiable", 0},
		{"unavailable", failWith(source.ErrUnavailable), codes.Unavailable, "source_unavailable", 0},
		{"unavailable with retry", failWith(&source.RetryableError{RetryAfter: 30 * time.Second}), codes.Unavailable, "source_unavailable", 30 * time.Second},
		{"adapter timeout", failWith(source.ErrTimeout), codes.DeadlineExceeded, "source_timeout", 0},
		{"source slower than its timeout", func(ctx context.Context, _ source.Request) (proto.Message, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}, codes.DeadlineExceeded, "source_timeout", 0},
		{"invalid response", failWith(source.ErrInvalidResponse), codes.Internal, "source_invalid_response", 0},
		{"wrong message type", func(context.Context, source.Request) (proto.Message, error) {
			return &healthcoverv1.GetSolidarityHealthCoverResponse{}, nil
		}, codes.Internal, "source_invalid_response", 0},
		{"response breaking the schema rules", func(context.Context, source.Request) (proto.Message, error) {
			return &familyquotientv1.GetFamilyQuotientResponse{Source: sourceMeta(), ReferenceMonth: proto.Int32(13)}, nil
		}, codes.Internal, "source_invalid_response", 0},
		{"unexpected error", failWith(errors.New("boom")), codes.Internal, "internal", 0},
		{"panic", func(context.Context, source.Request) (proto.Message, error) { panic("adapter bug") }, codes.Internal, "internal", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.adapter.setAnswer(tt.answer)
			_, err := client.GetFamilyQuotient(context.Background(), validFQ())
			if code, reason := reasonOf(t, err); code != tt.code || reason != tt.reason {
				t.Fatalf("got %s/%s, want %s/%s (%v)", code, reason, tt.code, tt.reason, err)
			}
			st, _ := status.FromError(err)
			var retry time.Duration
			for _, d := range st.Details() {
				if ri, ok := d.(*errdetails.RetryInfo); ok {
					retry = ri.GetRetryDelay().AsDuration()
				}
			}
			if retry != tt.retry {
				t.Errorf("retry = %s, want %s", retry, tt.retry)
			}
		})
	}
}

func failWith(err error) func(context.Context, source.Request) (proto.Message, error) {
	return func(context.Context, source.Request) (proto.Message, error) { return nil, err }
}

func TestCallerDeadlineBoundsTheSource(t *testing.T) {
	h := newHarness(t, registry.Quota{})
	h.adapter.setAnswer(func(ctx context.Context, _ source.Request) (proto.Message, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	client := familyquotientv1.NewFamilyQuotientServiceClient(h.conn(t, identity.KindConsumer, sirenFull))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := client.GetFamilyQuotient(ctx, validFQ())
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("err = %v", err)
	}
	// The trace is written even though the caller gave up.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if n := len(h.audit.Records()); n == 1 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no audit record for the abandoned call")
}

func TestAuditFailureReturnsNoData(t *testing.T) {
	h := newHarness(t, registry.Quota{})
	h.audit.SetFail(errors.New("disk full"))
	client := familyquotientv1.NewFamilyQuotientServiceClient(h.conn(t, identity.KindConsumer, sirenFull))
	resp, err := client.GetFamilyQuotient(context.Background(), validFQ())
	if code, reason := reasonOf(t, err); code != codes.Unavailable || reason != "audit_unavailable" {
		t.Fatalf("got %s/%s", code, reason)
	}
	if resp != nil {
		t.Fatal("data returned without a trace")
	}
	h.audit.SetFail(nil)
	if _, err := client.GetFamilyQuotient(context.Background(), validFQ()); err != nil {
		t.Fatalf("did not recover: %v", err)
	}
}

func TestRateLimit(t *testing.T) {
	h := newHarness(t, registry.Quota{RatePerSecond: 1, Burst: 2})
	client := familyquotientv1.NewFamilyQuotientServiceClient(h.conn(t, identity.KindConsumer, sirenFull))
	var header metadata.MD
	for i := 0; i < 2; i++ {
		if _, err := client.GetFamilyQuotient(context.Background(), validFQ(), grpc.Header(&header)); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if got := header.Get("ratelimit-limit"); len(got) != 1 || got[0] != "2" {
		t.Errorf("ratelimit-limit = %v", got)
	}
	if got := header.Get("ratelimit-remaining"); len(got) != 1 || got[0] != "0" {
		t.Errorf("ratelimit-remaining = %v", got)
	}
	_, err := client.GetFamilyQuotient(context.Background(), validFQ())
	if code, reason := reasonOf(t, err); code != codes.ResourceExhausted || reason != "rate_limited" {
		t.Fatalf("got %s/%s", code, reason)
	}
	st, _ := status.FromError(err)
	found := false
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().AsDuration() == time.Second {
			found = true
		}
	}
	if !found {
		t.Error("no RetryInfo of 1s")
	}
	// The limit is per consumer × service: another service is unaffected.
	c2s := healthcoverv1.NewSolidarityHealthCoverServiceClient(h.conn(t, identity.KindConsumer, sirenFull))
	fq := validFQ()
	if _, err := c2s.GetSolidarityHealthCover(context.Background(), &healthcoverv1.GetSolidarityHealthCoverRequest{AccessContext: fq.AccessContext, Subject: fq.Subject}); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(time.Second)
	if _, err := client.GetFamilyQuotient(context.Background(), validFQ()); err != nil {
		t.Fatalf("after refill: %v", err)
	}
}

func TestServiceWithoutSource(t *testing.T) {
	h := newHarness(t, registry.Quota{})
	client := studentstatusv1.NewStudentStatusServiceClient(h.conn(t, identity.KindConsumer, sirenFull))
	fq := validFQ()
	_, err := client.GetStudentStatus(context.Background(), &studentstatusv1.GetStudentStatusRequest{
		AccessContext: fq.AccessContext, Subject: &studentstatusv1.GetStudentStatusRequest_Ine{Ine: "1234567890A"}})
	// Authorization runs first: no grant for this service.
	if code, reason := reasonOf(t, err); code != codes.PermissionDenied || reason != "no_grant" {
		t.Fatalf("got %s/%s", code, reason)
	}
}

func TestRequestIDHeader(t *testing.T) {
	h := newHarness(t, registry.Quota{})
	client := familyquotientv1.NewFamilyQuotientServiceClient(h.conn(t, identity.KindConsumer, sirenFull))
	var header metadata.MD
	if _, err := client.GetFamilyQuotient(context.Background(), validFQ(), grpc.Header(&header)); err != nil {
		t.Fatal(err)
	}
	ids := header.Get("x-request-id")
	if len(ids) != 1 || len(ids[0]) != 32 {
		t.Fatalf("x-request-id = %v", ids)
	}
	recs := h.audit.Records()
	if recs[0].RequestID != ids[0] || recs[0].Consumer != sirenFull || recs[0].CertSerial == "" || recs[0].Purpose != "cantine" || recs[0].Code != "OK" {
		t.Errorf("audit record = %+v", recs[0])
	}
}

func TestHealth(t *testing.T) {
	h := newHarness(t, registry.Quota{})
	hc := healthpb.NewHealthClient(h.conn(t, identity.KindConsumer, sirenFull))
	for svc, want := range map[string]healthpb.HealthCheckResponse_ServingStatus{
		"":        healthpb.HealthCheckResponse_SERVING,
		fqService: healthpb.HealthCheckResponse_SERVING,
		"relais.studentstatus.v1.StudentStatusService": healthpb.HealthCheckResponse_NOT_SERVING,
	} {
		resp, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != want {
			t.Errorf("health %q = %v, %v; want %v", svc, resp.GetStatus(), err, want)
		}
	}
}
