package devenv_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/internal/devenv"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
)

// The services added toward API particulier's catalogue.
const (
	rsaService  = "relais.rsa.v1.RsaStatusService"
	abService   = "relais.activitybonus.v1.ActivityBonusService"
	aahService  = "relais.aah.v1.DisabledAdultAllowanceService"
	asfService  = "relais.asf.v1.FamilySupportAllowanceService"
	aeehService = "relais.aeeh.v1.DisabledChildAllowanceService"
	schoService = "relais.schooling.v1.SchoolingService"
	nsService   = "relais.nationalservice.v1.NationalServiceStatusService"
	csService   = "relais.civicservice.v1.CivicServiceStatusService"
	jspService  = "relais.jobseekerpayments.v1.JobSeekerPaymentsService"
)

var (
	lucas     = person{"MARTIN", "Lucas", male, "1979-11-02", "69123", ""}
	alice     = person{"DUBOIS", "Alice", female, "1988-12-01", "44109", ""}
	elodie    = person{"Le Gall-Kerbrat", "Élodie", female, "1993-07-07", "35238", ""}
	ines      = person{"BERNARD", "Inès", female, "1975-06-14", "31555", ""}
	marc      = person{"SANTONI", "Marc", male, "1970-08-15", "2A004", ""}
	yasmine   = person{"BENALI", "Yasmine", female, "1986-04-23", "", "99350"}
	pupil     = person{"ROBERT", "Inès", female, "2014-05-21", "75056", ""}
	leo       = person{"MARTIN", "Léo", male, "2009-09-09", "69123", ""}
	lea       = person{"ROUX", "Léa", female, "2006-06-30", "31555", ""}
	jade      = person{"PAYET", "Jade", female, "1999-09-19", "97411", ""}
	newByName = []string{rsaService, abService, aahService, asfService, aeehService, schoService, nsService, csService}
)

// callByID invokes the service's method for a France Travail identifier
// (the only designation the payments service takes).
func (d *devBroker) callByID(t *testing.T, conn *grpc.ClientConn, service, ftid, purpose string) (protoreflect.Message, error) {
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
	in.Set(fields.ByName("access_context"), protoreflect.ValueOfMessage((&commonv1.AccessContext{Recipient: recipient, Purpose: purpose, CaseReference: "TEST-2"}).ProtoReflect()))
	in.Set(fields.ByName("france_travail_id"), protoreflect.ValueOfString(ftid))
	out := m.Output.New()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return out, conn.Invoke(ctx, m.FullMethod, in.Interface(), out.Interface())
}

