package engine_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/wfpnats/wfp/engine"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
)

// Classify asks what a layer's filters do with a piece of traffic: the
// matching filters in WFP's evaluation order, and the decision.
func ExampleClient_Classify() {
	nc, stop := testkit.ExampleServer()
	defer stop()
	ctx := context.Background()
	eng, err := engine.Start(ctx, nc, engine.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	defer eng.Close()
	client := engine.NewClient(nc)

	for _, f := range []events.Filter{
		{Name: "permit admin ssh", Weight: 10, Action: events.ActionPermit, Conditions: []events.Condition{
			{Field: "IP_REMOTE_PORT", Value: "22"}, {Field: "IP_REMOTE_ADDRESS", Match: events.MatchPrefix, Value: "10.0.0.0/8"}}},
		{Name: "block ssh", Weight: 1, Action: events.ActionBlock, Conditions: []events.Condition{{Field: "IP_REMOTE_PORT", Value: "22"}}},
	} {
		f.Layer = "ALE_AUTH_CONNECT_V4"
		if _, err := client.AddFilter(ctx, f); err != nil {
			panic(err)
		}
	}
	for _, addr := range []string{"10.1.2.3", "192.0.2.7"} {
		res, err := client.Classify(ctx, engine.ClassifyRequest{Layer: "ALE_AUTH_CONNECT_V4",
			Fields: map[string]string{"IP_REMOTE_PORT": "22", "IP_REMOTE_ADDRESS": addr}})
		if err != nil {
			panic(err)
		}
		fmt.Printf("%s: %d matching, %s\n", addr, len(res.Filters), res.Reason)
	}
	// Output:
	// 10.1.2.3: 2 matching, permitted by filter 1 (permit admin ssh)
	// 192.0.2.7: 1 matching, blocked by filter 2 (block ssh)
}

// A dynamic session's objects are deleted when it ends: when it is
// closed, or when its holder stops heartbeating for its lease.
func ExampleClient_OpenSession() {
	nc, stop := testkit.ExampleServer()
	defer stop()
	ctx := context.Background()
	eng, err := engine.Start(ctx, nc, engine.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	defer eng.Close()
	client := engine.NewClient(nc)

	s, err := client.OpenSession(ctx, engine.SessionConfig{Name: "deploy", Lease: 10 * time.Second})
	if err != nil {
		panic(err)
	}
	_, err = client.AddFilter(ctx, events.Filter{Name: "temporary", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionBlock},
		engine.WithSession(s.ID()))
	if err != nil {
		panic(err)
	}
	closed, err := s.Close(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Printf("deleted %d filter(s)\n", closed.DeletedFilters)

	_, err = client.AddFilter(ctx, events.Filter{Name: "late", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionBlock},
		engine.WithSession(s.ID()))
	fmt.Println(errors.Is(err, engine.ErrSessionAborted))
	// Output:
	// deleted 1 filter(s)
	// true
}
