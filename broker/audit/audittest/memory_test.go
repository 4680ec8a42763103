package audittest_test

import (
	"testing"

	"github.com/relais-broker/relais/broker/audit/auditlog"
	"github.com/relais-broker/relais/broker/audit/audittest"
)

// TestMemory runs the suite on the in-memory storage: the suite itself
// must pass on an implementation that follows the contract.
func TestMemory(t *testing.T) {
	audittest.Run(t, func(*testing.T) auditlog.Storage { return &audittest.Memory{} },
		audittest.WithReopen(func(_ *testing.T, closed auditlog.Storage) auditlog.Storage {
			return closed.(*audittest.Memory).Reopen()
		}))
}
