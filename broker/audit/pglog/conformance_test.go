package pglog_test

import (
	"context"
	"testing"

	"github.com/relais-broker/relais/broker/audit/auditlog"
	"github.com/relais-broker/relais/broker/audit/audittest"
	"github.com/relais-broker/relais/broker/audit/pglog"
	"github.com/relais-broker/relais/internal/pgtest"
)

// TestConformance runs the audit storage suite, each case on a fresh
// migrated database, the storage on a pool of its own (OpenDSN).
func TestConformance(t *testing.T) {
	c := pgtest.Shared(t)
	dsns := map[auditlog.Storage]string{}
	openDSN := func(t *testing.T, dsn, chain string) auditlog.Storage {
		st, err := pglog.OpenDSN(context.Background(), dsn, pglog.Options{Chain: chain})
		if err != nil {
			t.Fatal(err)
		}
		dsns[st] = dsn
		return st
	}
	for _, chain := range []string{"", "replica-a"} {
		t.Run("chain="+chain, func(t *testing.T) {
			audittest.Run(t, func(t *testing.T) auditlog.Storage {
				return openDSN(t, migrated(t, c), chain)
			}, audittest.WithChain(chain), audittest.WithReopen(func(t *testing.T, closed auditlog.Storage) auditlog.Storage {
				return openDSN(t, dsns[closed], chain)
			}))
		})
	}
}
