package callout

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
)

// The same FilterAdded delivered twice (an ordered consumer that resets
// starts again from a sequence, and may hand over what the agent already
// holds) calls AddFilter once: the agent de-duplicates by filter id.
func TestAddOfAFilterAlreadyHeldIsADuplicate(t *testing.T) {
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	js := testkit.JetStream(t, nc)
	testkit.Stream(t, js)
	ctx := context.Background()
	ck := uuid.NewString()
	subj := events.Subjects{Prefix: events.DefaultPrefix}
	f := &events.Filter{Key: uuid.NewString(), ID: 1, Name: "f", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionCalloutInspection, CalloutKey: ck}
	m, err := subj.Message(events.NewFilterEvent(events.FilterAdded, f))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: m.Subject, Data: m.Data, Header: nats.Header(m.Header)}); err != nil {
		t.Fatal(err)
	}

	var adds atomic.Int32
	a, err := Register(ctx, js, ck, HandlerFunc(func(_ context.Context, nt NotifyType, _ *Filter) error {
		if nt == AddFilter {
			adds.Add(1)
		}
		return nil
	}), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	// A live agent starts after the add: its own consumer delivers
	// nothing, and its loop waits. The message, as a consumer delivers it:
	cons, err := js.OrderedConsumer(ctx, events.DefaultStream, natsjs.OrderedConsumerConfig{FilterSubjects: []string{subj.CalloutFilters(ck)}})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(natsjs.FetchMaxWait(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	a.dispatch(consumed(msg, 0))
	a.dispatch(consumed(msg, 0)) // again, as after a reset
	if s := a.Stats(); adds.Load() != 1 || s.Duplicates != 1 || s.Held != 1 {
		t.Fatalf("AddFilter called %d times, stats %+v; want once, and one duplicate", adds.Load(), s)
	}
}
