package boltlog

import (
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"time"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/audit/auditlog"
	"github.com/relais-broker/relais/broker/audit/seal"
)

// Filter selects records (the filter every audit storage answers).
type Filter = audit.Filter

// Report is the outcome of a verification.
type Report = seal.Report

// Options configure Open: the writer's options with the key in a file.
type Options struct {
	// SigningKey signs checkpoints; required.
	SigningKey ed25519.PrivateKey
	// CheckpointEvery, CheckpointInterval, Retention, OnCommit, Clock and
	// OneCommitPerRecord are auditlog.Options'.
	CheckpointEvery    int
	CheckpointInterval time.Duration
	Retention          time.Duration
	OneCommitPerRecord bool
	OnCommit           func(d time.Duration, records int)
	Clock              func() time.Time
}

// Log is the embedded default: an audit log file with the group-commit
// writer over it. Everything but ExportCheckpoints is auditlog.Log's.
type Log struct {
	*auditlog.Log
	store *Store
}

// Open opens or creates the log file at path and starts its writer.
func Open(path string, o Options) (*Log, error) {
	if len(o.SigningKey) != ed25519.PrivateKeySize {
		return nil, errors.New("audit: an Ed25519 signing key is required")
	}
	st, err := OpenStore(path)
	if err != nil {
		return nil, err
	}
	l, err := auditlog.Open(st, auditlog.Options{
		Signer: seal.Ed25519Signer(o.SigningKey), CheckpointEvery: o.CheckpointEvery, CheckpointInterval: o.CheckpointInterval,
		Retention: o.Retention, OnCommit: o.OnCommit, Clock: o.Clock, OneCommitPerRecord: o.OneCommitPerRecord,
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	return &Log{Log: l, store: st}, nil
}

// Store is the file under the writer.
func (l *Log) Store() *Store { return l.store }

// VerifyLive verifies the open log from one read transaction.
func (l *Log) VerifyLive() (*Report, error) { return l.Verify(context.Background()) }

// ExportCheckpoints writes every checkpoint of the open log as JSON
// lines: what the operator hands to a third party (or an archive out of
// reach), so that a later truncation of the log — records and checkpoints
// together — is still detected (VerifyWith, relaisctl audit verify
// --checkpoints).
func (l *Log) ExportCheckpoints(w io.Writer) (int, error) { return exportCheckpoints(l.store, w) }
