package boltrem_test

import (
	"path/filepath"
	"testing"

	"github.com/relais-broker/relais/broker/reminders"
	"github.com/relais-broker/relais/broker/reminders/boltrem"
	"github.com/relais-broker/relais/broker/reminders/remindertest"
)

func TestBoltStoreConforms(t *testing.T) {
	t.Parallel()
	remindertest.Run(t, func(t *testing.T) (reminders.Store, func(t *testing.T) reminders.Store) {
		path := filepath.Join(t.TempDir(), "reminders.db")
		s, err := boltrem.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		closed := false
		t.Cleanup(func() {
			if !closed {
				s.Close()
			}
		})
		return s, func(t *testing.T) reminders.Store {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			closed = true
			s2, err := boltrem.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s2.Close() })
			return s2
		}
	})
}
