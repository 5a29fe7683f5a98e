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

// Two engines on one R3 stream lose the fence to each other again and
// again, with groups of several commands in flight. On a replicated
// stream a group must go out as one atomic batch: written as a publish
// chain, the first lost fence wedges the stream (nats-server 2.15.2
// refuses a chain's Nats-Expected-Last-Msg-Id only when a replica applies
// it, and stops applying after that), and every add after it times out.
func TestReplicatedStreamSurvivesLostFences(t *testing.T) {
	c := testkit.NewCluster(t, 3)
	cfg := Config{Replicas: 3, Logger: slog.New(slog.DiscardHandler)}
	var engines []*Engine
	for i := range 2 {
		e, err := Start(context.Background(), c.Nodes[i].Connect(t, c.URLs()), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.Close)
		engines = append(engines, e)
	}
	client := NewClient(c.Nodes[2].Connect(t, c.URLs()))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 25 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := client.AddFilter(ctx, events.Filter{Name: "f", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionBlock})
				cancel()
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if engines[0].Stats().Fenced+engines[1].Stats().Fenced == 0 {
		t.Error("no write lost the fence: the test did not exercise what it is named for")
	}
}
