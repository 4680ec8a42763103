package errcat

import (
	"errors"
	"fmt"
	"strings"

	"buf.build/go/protovalidate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
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
	return FromViolations(verr)
}

// FromViolations turns protovalidate violations into invalid_* with one
// BadRequest field violation each. The reason follows the first
// violation: the recipient, the subject, or anything else.
func FromViolations(verr *protovalidate.ValidationError) *Error {
	reason := InvalidRequest
	var fv []*errdetails.BadRequest_FieldViolation
	for i, v := range verr.Violations {
		field := protovalidate.FieldPathString(v.Proto.GetField())
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
			}
		}
	}
	return New(reason).WithViolations(fv)
}
