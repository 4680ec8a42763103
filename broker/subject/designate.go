package subject

import (
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
)

// Domain identifier kinds, as the request fields that carry them are named.
const (
	INE             = "ine"
	FranceTravailID = "france_travail_id"
)

// Designation is how a typed request names its subject: a domain
// identifier (Kind and Value), or a civil identity. The zero value means
// the request names nobody.
type Designation struct {
	Kind, Value string
	Identity    *commonv1.SubjectIdentity
}

// Designate reads a typed request's subject, whatever its fields are
// called: a set ine or france_travail_id field first, else the first set
// field of type SubjectIdentity (subject, identity). The broker, the
// sandbox and the adapters all read requests through it.
func Designate(req proto.Message) Designation {
	r := req.ProtoReflect()
	fields := r.Descriptor().Fields()
	for _, kind := range []string{INE, FranceTravailID} {
		if f := fields.ByName(protoreflect.Name(kind)); f != nil && f.Kind() == protoreflect.StringKind && r.Has(f) {
			return Designation{Kind: kind, Value: r.Get(f).String()}
		}
	}
	want := (&commonv1.SubjectIdentity{}).ProtoReflect().Descriptor().FullName()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		if f.Message() != nil && f.Message().FullName() == want && r.Has(f) {
			id, _ := r.Get(f).Message().Interface().(*commonv1.SubjectIdentity)
			return Designation{Identity: id}
		}
	}
	return Designation{}
}
