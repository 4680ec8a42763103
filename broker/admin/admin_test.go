package admin_test

import (
	"context"
	"slices"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/relais-broker/relais/broker/admin"
	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/certs"
	"github.com/relais-broker/relais/internal/tlstest"
	adminv1 "github.com/relais-broker/relais/proto/relais/admin/v1"
)

const siretA = "21990000100005"

type env struct {
	addr    string
	pki     *tlstest.PKI
	revoked *certs.Revocations
	audit   *audit.Memory
}

func start(t *testing.T) *env {
	t.Helper()
	e := &env{pki: tlstest.New(t), revoked: certs.NewRevocations(), audit: &audit.Memory{}}
	s, err := admin.New(admin.Config{Issuer: e.pki.CA, Revocations: e.revoked, Audit: e.audit})
	if err != nil {
		t.Fatal(err)
	}
	e.addr = tlstest.Serve(t, s.NewGRPCServer(e.pki.ServerCreds(certs.RejectRevoked(e.revoked))))
	return e
}

func (e *env) issue(t *testing.T, kind identity.Kind, id string) *certs.Credential {
	return e.pki.Issue(t, kind, id)
}

func (e *env) client(t *testing.T, cred *certs.Credential) adminv1.CredentialAdminServiceClient {
	return adminv1.NewCredentialAdminServiceClient(e.pki.Dial(t, e.addr, cred))
}

func reasonOf(err error) (codes.Code, string, []*errdetails.BadRequest_FieldViolation) {
	st := status.Convert(err)
	var reason string
	var fv []*errdetails.BadRequest_FieldViolation
	for _, d := range st.Details() {
		switch x := d.(type) {
		case *errdetails.ErrorInfo:
			reason = x.GetReason()
		case *errdetails.BadRequest:
			fv = x.GetFieldViolations()
		}
	}
	return st.Code(), reason, fv
}

func TestRevokeBySerialAndByConsumer(t *testing.T) {
	e := start(t)
	op := e.client(t, e.issue(t, identity.KindOperator, "alice"))
	a1 := e.issue(t, identity.KindConsumer, siretA)
	a2 := e.issue(t, identity.KindConsumer, siretA)
	other := e.issue(t, identity.KindConsumer, "21990000200003")

	resp, err := op.RevokeCredential(context.Background(), &adminv1.RevokeCredentialRequest{Target: &adminv1.RevokeCredentialRequest_Serial{Serial: a1.Serial}, Reason: "poste compromis"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(resp.GetSerials(), []string{a1.Serial}) || !e.revoked.IsRevoked(a1.Serial) || e.revoked.IsRevoked(a2.Serial) {
		t.Fatalf("by serial: %v", resp.GetSerials())
	}
	inCA, _ := e.pki.CA.RevokedSerials(context.Background())
	if !slices.Contains(inCA, a1.Serial) {
		t.Fatal("revoked in the broker but not in the CA")
	}
	if _, err := op.RevokeCredential(context.Background(), &adminv1.RevokeCredentialRequest{Target: &adminv1.RevokeCredentialRequest_ConsumerSiret{ConsumerSiret: siretA}}); err != nil {
		t.Fatal(err)
	}
	if !e.revoked.IsRevoked(a2.Serial) || e.revoked.IsRevoked(other.Serial) {
		t.Fatal("revocation by consumer did not revoke exactly the consumer's certificates")
	}
	recs := e.audit.Records()
	if len(recs) != 2 || recs[0].Operator != "alice" || recs[0].Target != a1.Serial || recs[0].Method != "/relais.admin.v1.CredentialAdminService/RevokeCredential" {
		t.Fatalf("audit records: %+v", recs)
	}
}

func TestAdminRefusals(t *testing.T) {
	e := start(t)
	op := e.client(t, e.issue(t, identity.KindOperator, "alice"))
	consumer := e.client(t, e.issue(t, identity.KindConsumer, siretA))
	victim := e.issue(t, identity.KindConsumer, siretA)

	_, err := consumer.RevokeCredential(context.Background(), &adminv1.RevokeCredentialRequest{Target: &adminv1.RevokeCredentialRequest_Serial{Serial: victim.Serial}})
	if code, reason, _ := reasonOf(err); code != codes.Unauthenticated || reason != "credential_invalid" {
		t.Fatalf("consumer certificate on the admin API: %s/%s", code, reason)
	}
	if e.revoked.IsRevoked(victim.Serial) {
		t.Fatal("a consumer revoked a certificate")
	}
	_, err = op.RevokeCredential(context.Background(), &adminv1.RevokeCredentialRequest{Target: &adminv1.RevokeCredentialRequest_Serial{Serial: "not-hex"}})
	if code, reason, fv := reasonOf(err); code != codes.InvalidArgument || reason != "invalid_request" || len(fv) != 1 || fv[0].GetField() != "serial" {
		t.Fatalf("bad serial: %s/%s %v", code, reason, fv)
	}
	_, err = op.RevokeCredential(context.Background(), &adminv1.RevokeCredentialRequest{Target: &adminv1.RevokeCredentialRequest_Serial{Serial: "abcdef"}})
	if code, reason, _ := reasonOf(err); code != codes.InvalidArgument || reason != "invalid_request" {
		t.Fatalf("unknown serial: %s/%s", code, reason)
	}
	_, err = op.RevokeCredential(context.Background(), &adminv1.RevokeCredentialRequest{})
	if code, _, _ := reasonOf(err); code != codes.InvalidArgument {
		t.Fatalf("no target: %v", err)
	}
	e.audit.SetFail(context.DeadlineExceeded)
	_, err = op.RevokeCredential(context.Background(), &adminv1.RevokeCredentialRequest{Target: &adminv1.RevokeCredentialRequest_Serial{Serial: victim.Serial}})
	if code, reason, _ := reasonOf(err); code != codes.Unavailable || reason != "audit_unavailable" {
		t.Fatalf("audit down: %s/%s", code, reason)
	}
	for _, r := range e.audit.Records() {
		if r.Operator == "" && r.Reason != "credential_invalid" {
			t.Fatalf("admin record without operator: %+v", r)
		}
	}
}
