package boltreg_test

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/registry/registrytest"
)

// TestGrantsWrittenBeforeCitizenLogin: a grant stored without the
// designations and disclosure keys (every file written before they
// existed) reads as typed only, disclosed at once; a plain grant is still
// stored without them, and a grant with them keeps them in the file.
func TestGrantsWrittenBeforeCitizenLogin(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "r.db")
	s := open(t, path)
	if _, err := s.AddConsumer(ctx, registry.Consumer{SIRET: siretA, Name: "A"}); err != nil {
		t.Fatal(err)
	}
	plain, err := s.AddGrant(ctx, registrytest.Grant(siretA))
	if err != nil {
		t.Fatal(err)
	}
	deferred := registrytest.Grant(siretA)
	deferred.Designations = []string{registry.DesignationCitizenLogin}
	deferred.Disclosure = registry.Disclosure{Delay: 8760 * time.Hour, LegalReference: "CSS art. L114-9"}
	deferred, err = s.AddGrant(ctx, deferred)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	var plainRaw, deferredRaw []byte
	_ = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("grants"))
		_ = b.ForEach(func(k, v []byte) error {
			if bytes.Contains(v, []byte(plain.ID)) {
				plainRaw = bytes.Clone(v)
			}
			if bytes.Contains(v, []byte(deferred.ID)) {
				deferredRaw = bytes.Clone(v)
			}
			return nil
		})
		return nil
	})
	db.Close()
	if plainRaw == nil || deferredRaw == nil {
		t.Fatal("grants not found in the file")
	}
	for _, key := range []string{`"designations"`, `"disclosure"`} {
		if bytes.Contains(plainRaw, []byte(key)) {
			t.Errorf("a plain grant is stored with %s: %s", key, plainRaw)
		}
	}
	if !bytes.Contains(deferredRaw, []byte(`"designations":["citizen_login"]`)) ||
		!bytes.Contains(deferredRaw, []byte(`"disclosure":{"delay_seconds":31536000,"legal_reference":"CSS art. L114-9"}`)) {
		t.Errorf("a grant with designations and disclosure is stored as %s", deferredRaw)
	}

	s = open(t, path)
	defer s.Close()
	gs, err := s.Grants(ctx, siretA, registrytest.FQ)
	if err != nil || len(gs) != 2 {
		t.Fatalf("grants after reopen: %v, %v", gs, err)
	}
	for _, g := range gs {
		switch g.ID {
		case plain.ID:
			if g.Designations != nil || g.Disclosure != (registry.Disclosure{}) || !g.Allows(registry.DesignationTyped) || g.Allows(registry.DesignationCitizenLogin) {
				t.Errorf("old-form grant read as %+v", g)
			}
		case deferred.ID:
			if len(g.Designations) != 1 || g.Designations[0] != registry.DesignationCitizenLogin || g.Disclosure != deferred.Disclosure || g.Allows(registry.DesignationTyped) {
				t.Errorf("grant read as %+v, want %+v", g, deferred)
			}
		}
	}
}
