package pglog_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"

	"github.com/relais-broker/relais/broker/audit/pglog/pglogtest"
	"github.com/relais-broker/relais/internal/pgtest"
)

// TestByteScanOfTheDataDirectory: what the audit log stores is found by
// a scan of the data directory (the scan works), a value never given to
// it is not.
func TestByteScanOfTheDataDirectory(t *testing.T) {
	c := pgtest.Shared(t)
	pool := connect(t, migrated(t, c))
	writeLog(t, pool, 3, key(t))
	if _, err := pool.Exec(context.Background(), "CHECKPOINT"); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	absent := "never-stored-" + hex.EncodeToString(b)
	hits, err := pglogtest.ScanDir(c.DataDir(), `"RequestID":"`+record(2).RequestID+`"`, absent)
	if err != nil {
		t.Fatal(err)
	}
	if len(hits) == 0 {
		t.Fatal("a stored record was not found in the data directory: the scan proves nothing")
	}
	for _, h := range hits {
		if h.Needle == absent {
			t.Fatalf("a value never stored was found in %s", h.File)
		}
	}
	pglogtest.AssertAbsent(t, c.DataDir(), absent)
}
