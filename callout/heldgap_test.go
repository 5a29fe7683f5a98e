package callout_test

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
	"github.com/wfpnats/wfp/jetstream"
)

// A live message reveals a gap, and the catch-up through the log ends
// before that message: the stream the catch-up read is behind the one
// that published it (a replica back from a partition, a mirror). The
// agent must not hand the message over and skip what lies between: it
// keeps it and catches up again. Here the message is published on the
// live subject for a sequence the stream does not hold yet, as a leader
// ahead of the agent's replica would have.
func TestLiveMessageAheadOfTheLogIsNotDeliveredOverAGap(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	first := e.add(ck, "before")
	var logs testkit.SyncBuffer
	called := make(chan uint64, 8)
	h := callout.HandlerFunc(func(_ context.Context, _ callout.NotifyType, f *callout.Filter) error {
		called <- f.ID
		return nil
	})
	e.register(ck, h, callout.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))

	ahead := first.ID + 2 // the one before it, first.ID+1, is nowhere yet
	f := &events.Filter{Key: newKey(), ID: ahead, Name: "ahead", Layer: "ALE_AUTH_CONNECT_V4",
		Action: events.ActionCalloutInspection, CalloutKey: ck}
	data, err := events.Encode(events.NewFilterEvent(events.FilterAdded, f))
	if err != nil {
		t.Fatal(err)
	}
	subj := events.Subjects{Prefix: jetstream.DefaultPrefix}
	m := nats.NewMsg(strings.TrimSuffix(subj.LiveFilters(ck), "*") + f.Key)
	m.Data = data
	m.Header.Set(natsjs.SubjectHeader, subj.Filter(f))
	m.Header.Set(natsjs.SequenceHeader, strconv.FormatUint(ahead, 10))
	m.Header.Set(natsjs.TimeStampHeaer, time.Now().UTC().Format(time.RFC3339Nano))
	m.Header.Set(events.HeaderPrev, strconv.FormatUint(ahead-1, 10))
	if err := e.nc.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for !strings.Contains(logs.String(), "the catch-up ended before the message that revealed the gap") {
		select {
		case id := <-called:
			t.Fatalf("the handler was called for %d, a message the log does not hold, over the gap before it", id)
		case <-deadline:
			t.Fatalf("no catch-up that ended before the message; log:\n%s", logs.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	select {
	case id := <-called:
		t.Fatalf("the handler was called for %d over the gap", id)
	default:
	}
}
