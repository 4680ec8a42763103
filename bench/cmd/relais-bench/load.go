package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"os/exec"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
)

// Roles of a target's processes whose CPU is counted apart.
const (
	roleOwn      = "own"      // the target itself: limit, nginx, relaisd
	roleUpstream = "upstream" // the limit server behind nginx or the remote adapter
	roleStore    = "store"    // PostgreSQL (its postmaster and backends)
)

// target is one server the client calls, with its processes by role.
type target struct {
	name  string
	addr  string
	procs map[string][]*exec.Cmd
}

// phase bounds one load: a warm-up bounded by calls and time whose calls
// are not counted, then a measurement of a fixed duration (bounded by
// maxCalls as a safety).
type phase struct {
	warmup      time.Duration
	warmupCalls int
	duration    time.Duration
	maxCalls    int
	// onStart, when set, is called as the measurement starts (the CPU
	// profile).
	onStart func()
}

// benchRequest is the one request every target answers, as the
// family-quotient client of a town hall sends it (fictitious subject).
func benchRequest() *familyquotientv1.GetFamilyQuotientRequest {
	return &familyquotientv1.GetFamilyQuotientRequest{
		AccessContext: &commonv1.AccessContext{Recipient: benchConsumer, Purpose: "tarification_sociale", CaseReference: "BENCH"},
		Subject: &commonv1.SubjectIdentity{BirthName: "DUPONT", GivenNames: []string{"Zoé"}, Sex: commonv1.Sex_SEX_FEMALE, BirthDate: "1984-03-12",
			BirthPlaceCog: "75056", BirthCountryCog: "99100"},
	}
}

// connections is how many HTTP/2 connections the client opens at
// concurrency c: min(c, 8), the same for every target.
func connections(c int) int { return min(c, 8) }

// measure loads t at concurrency c over connections(c) mTLS connections:
// first the warm-up, then the measurement, reading the CPU of t's
// processes by role around the measurement only.
func (e *env) measure(t target, c int, ph phase) (sample, error) {
	nconn := connections(c)
	var clients []familyquotientv1.FamilyQuotientServiceClient
	for i := 0; i < nconn; i++ {
		conn, err := grpc.NewClient(t.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			Certificates: []tls.Certificate{e.client}, RootCAs: e.roots, ServerName: "localhost", MinVersion: tls.VersionTLS12})))
		if err != nil {
			return sample{}, err
		}
		defer conn.Close()
		clients = append(clients, familyquotientv1.NewFamilyQuotientServiceClient(conn))
	}
	req := benchRequest()
	for _, cl := range clients { // every connection handshakes before the warm-up
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := cl.GetFamilyQuotient(ctx, req)
		cancel()
		if err != nil {
			return sample{}, fmt.Errorf("first call: %w", err)
		}
	}
	if ph.warmup > 0 && ph.warmupCalls > 0 {
		run(clients, req, c, ph.warmup, ph.warmupCalls, false)
	}
	cpu0 := map[string]time.Duration{}
	for role, ps := range t.procs {
		cpu0[role] = cpuOf(ps)
	}
	if ph.onStart != nil {
		ph.onStart()
	}
	lat, errs, elapsed := run(clients, req, c, ph.duration, ph.maxCalls, true)
	s := sample{Target: t.name, Level: c, Calls: len(lat), Errors: errs, Elapsed: elapsed, CPU: map[string]time.Duration{}}
	for role, ps := range t.procs {
		s.CPU[role] = cpuOf(ps) - cpu0[role]
	}
	if len(lat) == 0 {
		return s, fmt.Errorf("no successful call (%d errors)", errs)
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	s.P50, s.P90, s.P99 = q(.50), q(.90), q(.99)
	return s, nil
}

// run makes calls from c workers until d has passed or maxCalls calls
// have started, and returns the latencies of the successful ones (when
// keep), the number of errors and the elapsed time.
func run(clients []familyquotientv1.FamilyQuotientServiceClient, req *familyquotientv1.GetFamilyQuotientRequest, c int, d time.Duration, maxCalls int, keep bool) ([]time.Duration, int, time.Duration) {
	var next, errs atomic.Int64
	lat := make([][]time.Duration, c)
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for w := 0; w < c; w++ {
		wg.Go(func() {
			cl := clients[w%len(clients)]
			for next.Add(1) <= int64(maxCalls) {
				s := time.Now()
				if !s.Before(deadline) {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := cl.GetFamilyQuotient(ctx, req)
				cancel()
				if err != nil {
					errs.Add(1)
					continue
				}
				if keep {
					lat[w] = append(lat[w], time.Since(s))
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	return all, int(errs.Load()), elapsed
}
