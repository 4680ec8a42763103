package main

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/relais-broker/relais/adapters/sandbox"
	"github.com/relais-broker/relais/broker"
	"github.com/relais-broker/relais/broker/catalog"
)

type countingCloser struct{ closed atomic.Int32 }

func (c *countingCloser) Close() error { c.closed.Add(1); return nil }

// TestReplacedSourcesAreClosed: a reload closes the adapters of the set it
// replaces once the calls that may use them are over (the set's longest
// timeout), and the set in force is closed at shutdown.
func TestReplacedSourcesAreClosed(t *testing.T) {
	svc := catalog.Default().Services()[0]
	sb := sandbox.New(sandbox.Default(), sandbox.Options{SourceID: "sandbox"})
	mk := func(c *countingCloser) *sourceSet {
		return &sourceSet{
			sources: map[string]broker.Source{svc: {ID: "s", Adapter: sb, Timeout: 20 * time.Millisecond}},
			closers: []io.Closer{c},
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	r := &sourceRunner{logger: slog.New(slog.DiscardHandler), group: g, ctx: gctx}
	first, second := &countingCloser{}, &countingCloser{}
	r.start(mk(first))
	r.start(mk(second))
	deadline := time.Now().Add(10 * time.Second)
	for first.closed.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := first.closed.Load(); n != 1 {
		t.Fatalf("the replaced set was closed %d times, want 1", n)
	}
	if second.closed.Load() != 0 {
		t.Fatal("the set in force was closed")
	}
	cancel()
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	r.closeAll()
	if f, s := first.closed.Load(), second.closed.Load(); f != 1 || s != 1 {
		t.Fatalf("closes after shutdown: first %d, second %d; want 1 and 1", f, s)
	}
}
