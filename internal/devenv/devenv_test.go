package devenv_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/relais-broker/relais/broker"
	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/scope"
	"github.com/relais-broker/relais/certs"
	"github.com/relais-broker/relais/internal/devenv"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
)

// devBroker is the dev environment served over real mTLS on loopback:
// the embedded dev CA, the demo registry and the sandbox sources.
type devBroker struct {
	env  *devenv.Env
	addr string
	cat  *catalog.Catalog
}

func startDev(t *testing.T, sourceTimeout time.Duration) *devBroker {
	t.Helper()
	ctx := context.Background()
	cat := catalog.Default()
	env, err := devenv.Prepare(ctx, t.TempDir(), nil, cat, time.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Registry.Close() })
	for svc, src := range env.Sources {
		src.Timeout = sourceTimeout
		env.Sources[svc] = src
	}
	b, err := broker.New(broker.Config{Catalog: cat, Sources: env.Sources, Registry: env.Registry, Audit: &audit.Memory{}})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := b.NewGRPCServer(grpc.Creds(credentials.NewTLS(certs.ServerConfig(env.ServerCert, env.Trust))))
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return &devBroker{env: env, addr: lis.Addr().String(), cat: cat}
}

// dial connects with the demo consumer's credentials as written on disk,
// the way a user's client would load them.
func (d *devBroker) dial(t *testing.T, c devenv.DemoConsumer) *grpc.ClientConn {
	conn, _ := d.dialSource(t, c)
	return conn
}

