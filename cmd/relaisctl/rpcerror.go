package main

import (
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
)

// describe renders a gRPC error for an operator: code, message, and the
// catalogue reason and field violations when the broker gave them.
func describe(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return err.Error()
	}
	out := fmt.Sprintf("%s: %s", st.Code(), st.Message())
	for _, d := range st.Details() {
		switch x := d.(type) {
		case *errdetails.ErrorInfo:
			out += " (reason " + x.GetReason() + ")"
		case *errdetails.BadRequest:
			for _, v := range x.GetFieldViolations() {
				out += fmt.Sprintf("; %s: %s", v.GetField(), v.GetDescription())
			}
		}
	}
	return out
}
