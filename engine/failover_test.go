package engine

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
	"github.com/wfpnats/wfp/jetstream"
)

// An add made just after the stream leader dies, while the other nodes
// elect a new one (4-9 s), lands once they have: the engine tries the
// write again every second within its write timeout. With one attempt
// as long as the write timeout it would wait for an answer to a publish
// nobody received, and report the add as a timeout.
func TestAddDuringLeaderElectionLands(t *testing.T) {
	c := testkit.NewCluster(t, 3)
	js := testkit.JetStream(t, c.Nodes[0].Connect(t, c.URLs()))
	if _, err := jetstream.EnsureStream(context.Background(), js, jetstream.StreamConfig{Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	leader := c.StreamLeader(js, jetstream.DefaultStreamName)
	other := (leader + 1) % 3
	nc := c.Nodes[other].Connect(t, c.URLs())
	e, err := Start(context.Background(), nc, Config{Replicas: 3, WriteTimeout: 15 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	client := NewClient(nc)
	if _, err := client.AddFilter(context.Background(), events.Filter{Name: "before", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionBlock}); err != nil {
		t.Fatal(err)
	}
	c.Crash(leader)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f, err := client.AddFilter(ctx, events.Filter{Name: "during the election", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionBlock})
	if err != nil {
		t.Fatalf("add during the election: %v", err)
	}
	if f.ID != 2 {
		t.Fatalf("filter id %d, want 2", f.ID)
	}
}

// After a write that lost the fence the engine must fold the log up to
// where it stands before it writes again. When its tail delivers nothing
// (its consumer gone with a server), it reads the missing messages
// itself, and the add goes through instead of timing out.
func TestCatchUpReadsBackWhenTheTailIsStuck(t *testing.T) {
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	e, err := Start(context.Background(), nc, Config{WriteTimeout: 2 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	e.tailCtx.Stop()
	// Another writer's event lands behind the engine's back.
	m, err := events.Subjects{Prefix: events.DefaultPrefix}.Message(events.NewCalloutEvent(events.CalloutAdded, &events.Callout{Key: uuid.NewString(), Name: "other"}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := testkit.JetStream(t, nc).PublishMsg(context.Background(), &nats.Msg{Subject: m.Subject, Data: m.Data, Header: nats.Header(m.Header)}); err != nil {
		t.Fatal(err)
	}
	f, err := NewClient(nc).AddFilter(context.Background(), events.Filter{Name: "f", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionBlock})
	if err != nil {
		t.Fatalf("add after another writer, tail stuck: %v", err)
	}
	if f.ID != 2 || e.Stats().Callouts != 1 || e.Stats().Fenced == 0 {
		t.Fatalf("filter id %d (want 2), %d callouts (want the other writer's), %d fenced writes (want some)", f.ID, e.Stats().Callouts, e.Stats().Fenced)
	}
}