// dialSource is dial through a certs.CertSource the caller may swap.
func (d *devBroker) dialSource(t *testing.T, c devenv.DemoConsumer) (*grpc.ClientConn, *certs.CertSource) {
	t.Helper()
	dir := d.env.ConsumerDir(c)
	certPEM, err := os.ReadFile(filepath.Join(dir, "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	src := certs.NewCertSource()
	if err := src.Set(certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(d.env.Dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("no certificate in ca.pem")
	}
	cfg := &tls.Config{GetClientCertificate: src.GetClientCertificate, RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	conn, err := grpc.NewClient(d.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn, src
}

// person is a civil identity in the sandbox data set's terms.
type person struct {
	name, given string
	sex         commonv1.Sex
	date, place string
	country     string
}

func (p person) identity() *commonv1.SubjectIdentity {
	country := p.country
	if country == "" {
		country = "99100"
	}
	return &commonv1.SubjectIdentity{BirthName: p.name, GivenNames: []string{p.given}, Sex: p.sex, BirthDate: p.date, BirthPlaceCog: p.place, BirthCountryCog: country}
}

var (
	female, male = commonv1.Sex_SEX_FEMALE, commonv1.Sex_SEX_MALE
	zoe          = person{"DUPONT", "Zoé", female, "1984-03-12", "75056", ""}
	louise       = person{"FAURE", "Louise", female, "1996-02-29", "33063", ""}
	hugo         = person{"PETIT", "Hugo", male, "2004-01-20", "75056", ""}
	anna         = person{"Müller", "Anna", female, "1991-09-09", "", "99109"}
	adam         = person{"FOURNIER", "Adam", male, "2005-11-11", "33063", ""}
	rui          = person{"D'ALMEIDA", "Rui", male, "1978-03-21", "", "99139"}
	chloe        = person{"LAMBERT", "Chloé", female, "1983-05-05", "67482", ""}
	minh         = person{"NGUYEN", "Minh", male, "1990-05-05", "", "99243"}
	paul         = person{"MERCIER", "Paul", male, "1965-01-01", "75056", ""}
	emma         = person{"BLANC", "Emma", female, "1972-02-14", "69123", ""}
	arthur       = person{"CHEVALIER", "Arthur", male, "1980-06-18", "35238", ""}
	nobody       = person{"INCONNU", "Personne", female, "2000-01-01", "75056", ""}
)

// call invokes the service's method for p with the consumer's purpose,
// and an optional field mask.
func (d *devBroker) call(t *testing.T, conn *grpc.ClientConn, service string, p person, purpose string, mask ...string) (protoreflect.Message, error) {
	t.Helper()
	var m *catalog.Method
	for _, mm := range d.cat.Methods() {
		if mm.Service == service {
			m = mm
		}
	}
	if m == nil {
		t.Fatalf("no service %s", service)
	}
	in := m.Input.New()
	fields := in.Descriptor().Fields()
	recipient := devenv.FullConsumer.SIRET
	if purpose == "aide_sociale_facultative" {
		recipient = devenv.LimitedConsumer.SIRET
	}
	in.Set(fields.ByName("access_context"), protoreflect.ValueOfMessage((&commonv1.AccessContext{Recipient: recipient, Purpose: purpose, CaseReference: "TEST-1"}).ProtoReflect()))
	subject := fields.ByName("subject")
	if subject == nil {
		subject = fields.ByName("identity")
	}
	in.Set(subject, protoreflect.ValueOfMessage(p.identity().ProtoReflect()))
	if len(mask) > 0 {
		in.Set(fields.ByName("field_mask"), protoreflect.ValueOfMessage((&fieldmaskpb.FieldMask{Paths: mask}).ProtoReflect()))
	}
	out := m.Output.New()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := conn.Invoke(ctx, m.FullMethod, in.Interface(), out.Interface())
	return out, err
}

func reasonOf(err error) (codes.Code, string, *errdetails.RetryInfo) {
	st := status.Convert(err)
	var reason string
	var retry *errdetails.RetryInfo
	for _, d := range st.Details() {
		switch x := d.(type) {
		case *errdetails.ErrorInfo:
			reason = x.GetReason()
		case *errdetails.RetryInfo:
			retry = x
		}
	}
	return st.Code(), reason, retry
}

// setFields lists the populated top-level fields of a response.
func setFields(m protoreflect.Message) map[string]bool {
	got := map[string]bool{}
	m.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		got[string(fd.Name())] = true
		return true
	})
	return got
}

const (
	fqService  = "relais.familyquotient.v1.FamilyQuotientService"
	ssService  = "relais.studentstatus.v1.StudentStatusService"
	schService = "relais.studentscholarship.v1.StudentScholarshipService"
	jsService  = "relais.jobseeker.v1.JobSeekerStatusService"
	hcService  = "relais.healthcover.v1.SolidarityHealthCoverService"
)

// TestEveryServiceEndToEnd runs, for each typed service, the five answers
// a source can give — found, partial, not found, not identifiable, source
// error — through the broker and the sandbox over mTLS.
func TestEveryServiceEndToEnd(t *testing.T) {
	d := startDev(t, 2*time.Second)
	conn := d.dial(t, devenv.FullConsumer)
	type outcome struct {
		p person
		// want lists fields that must be set; absent fields that must not.
		want, absent []string
		code         codes.Code
		reason       string
	}
	found := func(p person, want ...string) outcome { return outcome{p: p, want: want} }
	partial := func(p person, want []string, absent ...string) outcome {
		return outcome{p: p, want: want, absent: absent}
	}
	notFound := outcome{p: nobody, code: codes.NotFound, reason: "subject_not_found"}
	notIdentifiable := outcome{p: minh, code: codes.FailedPrecondition, reason: "subject_not_identifiable"}
	unavailable := outcome{p: paul, code: codes.Unavailable, reason: "source_unavailable"}
	cases := map[string]map[string]outcome{
		fqService: {
			"found":   found(zoe, "source", "value", "reference_year", "reference_month", "regime", "beneficiaries", "children", "address"),
			"partial": partial(louise, []string{"value", "beneficiaries"}, "children", "address"),
		},
		ssService: {
			"found":   found(hugo, "source", "identity", "admissions"),
			"partial": partial(anna, []string{"identity", "admissions"}),
		},
		schService: {
			"found":   found(hugo, "source", "is_scholarship_holder", "status", "echelon", "study_city", "valid_from", "valid_to"),
			"partial": partial(adam, []string{"is_scholarship_holder"}, "echelon", "study_city", "valid_from"),
		},
		jsService: {
			"found":   found(zoe, "source", "identity", "currently_registered", "registration_start_date", "category_code", "category_label"),
			"partial": partial(rui, []string{"identity", "currently_registered", "registration_start_date"}, "category_code", "category_label"),
		},
		hcService: {
			"found":   found(zoe, "source", "is_beneficiary", "with_financial_participation", "rights_start_date", "rights_end_date"),
			"partial": partial(chloe, []string{"is_beneficiary"}, "with_financial_participation", "rights_start_date"),
		},
	}
	for svc, byCase := range cases {
		byCase["not found"] = notFound
		byCase["not identifiable"] = notIdentifiable
		byCase["source unavailable"] = unavailable
		for name, want := range byCase {
			t.Run(svc+"/"+name, func(t *testing.T) {
				resp, err := d.call(t, conn, svc, want.p, "tarification_sociale")
				code, reason, retry := reasonOf(err)
				if code != want.code || reason != want.reason {
					t.Fatalf("got %s/%q, want %s/%q (%v)", code, reason, want.code, want.reason, err)
				}
				if want.reason == "source_unavailable" && (retry == nil || retry.GetRetryDelay().AsDuration() <= 0) {
					t.Fatalf("source_unavailable without a retry delay: %v", err)
				}
				if err != nil {
					return
				}
				got := setFields(resp)
				for _, f := range want.want {
					if !got[f] {
						t.Errorf("field %s missing from %v", f, got)
					}
				}
				for _, f := range want.absent {
					if got[f] {
						t.Errorf("field %s set, the source holds none", f)
					}
				}
			})
		}
	}
}

func TestSourceTimeoutAndInvalidResponse(t *testing.T) {
	d := startDev(t, 300*time.Millisecond)
	conn := d.dial(t, devenv.FullConsumer)
	_, err := d.call(t, conn, fqService, emma, "tarification_sociale")
	if code, reason, _ := reasonOf(err); code != codes.DeadlineExceeded || reason != "source_timeout" {
		t.Fatalf("timeout citizen: %s/%q (%v)", code, reason, err)
	}
	_, err = d.call(t, conn, fqService, arthur, "tarification_sociale")
	if code, reason, _ := reasonOf(err); code != codes.Internal || reason != "source_invalid_response" {
		t.Fatalf("invalid-response citizen: %s/%q (%v)", code, reason, err)
	}
}

// TestMinimisationPerGrant checks two different grants and a field mask:
// the limited consumer gets only its granted scopes, whatever it asks.
func TestMinimisationPerGrant(t *testing.T) {
	d := startDev(t, 2*time.Second)
	full := d.dial(t, devenv.FullConsumer)
	limited := d.dial(t, devenv.LimitedConsumer)
	for _, tc := range []struct {
		name    string
		conn    *grpc.ClientConn
		svc     string
		p       person
		purpose string
		mask    []string
		want    []string
	}{
		{"full grant, family quotient", full, fqService, zoe, "tarification_sociale", nil,
			[]string{"source", "value", "reference_year", "reference_month", "regime", "beneficiaries", "children", "address"}},
		{"full grant narrowed by a mask", full, fqService, zoe, "tarification_sociale", []string{"children"}, []string{"source", "children"}},
		{"limited grant, family quotient", limited, fqService, zoe, "aide_sociale_facultative", nil,
			[]string{"source", "value", "reference_year", "reference_month", "regime"}},
		{"limited grant asking for children gets none", limited, fqService, zoe, "aide_sociale_facultative", []string{"children", "value"},
			[]string{"source", "value"}},
		{"limited grant, health cover", limited, hcService, zoe, "aide_sociale_facultative", nil, []string{"source", "is_beneficiary"}},
		{"limited grant, job seeker", limited, jsService, zoe, "aide_sociale_facultative", nil,
			[]string{"source", "currently_registered", "registration_start_date"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := d.call(t, tc.conn, tc.svc, tc.p, tc.purpose, tc.mask...)
			if err != nil {
				t.Fatal(err)
			}
			got := setFields(resp)
			want := map[string]bool{}
			for _, f := range tc.want {
				want[f] = true
			}
			if len(got) != len(want) {
				t.Fatalf("fields %v, want exactly %v", got, tc.want)
			}
			for f := range want {
				if !got[f] {
					t.Fatalf("fields %v, want exactly %v", got, tc.want)
				}
			}
		})
	}
	_, err := d.call(t, limited, ssService, hugo, "aide_sociale_facultative")
	if code, reason, _ := reasonOf(err); code != codes.PermissionDenied || reason != "no_grant" {
		t.Fatalf("limited consumer on an ungranted service: %s/%q", code, reason)
	}
}

// TestServerCertificateRotationUnderLoad re-issues the broker's own
// certificate several times while clients call continuously, on an open
// connection and on fresh ones: no call fails.
func TestServerCertificateRotationUnderLoad(t *testing.T) {
	d := startDev(t, 2*time.Second)
	open := d.dial(t, devenv.FullConsumer)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var calls, failures atomic.Int32
	worker := func(fresh bool) {
		defer wg.Done()
		for i := 0; i < 2000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			conn := open
			if fresh {
				conn = d.dial(t, devenv.FullConsumer)
			}
			if _, err := d.call(t, conn, hcService, zoe, "tarification_sociale"); err != nil {
				failures.Add(1)
				t.Errorf("call during rotation: %v", err)
			}
			calls.Add(1)
			if fresh {
				_ = conn.Close()
			}
			// Stay under the demo quota (20 calls/s per consumer): a
			// rate-limit refusal is not what this test is about.
			time.Sleep(60 * time.Millisecond)
		}
	}
	wg.Add(2)
	go worker(false)
	go worker(true)
	serials := map[string]bool{}
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; i < 5; i++ {
		// Rotate after every 10 calls, so calls straddle each rotation.
		for target := calls.Load() + 10; calls.Load() < target && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		if err := d.env.ServerKeeper.Issue(context.Background()); err != nil {
			t.Fatal(err)
		}
		serials[d.env.ServerCert.Certificate().Leaf.SerialNumber.String()] = true
	}
	for target := calls.Load() + 10; calls.Load() < target && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if len(serials) != 5 || failures.Load() != 0 {
		t.Fatalf("%d distinct server certificates, %d failed calls of %d", len(serials), failures.Load(), calls.Load())
	}
	t.Logf("%d calls across 5 server certificate rotations, 0 failed", calls.Load())
}

// TestOverlappingGrantsAndNextCallEnforcement: two consumers, one of which
// holds two overlapping grants on the same service; the scopes of grants
// in force for the purpose add up, and a grant change (added, then
// revoked) is enforced on the very next call.
func TestOverlappingGrantsAndNextCallEnforcement(t *testing.T) {
	d := startDev(t, 2*time.Second)
	ctx := context.Background()
	limited := d.dial(t, devenv.LimitedConsumer)
	full := d.dial(t, devenv.FullConsumer)
	fields := func(conn *grpc.ClientConn, purpose string) map[string]bool {
		t.Helper()
		resp, err := d.call(t, conn, fqService, zoe, purpose)
		if err != nil {
			t.Fatal(err)
		}
		return setFields(resp)
	}
	if got := fields(limited, "aide_sociale_facultative"); got["children"] || !got["value"] {
		t.Fatalf("limited before the second grant: %v", got)
	}
	extra, err := d.env.Registry.AddGrant(ctx, registry.Grant{
		Consumer: devenv.LimitedConsumer.SIRET, Service: fqService, Scopes: scope.Of("family_quotient.children"),
		Purposes:  []registry.Purpose{{Code: "aide_sociale_facultative", Label: "Aide facultative", LegalBasis: "CASF art. L123-5"}},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), Quota: registry.Quota{RatePerSecond: 20, Burst: 40},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := fields(limited, "aide_sociale_facultative"); !got["children"] || !got["value"] || got["address"] {
		t.Fatalf("limited with two overlapping grants: want value and children, got %v", got)
	}
	// The other consumer is untouched by the change.
	if got := fields(full, "tarification_sociale"); !got["address"] || !got["children"] {
		t.Fatalf("full consumer: %v", got)
	}
	if _, err := d.env.Registry.RevokeGrant(ctx, extra.ID); err != nil {
		t.Fatal(err)
	}
	if got := fields(limited, "aide_sociale_facultative"); got["children"] {
		t.Fatalf("revoked grant still honoured on the next call: %v", got)
	}
}
