// Package remindertest is the conformance suite every reminders.Store
// implementation passes (boltrem, pgrem), so the job behaves the same on
// a bbolt file and on PostgreSQL.
package remindertest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/reminders"
)

// Opener gives a fresh, empty store; reopen, when not nil, closes it and
// opens the same storage again (durability).
type Opener func(t *testing.T) (store reminders.Store, reopen func(t *testing.T) reminders.Store)

// base is a valid record at a microsecond-precise time.
func base(i int) reminders.Record {
	at := time.Date(2026, 12, 1, 10, 0, 0, 123456000, time.UTC)
	return reminders.Record{Kind: reminders.KindCertificate, Consumer: "21990000100005", Ref: fmt.Sprintf("0a%02d", i),
		NotAfter: at.Add(time.Duration(6*24+i) * time.Hour), Step: 7, State: reminders.StateSent, Attempts: 1,
		FirstAttempt: at, LastAttempt: at, SentAt: at.Add(time.Second), Recipients: 2}
}

func same(t *testing.T, got, want reminders.Record) {
	t.Helper()
	for _, tm := range []*time.Time{&got.NotAfter, &got.FirstAttempt, &got.LastAttempt, &got.SentAt, &want.NotAfter, &want.FirstAttempt, &want.LastAttempt, &want.SentAt} {
		if !tm.IsZero() {
			*tm = tm.UTC()
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
}

// Run runs the suite.
func Run(t *testing.T, open Opener) {
	ctx := context.Background()
	t.Run("put get list", func(t *testing.T) {
		s, _ := open(t)
		if _, err := s.Get(ctx, base(0).Key()); !errors.Is(err, reminders.ErrNotFound) {
			t.Fatalf("Get on empty store: %v, want ErrNotFound", err)
		}
		if l, err := s.List(ctx); err != nil || len(l) != 0 {
			t.Fatalf("List on empty store: %v %v", l, err)
		}
		g := base(1)
		g.Kind, g.Ref, g.Service, g.Step = reminders.KindGrant, "g-42", "relais.familyquotient.v1.FamilyQuotientService", 30
		g.State, g.SentAt, g.LastError, g.Attempts = reminders.StateFailed, time.Time{}, "smtp rcpt to: 550", 3
		recs := []reminders.Record{base(2), g, base(0)}
		for _, r := range recs {
			if err := s.Put(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		for _, r := range recs {
			got, err := s.Get(ctx, r.Key())
			if err != nil {
				t.Fatal(err)
			}
			same(t, got, r)
		}
		l, err := s.List(ctx)
		if err != nil || len(l) != 3 {
			t.Fatalf("List: %d %v", len(l), err)
		}
		for i, want := range []reminders.Record{base(0), g, base(2)} {
			same(t, l[i], want)
		}
	})
	t.Run("put replaces", func(t *testing.T) {
		s, _ := open(t)
		r := base(0)
		r.State, r.SentAt, r.LastError = reminders.StateFailed, time.Time{}, "smtp dial: timeout"
		if err := s.Put(ctx, r); err != nil {
			t.Fatal(err)
		}
		r.State, r.SentAt, r.LastError, r.Attempts = reminders.StateSent, r.LastAttempt.Add(time.Minute), "", 2
		if err := s.Put(ctx, r); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, r.Key())
		if err != nil {
			t.Fatal(err)
		}
		same(t, got, r)
		if l, _ := s.List(ctx); len(l) != 1 {
			t.Fatalf("List after replace: %d records", len(l))
		}
	})
	t.Run("invalid changes nothing", func(t *testing.T) {
		s, _ := open(t)
		if err := s.Put(ctx, base(0)); err != nil {
			t.Fatal(err)
		}
		for name, mutate := range map[string]func(*reminders.Record){
			"kind":     func(r *reminders.Record) { r.Kind = "token" },
			"consumer": func(r *reminders.Record) { r.Consumer = "" },
			"ref":      func(r *reminders.Record) { r.Ref = "a/b" },
			"step":     func(r *reminders.Record) { r.Step = 0 },
			"state":    func(r *reminders.Record) { r.State = "maybe" },
			"sent_at":  func(r *reminders.Record) { r.SentAt = time.Time{} },
			"attempts": func(r *reminders.Record) { r.Attempts = 0 },
		} {
			r := base(0)
			r.Recipients = 9
			mutate(&r)
			if err := s.Put(ctx, r); !errors.Is(err, reminders.ErrInvalid) {
				t.Errorf("%s: Put = %v, want ErrInvalid", name, err)
			}
		}
		l, err := s.List(ctx)
		if err != nil || len(l) != 1 {
			t.Fatalf("List: %v %v", l, err)
		}
		same(t, l[0], base(0))
	})
	t.Run("purge", func(t *testing.T) {
		s, _ := open(t)
		for i := 0; i < 4; i++ {
			if err := s.Put(ctx, base(i)); err != nil {
				t.Fatal(err)
			}
		}
		n, err := s.Purge(ctx, base(2).NotAfter)
		if err != nil || n != 2 {
			t.Fatalf("Purge = %d %v, want 2", n, err)
		}
		l, _ := s.List(ctx)
		if len(l) != 2 || l[0].Ref != base(2).Ref {
			t.Fatalf("after purge: %+v", l)
		}
	})
	t.Run("concurrent puts", func(t *testing.T) {
		s, _ := open(t)
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for i := 0; i < 16; i++ {
			wg.Go(func() { errs <- s.Put(ctx, base(i)) })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if l, _ := s.List(ctx); len(l) != 16 {
			t.Fatalf("%d records after 16 concurrent puts", len(l))
		}
	})
	t.Run("durable", func(t *testing.T) {
		s, reopen := open(t)
		if reopen == nil {
			t.Skip("this store has no reopen")
		}
		if err := s.Put(ctx, base(3)); err != nil {
			t.Fatal(err)
		}
		s2 := reopen(t)
		got, err := s2.Get(ctx, base(3).Key())
		if err != nil {
			t.Fatal(err)
		}
		same(t, got, base(3))
	})
}
