package seglog

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"

	"github.com/relais-broker/relais/broker/audit/seal"
)

// Verify checks the log directory dir offline with the operator's public
// key (and the keys rotated out, earlier): the frames' checksums, then
// seal.Verifier over the records and checkpoints. The directory is
// opened read-only and changed in nothing: stop the broker, or verify a
// copy, or verify online.
func Verify(dir string, pub ed25519.PublicKey, earlier ...ed25519.PublicKey) (*seal.Report, error) {
	return VerifyWith(dir, pub, nil, earlier...)
}

// VerifyWith verifies like Verify, and against checkpoints exported
// earlier (JSON lines of checkpoints, or an export of seal.Entry): each
// must be signed and still match the chain, unless retention purged its
// records — what catches records and checkpoints truncated together.
func VerifyWith(dir string, pub ed25519.PublicKey, exported io.Reader, earlier ...ed25519.PublicKey) (*seal.Report, error) {
	var expected []seal.Checkpoint
	if exported != nil {
		var err error
		if expected, err = seal.ReadCheckpoints(exported); err != nil {
			return nil, fmt.Errorf("exported checkpoints: %w", err)
		}
	}
	st, err := OpenStoreReadOnly(dir)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	v := seal.NewVerifier(pub, earlier...)
	for _, c := range expected {
		v.Expect(c)
	}
	sn, err := st.snap()
	if err != nil {
		return nil, err
	}
	next := sn.floor() + 1 // the record expected next, to name a damaged frame
	err = v.Consume(func(fn func(seal.Entry) error) error {
		return st.export(context.Background(), sn, func(e seal.Entry) error {
			if err := fn(e); err != nil {
				return err
			}
			if seq, ok := rawSeq(e.Record); ok && e.Record != nil {
				next = seq + 1
			}
			return nil
		})
	})
	var bad *badFrame
	switch {
	case errors.As(err, &bad):
		rep := v.Report()
		rep.Problem = fmt.Sprintf("record %d: %s at offset %d of segment %s", next, bad.Why, bad.Offset, bad.Segment)
		rep.Chain, rep.BadSeq = "", next
		return rep, nil
	case err != nil:
		return nil, err
	}
	return v.Report(), nil
}

// ExportDir writes the export of the log directory dir (a stopped broker,
// or a copy) as JSON lines of seal.Entry, and returns how many entries.
func ExportDir(ctx context.Context, dir string, w io.Writer) (int, error) {
	st, err := OpenStoreReadOnly(dir)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	sw := seal.NewWriter(w)
	err = st.Export(ctx, sw.Write)
	return sw.N, err
}

// ExportCheckpointsDir writes every checkpoint of the log directory dir
// as JSON lines: what the operator archives out of reach (VerifyWith).
func ExportCheckpointsDir(dir string, w io.Writer) (int, error) {
	st, err := OpenStoreReadOnly(dir)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	return exportCheckpoints(st, w)
}

// ExportCheckpoints writes every checkpoint of the open log as JSON lines.
func (l *Log) ExportCheckpoints(w io.Writer) (int, error) { return exportCheckpoints(l.store, w) }

func exportCheckpoints(st *Store, w io.Writer) (int, error) {
	return seal.WriteCheckpoints(func(fn func(seal.Entry) error) error { return st.Export(context.Background(), fn) }, w)
}
