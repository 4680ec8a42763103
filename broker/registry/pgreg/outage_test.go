package pgreg_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/registry/pgreg"
	"github.com/relais-broker/relais/broker/registry/registrytest"
	"github.com/relais-broker/relais/internal/pgdb"
	"github.com/relais-broker/relais/internal/pgtest"
)

// TestOutageServesTheSnapshotAndRecoversWithoutReopen stops the server of
// a cluster of its own under an open Store: the per-call reads keep
// answering from the snapshot, writes and storage reads fail with
// ErrUnavailable (without the password in the message) and change
// nothing, and once the server is back the same Store writes again.
func TestOutageServesTheSnapshotAndRecoversWithoutReopen(t *testing.T) {
	ctx := context.Background()
	c := pgtest.Start(t)
	dsn := c.NewDatabase(t)
	if _, err := pgdb.Migrate(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	login := c.NewLogin(t, dsn, "relais_broker")
	cfg, err := pgx.ParseConfig(login)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgdb.Connect(ctx, login)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s, err := pgreg.Open(ctx, pool, pgreg.Options{Clock: func() time.Time { return registrytest.Start }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddConsumer(ctx, registry.Consumer{SIRET: registrytest.SiretA, Name: "A"}); err != nil {
		t.Fatal(err)
	}
	g, err := s.AddGrant(ctx, registrytest.Grant(registrytest.SiretA))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeCredentials(ctx, "bad1"); err != nil {
		t.Fatal(err)
	}
	version := s.Version()

	c.Stop(t)

	if cn, err := s.Consumer(ctx, registrytest.SiretA); err != nil || cn.Status != registry.StatusActive {
		t.Fatalf("Consumer during the outage: %+v %v", cn, err)
	}
	if gs, err := s.Grants(ctx, registrytest.SiretA, registrytest.FQ); err != nil || len(gs) != 1 || gs[0].ID != g.ID {
		t.Fatalf("Grants during the outage: %v %v", gs, err)
	}
	if !s.Revoked("bad1") {
		t.Fatal("revocation forgotten during the outage")
	}
	if cs, err := s.ListConsumers(ctx); err != nil || len(cs) != 1 {
		t.Fatalf("ListConsumers during the outage: %v %v", cs, err)
	}
	failures := map[string]error{}
	_, failures["SetConsumerStatus"] = s.SetConsumerStatus(ctx, registrytest.SiretA, registry.StatusSuspended)
	_, failures["AddGrant"] = s.AddGrant(ctx, registrytest.Grant(registrytest.SiretA))
	_, failures["RevokeGrant"] = s.RevokeGrant(ctx, g.ID)
	_, failures["RevokeCredentials"] = s.RevokeCredentials(ctx, "bad2")
	_, failures["Credential"] = s.Credential(ctx, "bad1")
	_, failures["ListCredentials"] = s.ListCredentials(ctx, "")
	failures["Reload"] = s.Reload(ctx)
	for name, err := range failures {
		if !errors.Is(err, registry.ErrUnavailable) {
			t.Errorf("%s during the outage: %v, want ErrUnavailable", name, err)
			continue
		}
		if strings.Contains(err.Error(), cfg.Password) {
			t.Errorf("%s: the error shows the password: %v", name, err)
		}
	}
	if s.Version() != version || s.Revoked("bad2") {
		t.Fatal("failed writes changed the snapshot")
	}
	if cn, _ := s.Consumer(ctx, registrytest.SiretA); cn.Status != registry.StatusActive {
		t.Fatal("a failed suspension is visible")
	}

	c.Restart(t)

	deadline := time.Now().Add(15 * time.Second)
	for attempt := 1; ; attempt++ {
		_, err := s.SetConsumerStatus(ctx, registrytest.SiretA, registry.StatusSuspended)
		if err == nil {
			t.Logf("first write after the restart succeeded at attempt %d", attempt)
			break
		}
		if !errors.Is(err, registry.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("write after the restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // the pool replacing its dead connections
	}
	if cn, _ := s.Consumer(ctx, registrytest.SiretA); cn.Status != registry.StatusSuspended {
		t.Fatal("the write after the restart is not visible")
	}
	if s.Version() != version+1 {
		t.Fatalf("version %d after the restart, want %d: the failed writes left a trace", s.Version(), version+1)
	}
	if _, err := s.Credential(ctx, "bad1"); err != nil {
		t.Fatalf("storage read after the restart: %v", err)
	}
}
