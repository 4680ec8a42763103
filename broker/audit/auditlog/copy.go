package auditlog

import (
	"context"
	"errors"
	"fmt"

	"github.com/relais-broker/relais/broker/audit/seal"
)

// copyBatch is how many records Copy commits at once.
const copyBatch = 1000

// Copy writes the chain src exports (its boundary, records and
// checkpoints, bytes unchanged) into dst, which must be empty: the
// migration from one storage to another (relaisctl audit store migrate:
// an audit.db to a segment directory). dst's Commit checks every batch
// follows the chain (Follow), so a damaged source stops the copy. It
// returns the records copied; on error dst holds a prefix of the chain.
func Copy(ctx context.Context, dst Storage, src func(ctx context.Context, fn func(seal.Entry) error) error) (int, error) {
	h, err := dst.Head(ctx)
	if err != nil {
		return 0, err
	}
	if h != (seal.Head{}) {
		return 0, errors.New("audit: copy: the destination log is not empty")
	}
	var (
		recs []seal.Sealed
		cps  []seal.Checkpoint
		n    int
	)
	flush := func() error {
		if len(recs) == 0 && len(cps) == 0 {
			return nil
		}
		if err := dst.Commit(ctx, recs, cps); err != nil {
			return fmt.Errorf("audit: copy: %w", err)
		}
		n += len(recs)
		recs, cps = recs[:0], cps[:0]
		return nil
	}
	err = src(ctx, func(e seal.Entry) error {
		if e.Checkpoint != nil {
			cps = append(cps, *e.Checkpoint)
			return nil
		}
		// A checkpoint comes right after the record of its seq: a batch
		// ends before a record, never between a record and its checkpoint.
		if len(recs) >= copyBatch {
			if err := flush(); err != nil {
				return err
			}
		}
		s, err := seal.Unseal(e.Record)
		if err != nil {
			return fmt.Errorf("audit: copy: %w", err)
		}
		recs = append(recs, s)
		return nil
	})
	if err != nil {
		return n, err
	}
	return n, flush()
}
