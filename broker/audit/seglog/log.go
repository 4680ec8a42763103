package seglog

import (
	"context"
	"crypto/ed25519"
	"errors"
	"time"

	"github.com/relais-broker/relais/broker/audit/auditlog"
	"github.com/relais-broker/relais/broker/audit/seal"
)

// Options configure Open: the writer's options with the key in memory,
// and the segments'.
type Options struct {
	// SigningKey signs checkpoints; required.
	SigningKey ed25519.PrivateKey
	// CheckpointEvery, CheckpointInterval, Retention, OneCommitPerRecord,
	// OnCommit, OnCommitError and Clock are auditlog.Options'.
	CheckpointEvery    int
	CheckpointInterval time.Duration
	Retention          time.Duration
	OneCommitPerRecord bool
	OnCommit           func(d time.Duration, records int)
	OnCommitError      func(err error)
	Clock              func() time.Time
	// Store configures the segments (size) and the index.
	Store StoreOptions
}

// Log is the embedded default: an audit log directory with the
// group-commit writer over it.
type Log struct {
	*auditlog.Log
	store *Store
}

// Open opens or creates the log directory dir and starts its writer.
func Open(dir string, o Options) (*Log, error) {
	if len(o.SigningKey) != ed25519.PrivateKeySize {
		return nil, errors.New("audit: an Ed25519 signing key is required")
	}
	st, err := OpenStore(dir, o.Store)
	if err != nil {
		return nil, err
	}
	l, err := auditlog.Open(st, auditlog.Options{
		Signer: seal.Ed25519Signer(o.SigningKey), CheckpointEvery: o.CheckpointEvery, CheckpointInterval: o.CheckpointInterval,
		Retention: o.Retention, OnCommit: o.OnCommit, OnCommitError: o.OnCommitError, Clock: o.Clock, OneCommitPerRecord: o.OneCommitPerRecord,
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	return &Log{Log: l, store: st}, nil
}

// Store is the directory under the writer.
func (l *Log) Store() *Store { return l.store }

// VerifyLive verifies the open log from one snapshot.
func (l *Log) VerifyLive() (*seal.Report, error) { return l.Verify(context.Background()) }
