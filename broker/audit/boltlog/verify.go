package boltlog

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"

	"github.com/relais-broker/relais/broker/audit/seal"
)

// Verify checks the log file at path offline with the operator's public
// key alone (seal.Verifier over the file's export). The file is opened
// read-only: stop the broker, or verify a copy, or verify online.
func Verify(path string, pub ed25519.PublicKey) (*Report, error) {
	return VerifyWith(path, pub, nil)
}

// VerifyWith verifies the log at path like Verify, and against the
// checkpoints exported earlier (JSON lines of checkpoints, or an export
// of seal.Entry whose checkpoints are taken): each must be signed by pub
// and still match the chain, unless retention purged its records.
func VerifyWith(path string, pub ed25519.PublicKey, exported io.Reader) (*Report, error) {
	var expected []seal.Checkpoint
	if exported != nil {
		var err error
		if expected, err = seal.ReadCheckpoints(exported); err != nil {
			return nil, fmt.Errorf("exported checkpoints: %w", err)
		}
	}
	st, err := OpenStoreReadOnly(path)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	v := seal.NewVerifier(pub)
	for _, c := range expected {
		v.Expect(c)
	}
	if err := v.Consume(func(fn func(seal.Entry) error) error { return st.Export(context.Background(), fn) }); err != nil {
		return nil, err
	}
	return v.Report(), nil
}

// ExportFile writes the export of the log file at path (a stopped broker,
// or a copy) as JSON lines of seal.Entry, and returns how many entries.
func ExportFile(ctx context.Context, path string, w io.Writer) (int, error) {
	st, err := OpenStoreReadOnly(path)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	sw := seal.NewWriter(w)
	err = st.Export(ctx, sw.Write)
	return sw.N, err
}

// ExportCheckpointsFile is ExportCheckpoints on a log file opened
// read-only (the broker stopped).
func ExportCheckpointsFile(path string, w io.Writer) (int, error) {
	st, err := OpenStoreReadOnly(path)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	return exportCheckpoints(st, w)
}

// exportCheckpoints writes the checkpoints as stored, one JSON per line.
func exportCheckpoints(st *Store, w io.Writer) (int, error) {
	return seal.WriteCheckpoints(func(fn func(seal.Entry) error) error { return st.Export(context.Background(), fn) }, w)
}
