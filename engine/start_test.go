package engine

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
)

// An engine that starts while another one writes to the same stream has
// its loop folding those writes before Start returns; Start must not read
// the state behind the loop's back (found by the cluster tests, where a
// replacement engine starts under load; -race reports it).
func TestStartWhileAnotherEngineWrites(t *testing.T) {
	srv := testkit.Server(t)
	a := startEngine(t, testkit.Conn(t, srv))
	c := NewClient(testkit.Conn(t, srv))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				// The engines started below join the API's queue group and
				// are closed with calls taken: those fail, and do not matter
				// here; what matters is that the log moves while they start.
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_, _ = c.AddFilter(ctx, events.Filter{Name: "f", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionBlock})
				cancel()
			}
		})
	}
	testkit.Eventually(t, "engine A to write", func() bool { return a.Stats().Written > 50 })
	for range 12 {
		b, err := Start(context.Background(), testkit.Conn(t, srv), Config{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		b.Close()
	}
	close(stop)
	wg.Wait()
	if a.Stats().Written < 100 {
		t.Fatalf("engine A wrote %d events in all: the log hardly moved while the others started", a.Stats().Written)
	}
}

// Once Start returns, a client on another connection finds the API at
// once: the engine has made sure the server has its subscriptions.
func TestServesWhenStartReturns(t *testing.T) {
	srv := testkit.Server(t)
	client := NewClient(testkit.Conn(t, srv))
	for range 20 {
		e, err := Start(context.Background(), testkit.Conn(t, srv), Config{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		_, err = client.ListCallouts(context.Background())
		e.Close()
		if err != nil {
			t.Fatalf("right after Start: %v", err)
		}
	}
}
