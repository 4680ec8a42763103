// Package source defines the contract between the broker and the source
// adapters that fetch citizen attributes on demand from the administrations
// that hold them. The broker owns this contract; adapters (in adapters/)
// implement it. Nothing here caches or stores attributes: each Fetch is a
// live call.
package source

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relais-broker/relais/broker/scope"
)

// Request is one validated, authorised call handed to an adapter.
type Request struct {
	// Method is the full gRPC method name, for example
	// "/relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient".
	Method string
	// Input is the typed request message as the consumer sent it, already
	// validated. Adapters read the subject (civil identity or domain
	// identifier) from it.
	Input proto.Message
	// Scopes are the only scopes the caller may receive. An adapter should
	// fetch no more than these; the broker strips anything else anyway.
	Scopes scope.Set
}

// Adapter fetches the attributes of one typed service from a source.
//
// Contract:
//   - Fetch returns a message of the method's response type, or an error.
//   - It honours ctx: it returns promptly once ctx is done, with an error
//     that wraps ErrTimeout when the deadline passed.
//   - Errors wrap exactly one of the sentinel errors below so the broker
//     can answer the right status; their text never holds personal data
//     (no names, dates or identifiers of the subject).
//   - It is safe for concurrent use.
type Adapter interface {
	Fetch(ctx context.Context, req Request) (proto.Message, error)
}

// Sentinel errors an adapter wraps to say what went wrong.
var (
	// ErrSubjectNotFound: the source knows no such person.
	ErrSubjectNotFound = errors.New("subject not found")
	// ErrNotIdentifiable: the identity matches several people or is too
	// incomplete for the source to decide.
	ErrNotIdentifiable = errors.New("subject not identifiable")
	// ErrUnavailable: the source is down or refused the call.
	ErrUnavailable = errors.New("source unavailable")
	// ErrTimeout: the source did not answer within the deadline.
	ErrTimeout = errors.New("source timeout")
	// ErrInvalidResponse: the source answered something the adapter could
	// not map to the typed response.
	ErrInvalidResponse = errors.New("source response invalid")
)

// RetryableError is an ErrUnavailable the source said when to retry.
type RetryableError struct {
	// RetryAfter is how long the source asked callers to wait.
	RetryAfter time.Duration
	// Cause is what the adapter observed, without personal data.
	Cause error
}

// Error implements error.
func (e *RetryableError) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("source unavailable, retry after %s: %v", e.RetryAfter, e.Cause)
	}
	return fmt.Sprintf("source unavailable, retry after %s", e.RetryAfter)
}

// Unwrap makes errors.Is(err, ErrUnavailable) true.
func (e *RetryableError) Unwrap() []error { return []error{ErrUnavailable, e.Cause} }