// TestNewServicesEndToEnd runs, for each service added toward API
// particulier's catalogue, the answers a source can give — found,
// partial, not found, not identifiable, unavailable — through the broker
// and the sandbox over mTLS, with the full demo consumer.
func TestNewServicesEndToEnd(t *testing.T) {
	d := startDev(t, 2*time.Second)
	conn := d.dial(t, devenv.FullConsumer)
	type outcome struct {
		p    person
		ftid string // set: the call designates the subject by France Travail id
		// want lists fields that must be set; absent fields that must not.
		want, absent []string
		code         codes.Code
		reason       string
	}
	found := func(p person, want ...string) outcome {
		return outcome{p: p, want: append([]string{"source"}, want...)}
	}
	partial := func(p person, want []string, absent ...string) outcome {
		return outcome{p: p, want: want, absent: absent}
	}
	cases := map[string]map[string]outcome{
		rsaService: {
			"found":   found(zoe, "is_beneficiary", "rights_start_date", "with_increase"),
			"partial": partial(louise, []string{"is_beneficiary"}, "rights_start_date", "with_increase"),
		},
		abService: {
			"found":   found(lucas, "is_beneficiary", "rights_start_date", "with_increase"),
			"partial": partial(alice, []string{"is_beneficiary"}, "rights_start_date", "with_increase"),
		},
		aahService: {
			"found":   found(elodie, "is_beneficiary", "rights_start_date"),
			"partial": partial(chloe, []string{"is_beneficiary"}, "rights_start_date"),
		},
		asfService: {
			"found":   found(ines, "is_beneficiary", "rights_start_date"),
			"partial": partial(marc, []string{"is_beneficiary"}, "rights_start_date"),
		},
		aeehService: {
			"found":   found(yasmine, "status", "rights_start_date"),
			"partial": partial(lucas, []string{"status"}, "rights_start_date"),
		},
		schoService: {
			"found": found(pupil, "identity", "school_year", "is_enrolled", "pupil_status", "establishment", "training",
				"is_scholarship_holder", "scholarship_echelon", "boarding_regime"),
			"partial": partial(leo, []string{"identity", "school_year", "is_enrolled", "establishment"},
				"training", "is_scholarship_holder", "scholarship_echelon", "boarding_regime"),
		},
		nsService: {
			"found":   found(hugo, "status", "comment"),
			"partial": partial(lea, []string{"status"}, "comment"),
		},
		csService: {
			"found":   found(adam, "current", "past"),
			"partial": partial(jade, []string{"past"}, "current"),
		},
		jspService: {
			"found":            {ftid: "SBX0000001", want: []string{"source", "monthly_totals", "payments"}},
			"partial":          {ftid: "SBX0000004", want: []string{"monthly_totals"}, absent: []string{"payments"}},
			"not found":        {ftid: "SBX9999999", code: codes.NotFound, reason: "subject_not_found"},
			"unavailable":      {ftid: "SBX0000090", code: codes.Unavailable, reason: "source_unavailable"},
			"malformed id":     {ftid: "sbx-1", code: codes.InvalidArgument, reason: "invalid_request"},
			"no id at all":     {ftid: "", code: codes.InvalidArgument, reason: "invalid_request"},
			"other identifier": {ftid: "SBX0000005", want: []string{"payments"}, absent: []string{"monthly_totals"}},
		},
	}
	for _, svc := range newByName {
		cases[svc]["not found"] = outcome{p: nobody, code: codes.NotFound, reason: "subject_not_found"}
		cases[svc]["not identifiable"] = outcome{p: minh, code: codes.FailedPrecondition, reason: "subject_not_identifiable"}
		cases[svc]["source unavailable"] = outcome{p: paul, code: codes.Unavailable, reason: "source_unavailable"}
	}
	for svc, byCase := range cases {
		for name, want := range byCase {
			t.Run(svc+"/"+name, func(t *testing.T) {
				var resp protoreflect.Message
				var err error
				if svc == jspService {
					resp, err = d.callByID(t, conn, svc, want.ftid, "tarification_sociale")
				} else {
					resp, err = d.call(t, conn, svc, want.p, "tarification_sociale")
				}
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

// TestNewServicesTimeoutAndInvalidResponse: the timeout and
// invalid-response citizens misbehave in every new service.
func TestNewServicesTimeoutAndInvalidResponse(t *testing.T) {
	d := startDev(t, 300*time.Millisecond)
	conn := d.dial(t, devenv.FullConsumer)
	for _, svc := range append(newByName, jspService) {
		t.Run(svc, func(t *testing.T) {
			var err error
			if svc == jspService {
				_, err = d.callByID(t, conn, svc, "SBX0000091", "tarification_sociale")
			} else {
				_, err = d.call(t, conn, svc, emma, "tarification_sociale")
			}
			if code, reason, _ := reasonOf(err); code != codes.DeadlineExceeded || reason != "source_timeout" {
				t.Fatalf("timeout citizen: %s/%q (%v)", code, reason, err)
			}
			if svc == jspService {
				_, err = d.callByID(t, conn, svc, "SBX0000092", "tarification_sociale")
			} else {
				_, err = d.call(t, conn, svc, arthur, "tarification_sociale")
			}
			if code, reason, _ := reasonOf(err); code != codes.Internal || reason != "source_invalid_response" {
				t.Fatalf("invalid-response citizen: %s/%q (%v)", code, reason, err)
			}
		})
	}
}

// TestLimitedConsumerOnNewServices: the demo CCAS stays limited — status
// only on the minimum incomes and the AAH, monthly totals only on the
// payments, and no grant at all on schooling, national or civic service.
func TestLimitedConsumerOnNewServices(t *testing.T) {
	d := startDev(t, 2*time.Second)
	limited := d.dial(t, devenv.LimitedConsumer)
	exactly := func(t *testing.T, resp protoreflect.Message, want ...string) {
		t.Helper()
		got := setFields(resp)
		if len(got) != len(want) {
			t.Fatalf("fields %v, want exactly %v", got, want)
		}
		for _, f := range want {
			if !got[f] {
				t.Fatalf("fields %v, want exactly %v", got, want)
			}
		}
	}
	resp, err := d.call(t, limited, rsaService, ines, "aide_sociale_facultative")
	if err != nil {
		t.Fatal(err)
	}
	exactly(t, resp, "source", "is_beneficiary", "rights_start_date") // no single-parent increase
	resp, err = d.call(t, limited, aahService, elodie, "aide_sociale_facultative")
	if err != nil {
		t.Fatal(err)
	}
	exactly(t, resp, "source", "is_beneficiary")
	resp, err = d.callByID(t, limited, jspService, "SBX0000001", "aide_sociale_facultative")
	if err != nil {
		t.Fatal(err)
	}
	exactly(t, resp, "source", "monthly_totals")
	if _, err := d.call(t, limited, rsaService, ines, "aide_sociale_facultative", "with_increase"); err == nil {
		t.Fatal("a mask naming only an ungranted field was answered")
	} else if code, reason, _ := reasonOf(err); code != codes.PermissionDenied || reason != "scope_not_granted" {
		t.Fatalf("mask of an ungranted field: %s/%q", code, reason)
	}
	for _, svc := range []string{schoService, nsService, csService, asfService, aeehService} {
		if _, err := d.call(t, limited, svc, pupil, "aide_sociale_facultative"); err == nil {
			t.Fatalf("limited consumer answered on %s", svc)
		} else if code, reason, _ := reasonOf(err); code != codes.PermissionDenied || reason != "no_grant" {
			t.Fatalf("limited consumer on %s: %s/%q", svc, code, reason)
		}
	}
}

// TestReflectionListsTheSourceServices is what `grpcurl list` shows on
// relaisd dev: every source service of the catalogue, at least twelve.
func TestReflectionListsTheSourceServices(t *testing.T) {
	d := startDev(t, 2*time.Second)
	conn := d.dial(t, devenv.FullConsumer)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := reflectionv1.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.CloseSend()
	listed := map[string]bool{}
	for _, s := range resp.GetListServicesResponse().GetService() {
		listed[s.GetName()] = true
	}
	sources := 0
	for _, svc := range d.cat.Services() {
		if !listed[svc] {
			t.Errorf("%s is not listed", svc)
		}
		sources++
	}
	if sources < 12 {
		t.Fatalf("%d source services, want at least 12", sources)
	}
	for _, svc := range append(newByName, jspService) {
		if !listed[svc] {
			t.Errorf("new service %s is not listed (listed: %s)", svc, strings.Join(keys(listed), ", "))
		}
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
