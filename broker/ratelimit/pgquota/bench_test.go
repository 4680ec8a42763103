package pgquota_test

import (
	"context"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/ratelimit"
	"github.com/relais-broker/relais/broker/ratelimit/pgquota"
)

// go test -run '^$' -bench . ./broker/ratelimit/pgquota: one unit per call
// against PostgreSQL (synchronous commit), with 1 and 32 callers.
func BenchmarkPostgres(b *testing.B) {
	for _, callers := range []int{1, 32} {
		b.Run("DailyTake/callers="+strconv.Itoa(callers), func(b *testing.B) {
			dsn, _ := brokerDB(b)
			d := pgquota.NewDaily(connect(b, dsn))
			now := time.Now()
			var n atomic.Int64
			parallel(b, callers, func() {
				key := ratelimit.Key("13002526500013", "svc"+strconv.FormatInt(n.Add(1)%64, 10))
				if ok, _, err := d.Take(context.Background(), key, 0, now); !ok || err != nil {
					b.Fatal(ok, err)
				}
			})
		})
		b.Run("InFlightAcquireRelease/callers="+strconv.Itoa(callers), func(b *testing.B) {
			dsn, _ := brokerDB(b)
			f := pgquota.NewInFlight(connect(b, dsn), nil)
			var n atomic.Int64
			parallel(b, callers, func() {
				release, ok, err := f.Acquire(context.Background(), "k"+strconv.FormatInt(n.Add(1), 10), time.Minute)
				if !ok || err != nil {
					b.Fatal(ok, err)
				}
				release()
			})
		})
	}
}

func parallel(b *testing.B, callers int, op func()) {
	b.SetParallelism(max(1, callers/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	if callers == 1 {
		for range b.N {
			op()
		}
	} else {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				op()
			}
		})
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}
