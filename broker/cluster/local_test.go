package cluster_test

import (
	"errors"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/cluster"
	"github.com/relais-broker/relais/broker/cluster/clustertest"
)

func TestLocalConforms(t *testing.T) {
	clustertest.Run(t, func(t *testing.T, clock func() time.Time) clustertest.Nodes {
		return clustertest.Nodes{First: cluster.NewLocal(clock), Interval: cluster.DefaultInterval}
	})
}

func TestJoinFirstFreeAlone(t *testing.T) {
	ctx := t.Context()
	r := cluster.Replica{StartedAt: time.Now()}
	if _, err := cluster.JoinFirstFree(ctx, cluster.NewLocal(nil), r); !errors.Is(err, cluster.ErrInvalid) {
		t.Fatalf("no ids = %v, want ErrInvalid", err)
	}
	l := cluster.NewLocal(nil)
	if id, err := cluster.JoinFirstFree(ctx, l, r, "dev-1", "dev-2"); err != nil || id != "dev-1" {
		t.Fatalf("JoinFirstFree = %q, %v; want dev-1", id, err)
	}
	if _, err := cluster.JoinFirstFree(ctx, l, r, "dev-2"); !errors.Is(err, cluster.ErrJoined) {
		t.Fatalf("a second join = %v, want ErrJoined (not a search for another id)", err)
	}
}
