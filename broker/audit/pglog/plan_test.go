package pglog

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/audit/auditlog"
	"github.com/relais-broker/relais/broker/audit/audittest"
	"github.com/relais-broker/relais/internal/pgdb"
	"github.com/relais-broker/relais/internal/pgtest"
)

// TestReadsUseTheIndexes: the citizen report (Subject) and the operators'
// list of deferred accesses (Query with DeferredOnly) have an index path
// even as a prepared statement with a generic plan, so they never need a
// scan of the log. Sequential scans are
// disabled to ask the planner whether such a path exists at all.
func TestReadsUseTheIndexes(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Shared(t).NewDatabase(t)
	if _, err := pgdb.Migrate(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	st, err := OpenDSN(ctx, dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := auditlog.Open(st, auditlog.Options{Signer: audittest.NewSigner(t)})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range audittest.Records(1, 50) {
		if err := l.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	defer l.Close()
	deferred, _ := st.querySQL(audit.Filter{DeferredOnly: true})
	conn, err := st.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	for _, q := range []string{"SET enable_seqscan = off", "SET plan_cache_mode = force_generic_plan", "ANALYZE audit_records"} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name, sql, index string
		types, args      string
	}{
		{"subject", subjectQuery, "subject_time", "text, text", "'" + audittest.Record(1).Subject + "', ''"},
		{"subject of every chain", subjectAllQuery, "subject_time", "text", "'" + audittest.Record(1).Subject + "'"},
		// The partitions' copies of audit_records_deferred are <partition>_chain_seq_idx.
		{"deferred accesses", deferred, "chain_seq_idx", "text, bigint", "'', 100"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := conn.Exec(ctx, "DEALLOCATE ALL; PREPARE q("+tc.types+") AS "+tc.sql); err != nil {
				t.Fatal(err)
			}
			var plan []string
			rows, err := conn.Query(ctx, "EXPLAIN EXECUTE q("+tc.args+")", pgx.QueryExecModeSimpleProtocol)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var line string
				if err := rows.Scan(&line); err != nil {
					t.Fatal(err)
				}
				plan = append(plan, line)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			text := strings.Join(plan, "\n")
			if !strings.Contains(text, tc.index) || strings.Contains(text, "Seq Scan") {
				t.Fatalf("plan without the %s index:\n%s", tc.index, text)
			}
			t.Logf("%s:\n%s", tc.name, text)
		})
	}
}
