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
	Subject         string
	FieldsRequested []string // scope names
	FieldsReturned  []string // scope names
	Source          string
	Code            string // gRPC code name
	Reason          string // catalogue reason, empty on success
	Latency         time.Duration
}

// Recorder appends records durably. Append returns only once the record
// is durable; an error means the call must not return data.
type Recorder interface {
	Append(ctx context.Context, r Record) error
}

// Memory is an in-memory Recorder for tests, which SetFail can make
// fail. The broker's audit log is boltlog.
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
