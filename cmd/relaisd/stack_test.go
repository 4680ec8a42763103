package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"path/filepath"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker"
	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/audit/seglog"
	"github.com/relais-broker/relais/broker/ratelimit"
	"github.com/relais-broker/relais/broker/registry"
)

// TestDailyCountsAreRebuiltFromTheAuditLog: today's calls that reached a
// source count again after a restart; refused calls and yesterday's do not.
func TestDailyCountsAreRebuiltFromTheAuditLog(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	log, err := seglog.Open(filepath.Join(t.TempDir(), "audit"), seglog.Options{SigningKey: key})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	ctx := context.Background()
	method := "/relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient"
	now := time.Now()
	for i, r := range []audit.Record{
		{Time: now, Consumer: "21990000100005", Method: method, Source: "sandbox", Code: "OK"},
		{Time: now, Consumer: "21990000100005", Method: method, Source: "sandbox", Code: "NotFound"},
		{Time: now, Consumer: "21990000100005", Method: method, Code: "PermissionDenied"},                                    // refused before the source
		{Time: ratelimit.NextMidnight(now).AddDate(0, 0, -2), Consumer: "21990000100005", Method: method, Source: "sandbox"}, // yesterday or before
	} {
		r.RequestID = string(rune('a' + i))
		if err := log.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	reg := registry.NewMemory([]registry.Consumer{{SIRET: "21990000100005", Status: registry.StatusActive}}, nil)
	b, err := broker.New(broker.Config{Registry: reg, Audit: &audit.Memory{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := seedDailyCounts(ctx, b, log.Log); err != nil {
		t.Fatal(err)
	}
	got := countsOf(t, b, now)
	if got != 2 {
		t.Fatalf("rebuilt count %d, want 2", got)
	}
}

func countsOf(t *testing.T, b *broker.Broker, now time.Time) int {
	t.Helper()
	return b.DailyCount("21990000100005|relais.familyquotient.v1.FamilyQuotientService", now)
}
