package admin

import "context"

// targetKey carries, during an admin call, where the handler writes what
// the action acted on (serials, a SIRET, a grant id) for the audit record.
type targetKey struct{}

// noteKey carries where the handler writes the operator's reason for the
// action (the requests' reason field), for the audit record.
type noteKey struct{}

func setTarget(ctx context.Context, target string) {
	if p, ok := ctx.Value(targetKey{}).(*string); ok {
		*p = target
	}
}

func setNote(ctx context.Context, note string) {
	if p, ok := ctx.Value(noteKey{}).(*string); ok {
		*p = note
	}
}
