package portal

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestMemoryStoreTimeouts(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: t0}
	m := NewMemoryStore(MemoryOptions{Now: clk.Now})
	id, err := m.NewSession(ctx, Session{Pseudonym: "p", CSRF: "c"})
	if err != nil || len(id) != 43 {
		t.Fatalf("id %q, %v", id, err)
	}
	// Activity keeps it alive past 15 minutes, never past the hour.
	for range 4 {
		clk.Advance(14 * time.Minute)
		if _, err := m.Session(ctx, id); err != nil {
			t.Fatalf("active session expired at %v: %v", clk.Now().Sub(t0), err)
		}
	}
	clk.Set(t0.Add(time.Hour))
	if _, err := m.Session(ctx, id); !errors.Is(err, ErrNoSession) {
		t.Errorf("session alive after the absolute timeout: %v", err)
	}
	// Idle for 15 minutes ends it.
	id, _ = m.NewSession(ctx, Session{Pseudonym: "p"})
	clk.Advance(15 * time.Minute)
	if _, err := m.Session(ctx, id); !errors.Is(err, ErrNoSession) {
		t.Errorf("idle session alive: %v", err)
	}
	if n, _ := m.Len(); n != 0 {
		t.Errorf("expired sessions kept: %d", n)
	}
}

func TestMemoryStoreLogins(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: t0}
	m := NewMemoryStore(MemoryOptions{Now: clk.Now})
	id, err := m.NewLogin(ctx, PendingLogin{State: "s", Nonce: "n", Verifier: "v"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Session(ctx, id); !errors.Is(err, ErrNoSession) {
		t.Error("a pending login's id opens a session")
	}
	l, err := m.TakeLogin(ctx, id)
	if err != nil || l.State != "s" || l.Nonce != "n" || l.Verifier != "v" {
		t.Fatalf("take: %+v, %v", l, err)
	}
	if _, err := m.TakeLogin(ctx, id); !errors.Is(err, ErrNoSession) {
		t.Error("a pending login was taken twice")
	}
	id, _ = m.NewLogin(ctx, PendingLogin{State: "s"})
	clk.Advance(DefaultLoginTimeout)
	if _, err := m.TakeLogin(ctx, id); !errors.Is(err, ErrNoSession) {
		t.Error("an expired pending login was taken")
	}
}

func TestMemoryStoreIsBounded(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: t0}
	m := NewMemoryStore(MemoryOptions{Now: clk.Now, MaxSessions: 2})
	a, _ := m.NewSession(ctx, Session{Pseudonym: "a"})
	if _, err := m.NewSession(ctx, Session{Pseudonym: "b"}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.NewSession(ctx, Session{Pseudonym: "c"}); !errors.Is(err, ErrStoreFull) {
		t.Fatalf("third session: %v, want ErrStoreFull", err)
	}
	if s, err := m.Session(ctx, a); err != nil || s.Pseudonym != "a" {
		t.Error("a full store evicted a live session")
	}
	for range 2 {
		if _, err := m.NewLogin(ctx, PendingLogin{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.NewLogin(ctx, PendingLogin{}); !errors.Is(err, ErrStoreFull) {
		t.Fatalf("third login: %v", err)
	}
	// Expired entries make room.
	clk.Advance(DefaultIdleTimeout)
	if _, err := m.NewSession(ctx, Session{Pseudonym: "d"}); err != nil {
		t.Errorf("after expiry: %v", err)
	}
	if _, err := m.NewLogin(ctx, PendingLogin{}); err != nil {
		t.Errorf("login after expiry: %v", err)
	}
}

func TestMemoryStoreRefusesMalformedIDs(t *testing.T) {
	ctx := context.Background()
	m := NewMemoryStore(MemoryOptions{})
	id, _ := m.NewSession(ctx, Session{Pseudonym: "p"})
	for _, bad := range []string{"", "x", id[:42], id + "A", "!" + id[1:], " " + id[1:]} {
		if _, err := m.Session(ctx, bad); !errors.Is(err, ErrNoSession) {
			t.Errorf("id %q accepted", bad)
		}
		if err := m.DeleteSession(ctx, bad); err != nil {
			t.Errorf("delete %q: %v", bad, err)
		}
	}
	if _, err := m.Session(ctx, id); err != nil {
		t.Error("deleting malformed ids touched a real session")
	}
	ids := map[string]bool{}
	for range 100 {
		id, _ := m.NewLogin(ctx, PendingLogin{})
		if ids[id] {
			t.Fatal("an id came twice")
		}
		ids[id] = true
	}
}

func TestLimiterIsBoundedAndUsesTheClock(t *testing.T) {
	clk := &clock{t: t0}
	_, pages := newLimiters(Limits{PagesPerSecond: 1, PagesBurst: 1, MaxClients: 2}, clk.Now)
	if !pages.allow("a") || pages.allow("a") {
		t.Error("burst of one not applied")
	}
	if !pages.allow("b") {
		t.Error("second client refused")
	}
	if pages.allow("c") {
		t.Error("a third client got in a full table")
	}
	clk.Advance(forgetAfter)
	if !pages.allow("c") || !pages.allow("a") {
		t.Error("idle clients were not forgotten, or the bucket did not refill")
	}
}
