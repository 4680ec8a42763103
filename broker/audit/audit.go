// Package audit defines the trace the broker keeps of every access: who
// called, when, for whom and why, which fields were asked and returned and
// how it ended. A record never holds an attribute value nor the clear
// identity of the subject. Recorder is the contract the broker writes
// through; the broker returns no data unless Append succeeded.
package audit

import (
	"context"
	"sync"
	"time"
)

// Record is the trace of one call to the data API.
type Record struct {
	Time      time.Time
	RequestID string
	// TraceID is the OpenTelemetry trace id of the call, when traced.
	TraceID       string
	Consumer      string // SIRET from the certificate
	Operator      string // operator id, for admin actions
	Target        string // what an admin action acted on (serials, SIRET)
	CertSerial    string
	Recipient     string // SIRET from the access context
	Method        string
	Purpose       string
	CaseReference string
	Agent         string
	// Subject is the subject's pseudonym (broker/subject), never the
	// clear identity; empty for admin actions.
	Subject string
	// FieldsRequested and FieldsReturned are field mask paths of the
	// response ("value", "address.postal_code"); records written before
	// per-field masks hold scope names.
	FieldsRequested []string
	FieldsReturned  []string
	Source          string
	Code            string // gRPC code name
	Reason          string // catalogue reason, empty on success
	Latency         time.Duration
	// Note is the operator's stated reason for an admin action (a
	// suspension, a revocation). Omitted when empty, so that records
	// written before it existed keep their exact bytes and hashes.
	Note string `json:",omitempty"`
	// SubjectOrigin is how the subject was designated: empty for a typed
	// identity or identifier (every record written before citizen login
	// existed), OriginCitizenLogin when the broker read it from the
	// citizen's own login. Omitted when empty (old hashes unchanged).
	SubjectOrigin string `json:",omitempty"`
	// DiscloseAfter is when the citizen may see this access (a grant's
	// deferred disclosure); zero means at once. DisclosureReference is
	// the legal reference of the deferral. Both omitted when zero.
	DiscloseAfter       time.Time `json:",omitzero"`
	DisclosureReference string    `json:",omitempty"`
}

// OriginCitizenLogin is the SubjectOrigin of a call whose subject was
// designated by the citizen's login (registry.DesignationCitizenLogin).
const OriginCitizenLogin = "citizen_login"

// Recorder appends records durably. Append returns only once the record
// is durable; an error means the call must not return data.
type Recorder interface {
	Append(ctx context.Context, r Record) error
}

// Filter selects records for queries; zero fields match everything. Every
// audit storage (bbolt, PostgreSQL) answers the same Filter the same way.
type Filter struct {
	Consumer, Method, Code string
	// From is inclusive, To exclusive.
	From, To time.Time
	// DeferredOnly keeps the records whose disclosure to the citizen is
	// deferred (DiscloseAfter set), for operators listing them.
	DeferredOnly bool
	// Limit bounds the answer (1000 when zero).
	Limit int
}

// DefaultLimit is the Limit of a Filter that sets none.
const DefaultLimit = 1000

// Match reports whether r passes f, so that storages filtering in Go and
// those filtering in SQL can be checked against one definition.
func (f Filter) Match(r Record) bool {
	return (f.Consumer == "" || r.Consumer == f.Consumer) && (f.Method == "" || r.Method == f.Method) &&
		(f.Code == "" || r.Code == f.Code) && (f.From.IsZero() || !r.Time.Before(f.From)) && (f.To.IsZero() || r.Time.Before(f.To)) &&
		(!f.DeferredOnly || !r.DiscloseAfter.IsZero())
}

// Memory is an in-memory Recorder for tests, which SetFail can make
// fail. The broker's audit log is auditlog.Log over a storage.
type Memory struct {
	mu      sync.Mutex
	records []Record
	fail    error
}

// Append implements Recorder.
func (m *Memory) Append(_ context.Context, r Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.records = append(m.records, r)
	return nil
}

// Records returns a copy of what was appended.
func (m *Memory) Records() []Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Record(nil), m.records...)
}

// SetFail makes Append fail with err (nil restores it), to exercise the
// fail-closed path in tests.
func (m *Memory) SetFail(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fail = err
}
