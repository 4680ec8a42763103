package boltreg_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/registry/boltreg"
	"github.com/relais-broker/relais/broker/registry/registrytest"
)

// TestConformance runs the registry.Store suite on a real bbolt file.
func TestConformance(t *testing.T) {
	registrytest.Run(t, func(t *testing.T, clock func() time.Time) registry.Store {
		s, err := boltreg.Open(filepath.Join(t.TempDir(), "registry.db"), boltreg.Options{Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
