package errcat

import (
	"errors"
	"fmt"
	"strings"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"buf.build/go/protovalidate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Validate applies msg's protovalidate rules. It returns nil when msg is
// valid, else invalid_* with one BadRequest field violation per broken
// rule (see FromViolations), or internal when the validator itself fails.
func Validate(v protovalidate.Validator, msg proto.Message) *Error {
	err := v.Validate(msg)
	if err == nil {
		return nil
	}
	var verr *protovalidate.ValidationError
	if !errors.As(err, &verr) {
		return Wrap(Internal, fmt.Errorf("validator: %w", err))
	}
	return fromViolations(verr, msg.ProtoReflect().Descriptor())
}

// FromViolations turns protovalidate violations into invalid_* with one
// BadRequest field violation each. The reason follows the first
// violation: the recipient, the subject, or anything else.
func FromViolations(verr *protovalidate.ValidationError) *Error {
	return fromViolations(verr, nil)
}

// messageOneofRule is the rule id of (buf.validate.message).oneof, whose
// violations carry no field path.
const messageOneofRule = "message.oneof"

// oneofField names a message-level oneof violation by the first field of
// the rule's list: "subject" for {subject, citizen_access_token}, so that
// a request naming nobody is invalid_subject as before the token existed.
func oneofField(md protoreflect.MessageDescriptor) string {
	if md == nil {
		return ""
	}
	rules, ok := proto.GetExtension(md.Options(), validate.E_Message).(*validate.MessageRules)
	if !ok {
		return ""
	}
	for _, o := range rules.GetOneof() {
		if fs := o.GetFields(); len(fs) > 0 {
			return fs[0]
		}
	}
	return ""
}

func fromViolations(verr *protovalidate.ValidationError, md protoreflect.MessageDescriptor) *Error {
	reason := InvalidRequest
	var fv []*errdetails.BadRequest_FieldViolation
	for i, v := range verr.Violations {
		field := protovalidate.FieldPathString(v.Proto.GetField())
		if field == "" && v.Proto.GetRuleId() == messageOneofRule {
			field = oneofField(md)
		}
		if field == "" {
			// Message-level rules (the birth place one) have no field path of their own.
			field = protovalidate.FieldPathString(v.Proto.GetRule())
		}
		fv = append(fv, &errdetails.BadRequest_FieldViolation{
			Field:       field,
			Description: v.Proto.GetMessage(),
			Reason:      v.Proto.GetRuleId(),
		})
		if i == 0 {
			switch {
			case field == "access_context.recipient":
				reason = InvalidRecipient
			case strings.HasPrefix(field, "subject") || strings.HasPrefix(field, "identity"):
				reason = InvalidSubject
			case field == "citizen_access_token":
				// Malformed before the provider is asked: the same
				// reason as a token the provider does not know.
				reason = CitizenTokenInvalid
			}
		}
	}
	return New(reason).WithViolations(fv)
}
