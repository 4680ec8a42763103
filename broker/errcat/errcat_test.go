package errcat_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/relais-broker/relais/broker/errcat"
	"github.com/relais-broker/relais/internal/golden"
)

func TestDocsInStep(t *testing.T) {
	golden.Check(t, "../../docs/errors.md", errcat.Markdown())
}

func TestEntriesWellFormed(t *testing.T) {
	t.Parallel()
	seen := map[errcat.Reason]bool{}
	for _, e := range errcat.Entries() {
		if seen[e.Reason] {
			t.Errorf("duplicate reason %s", e.Reason)
		}
		seen[e.Reason] = true
		if e.Message == "" || strings.ToLower(e.Message) != e.Message || strings.HasSuffix(e.Message, ".") {
			t.Errorf("%s: message %q must be lower-case without a trailing period", e.Reason, e.Message)
		}
		if e.Code == codes.OK || e.Doc == "" {
			t.Errorf("%s: needs a non-OK code and a doc", e.Reason)
		}
	}
}

func TestStatusCarriesDetailsButNotCause(t *testing.T) {
	t.Parallel()
	err := errcat.Wrap(errcat.RateLimited, errors.New("secret cause DUPONT")).WithRetryAfter(1500 * time.Millisecond)
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.ResourceExhausted || st.Message() != "rate limit exceeded" {
		t.Fatalf("status = %v", st)
	}
	var info *errdetails.ErrorInfo
	var retry *errdetails.RetryInfo
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			info = d
		case *errdetails.RetryInfo:
			retry = d
		}
	}
	if info.GetReason() != "rate_limited" || info.GetDomain() != errcat.Domain {
		t.Errorf("ErrorInfo = %v", info)
	}
	if retry.GetRetryDelay().AsDuration() != 1500*time.Millisecond {
		t.Errorf("RetryInfo = %v", retry)
	}
	if strings.Contains(st.String(), "DUPONT") {
		t.Error("the cause leaked into the status")
	}
}

func TestUnknownErrorsBecomeInternal(t *testing.T) {
	t.Parallel()
	if got := errcat.From(errors.New("boom")); got.Reason != errcat.Internal {
		t.Errorf("From(plain) = %s", got.Reason)
	}
	if got := errcat.New("made_up"); got.Reason != errcat.Internal {
		t.Errorf("New(unknown) = %s", got.Reason)
	}
	wrapped := errors.Join(errors.New("ctx"), errcat.New(errcat.NoGrant))
	if got := errcat.From(wrapped); got.Reason != errcat.NoGrant {
		t.Errorf("From(wrapped) = %s", got.Reason)
	}
}
