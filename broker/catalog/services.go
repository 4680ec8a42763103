package catalog

import (
	"google.golang.org/protobuf/reflect/protoreflect"

	aahv1 "github.com/relais-broker/relais/proto/relais/aah/v1"
	activitybonusv1 "github.com/relais-broker/relais/proto/relais/activitybonus/v1"
	aeehv1 "github.com/relais-broker/relais/proto/relais/aeeh/v1"
	asfv1 "github.com/relais-broker/relais/proto/relais/asf/v1"
	civicservicev1 "github.com/relais-broker/relais/proto/relais/civicservice/v1"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
	healthcoverv1 "github.com/relais-broker/relais/proto/relais/healthcover/v1"
	jobseekerv1 "github.com/relais-broker/relais/proto/relais/jobseeker/v1"
	jobseekerpaymentsv1 "github.com/relais-broker/relais/proto/relais/jobseekerpayments/v1"
	nationalservicev1 "github.com/relais-broker/relais/proto/relais/nationalservice/v1"
	rsav1 "github.com/relais-broker/relais/proto/relais/rsa/v1"
	schoolingv1 "github.com/relais-broker/relais/proto/relais/schooling/v1"
	studentscholarshipv1 "github.com/relais-broker/relais/proto/relais/studentscholarship/v1"
	studentstatusv1 "github.com/relais-broker/relais/proto/relais/studentstatus/v1"
)

// SourceServices lists the typed source services of the public API, in the
// order they are documented. Adding a service means adding it here.
func SourceServices() []protoreflect.ServiceDescriptor {
	return []protoreflect.ServiceDescriptor{
		familyquotientv1.File_relais_familyquotient_v1_family_quotient_proto.Services().Get(0),
		studentstatusv1.File_relais_studentstatus_v1_student_status_proto.Services().Get(0),
		studentscholarshipv1.File_relais_studentscholarship_v1_student_scholarship_proto.Services().Get(0),
		jobseekerv1.File_relais_jobseeker_v1_job_seeker_proto.Services().Get(0),
		healthcoverv1.File_relais_healthcover_v1_health_cover_proto.Services().Get(0),
		// Sécurité sociale benefits published through the CNAV.
		rsav1.File_relais_rsa_v1_rsa_proto.Services().Get(0),
		activitybonusv1.File_relais_activitybonus_v1_activity_bonus_proto.Services().Get(0),
		aahv1.File_relais_aah_v1_aah_proto.Services().Get(0),
		asfv1.File_relais_asf_v1_asf_proto.Services().Get(0),
		aeehv1.File_relais_aeeh_v1_aeeh_proto.Services().Get(0),
		// Education, national and civic service, employment.
		schoolingv1.File_relais_schooling_v1_schooling_proto.Services().Get(0),
		nationalservicev1.File_relais_nationalservice_v1_national_service_proto.Services().Get(0),
		civicservicev1.File_relais_civicservice_v1_civic_service_proto.Services().Get(0),
		jobseekerpaymentsv1.File_relais_jobseekerpayments_v1_job_seeker_payments_proto.Services().Get(0),
	}
}

// Default is the catalogue of SourceServices. It panics if the generated
// descriptors are inconsistent, which TestDefault guards.
func Default() *Catalog {
	c, err := New(SourceServices()...)
	if err != nil {
		panic(err)
	}
	return c
}
