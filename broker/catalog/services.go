package catalog

import (
	"google.golang.org/protobuf/reflect/protoreflect"

	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
	healthcoverv1 "github.com/relais-broker/relais/proto/relais/healthcover/v1"
	jobseekerv1 "github.com/relais-broker/relais/proto/relais/jobseeker/v1"
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
