package subject

import (
	"errors"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
)

// Domain identifier kinds, as the request fields that carry them are named.
const (
	INE             = "ine"
	FranceTravailID = "france_travail_id"
)

// CitizenAccessToken is the request field that designates the subject by
// the citizen's own login (an OpenID Connect access token).
const CitizenAccessToken = "citizen_access_token"

// Designation is how a typed request names its subject: a domain
// identifier (Kind and Value), a civil identity, or the citizen's access
// token (Token; the broker resolves it into an Identity before any
// adapter sees the request). The zero value means the request names
// nobody.
type Designation struct {
	Kind, Value string
	Identity    *commonv1.SubjectIdentity
	// Token is a secret: never log, store nor hash it.
	Token string
}

// Typed reports whether the consumer typed the subject (an identity or a
// domain identifier) rather than passing the citizen's token.
func (d Designation) Typed() bool { return d.Token == "" && (d.Kind != "" || d.Identity != nil) }

// Designate reads a typed request's subject, whatever its fields are
// called: a set citizen_access_token first (so that a token is never
// mistaken for a typed subject), then a set ine or france_travail_id
// field, else the first set field of type SubjectIdentity (subject,
// identity). The broker, the sandbox and the adapters all read requests
// through it.
func Designate(req proto.Message) Designation {
	r := req.ProtoReflect()
	df := designationFields(r.Descriptor())
	if df.token != nil && r.Has(df.token) {
		return Designation{Token: r.Get(df.token).String()}
	}
	for _, k := range df.kinds {
		if r.Has(k.field) {
			return Designation{Kind: k.kind, Value: r.Get(k.field).String()}
		}
	}
	if df.identity != nil && r.Has(df.identity) {
		id, _ := r.Get(df.identity).Message().Interface().(*commonv1.SubjectIdentity)
		return Designation{Identity: id}
	}
	return Designation{}
}

// fields are the designating fields of one request type, looked up once
// per type (Designate runs several times per call: the hot path).
type fields struct {
	token    protoreflect.FieldDescriptor
	kinds    []kindField
	identity protoreflect.FieldDescriptor
}

type kindField struct {
	kind  string
	field protoreflect.FieldDescriptor
}

// byType caches fields by message descriptor (not by name: a dynamic
// message of the same name has descriptors of its own).
var byType sync.Map // protoreflect.MessageDescriptor → *fields

func designationFields(md protoreflect.MessageDescriptor) *fields {
	if f, ok := byType.Load(md); ok {
		return f.(*fields)
	}
	all := md.Fields()
	df := &fields{identity: identityField(md)}
	if f := all.ByName(CitizenAccessToken); f != nil && f.Kind() == protoreflect.StringKind {
		df.token = f
	}
	for _, kind := range []string{INE, FranceTravailID} {
		if f := all.ByName(protoreflect.Name(kind)); f != nil && f.Kind() == protoreflect.StringKind {
			df.kinds = append(df.kinds, kindField{kind, f})
		}
	}
	got, _ := byType.LoadOrStore(md, df)
	return got.(*fields)
}

var identityName = (&commonv1.SubjectIdentity{}).ProtoReflect().Descriptor().FullName()

// identityField is the first field of type SubjectIdentity of a request.
func identityField(md protoreflect.MessageDescriptor) protoreflect.FieldDescriptor {
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		if f.Message() != nil && f.Message().FullName() == identityName && f.Cardinality() != protoreflect.Repeated {
			return f
		}
	}
	return nil
}

// CanHoldIdentity reports whether requests of this type can designate
// their subject by a civil identity, which a resolved citizen login
// becomes (SetIdentity).
func CanHoldIdentity(md protoreflect.MessageDescriptor) bool { return identityField(md) != nil }

// ErrNoIdentityField is returned by SetIdentity for a request that has no
// civil-identity field (it designates by a domain identifier only).
var ErrNoIdentityField = errors.New("subject: request has no civil-identity field")

// SetIdentity rewrites a request designated by citizen_access_token into
// the same request designated by the civil identity id: the token is
// cleared and id set in the subject field (subject, or identity inside
// the oneof), so that everything after the broker's designation step sees
// exactly what a typed identity gives. id is cloned.
func SetIdentity(req proto.Message, id *commonv1.SubjectIdentity) error {
	r := req.ProtoReflect()
	f := identityField(r.Descriptor())
	if f == nil {
		return ErrNoIdentityField
	}
	if tf := r.Descriptor().Fields().ByName(CitizenAccessToken); tf != nil {
		r.Clear(tf)
	}
	r.Set(f, protoreflect.ValueOfMessage(proto.Clone(id).ProtoReflect()))
	return nil
}
