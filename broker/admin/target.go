package admin

import "context"

// targetKey carries, during an admin call, where the handler writes what
// the action acted on (serials, a SIRET, a grant id) for the audit record.
type targetKey struct{}

func setTarget(ctx context.Context, target string) {
	if p, ok := ctx.Value(targetKey{}).(*string); ok {
		*p = target
	}
}
