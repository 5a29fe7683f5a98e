package callout

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
)

// A live agent that falls behind its subscription's pending limits loses
// messages in the client, the last ones included, with nothing after them
// to reveal the gap: the client's count of dropped messages makes it
// catch up, and it gets them all, once each.
func TestLive_DroppedMessagesAreCaughtUp(t *testing.T) {
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	js := testkit.JetStream(t, nc)
	testkit.Stream(t, js)
	ctx := context.Background()
	ck := uuid.NewString()
	subj := events.Subjects{Prefix: events.DefaultPrefix}
	var prev uint64
	add := func(name string) {
		t.Helper()
		f := &events.Filter{Key: uuid.NewString(), Name: name, Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionCalloutInspection, CalloutKey: ck}
		m, err := subj.Message(events.NewFilterEvent(events.FilterAdded, f))
		if err != nil {
			t.Fatal(err)
		}
		m.Header[events.HeaderPrev] = []string{strconv.FormatUint(prev, 10)} // as the engine writes it
		ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: m.Subject, Data: m.Data, Header: nats.Header(m.Header)})
		if err != nil {
			t.Fatal(err)
		}
		prev = ack.Sequence
	}
	stuck, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	seen := map[string]int{}
	var mu sync.Mutex
	a, err := Register(ctx, js, ck, HandlerFunc(func(_ context.Context, nt NotifyType, f *Filter) error {
		once.Do(func() { close(stuck); <-release })
		mu.Lock()
		seen[f.Name]++
		mu.Unlock()
		return nil
	}), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	add("first")
	<-stuck
	// The decoded queue fills (liveBuffer), the subscription's callback
	// holds one waiting for room, and its pending list the rest; then the
	// pending limit is set to what it holds, and the last ten are dropped,
	// with nothing after them.
	const fill, dropped = liveBuffer + 2, 10
	for i := range fill {
		add("f" + strconv.Itoa(i))
	}
	var pending int
	testkit.Eventually(t, "the queue and the subscription to fill", func() bool {
		pending, _, _ = a.live.sub.Pending()
		return len(a.live.out) == liveBuffer && pending >= 1
	})
	if err := a.live.sub.SetPendingLimits(pending, -1); err != nil {
		t.Fatal(err)
	}
	for i := range dropped {
		add("g" + strconv.Itoa(i))
	}
	testkit.Eventually(t, "the client to drop the last ones", func() bool {
		d, err := a.live.sub.Dropped()
		return err == nil && d == dropped
	})
	const n = fill + dropped
	close(release)
	testkit.Eventually(t, "every add handled", func() bool { return a.Stats().Adds == n+1 })
	mu.Lock()
	defer mu.Unlock()
	for name, k := range seen {
		if k != 1 {
			t.Fatalf("%s handled %d times", name, k)
		}
	}
	if st := a.Stats(); st.CatchUps == 0 {
		t.Fatalf("stats %+v: no catch-up", st)
	}
}
