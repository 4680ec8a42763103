package resilience

import (
	"context"
	"time"

	"github.com/relais-broker/relais/broker/source"
)

// Probe calls the source through the guard every interval with a
// designated fictitious subject, so that Status reflects the source even
// when no consumer calls it (and a half-open breaker gets its probe). The
// probe's calls count in Status like any other; they are not audited,
// since they concern no real person. It runs until ctx ends.
func (g *Guard) Probe(ctx context.Context, req source.Request, interval, timeout time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, timeout)
		_, _ = g.Fetch(pctx, req)
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
