package testkit

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/jetstream"
)

// Populate writes a large log in seconds, straight to the default stream
// (which it ensures) and without an engine, as test/bench's populator
// does: the CalloutAdded of calloutKey, then filters FilterAdded events
// naming it, then FilterDeleted events for the first deleted of those.
// The events are the engine's own (events.Subjects.Message) with the
// filter id the engine would give (the sequence of the add); only
// Nats-Msg-Id is left out, so that the server's duplicate window does not
// hold an id per event. It returns the stream's last sequence.
//
// Most events go out as plain NATS publishes, in order on one
// connection; every populateAck-th, and the last, is a JetStream publish
// that expects the sequence before it: its ack says that everything
// before it is stored, in order, and keeps the stream's ingest queue
// short.
func Populate(t testing.TB, js natsjs.JetStream, calloutKey string, filters, deleted int) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := Stream(t, js)
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	nc := js.Conn()
	first := info.State.LastSeq + 1
	next := first
	subj := events.Subjects{Prefix: jetstream.DefaultPrefix}
	total := uint64(1 + filters + deleted)
	publish := func(ev *events.Event) {
		m, err := subj.Message(ev)
		if err != nil {
			t.Fatal(err)
		}
		h := nats.Header(m.Header)
		h.Del(events.HeaderMsgID)
		msg := &nats.Msg{Subject: m.Subject, Data: m.Data, Header: h}
		if n := next - first + 1; n%populateAck == 0 || n == total {
			_, err = js.PublishMsg(ctx, msg, natsjs.WithExpectLastSequence(next-1))
		} else {
			err = nc.PublishMsg(msg)
		}
		if err != nil {
			t.Fatalf("populating the log at sequence %d: %v", next, err)
		}
		next++
	}
	publish(events.NewCalloutEvent(events.CalloutAdded, &events.Callout{Key: calloutKey, Name: "populated"}))
	added := make([]*events.Filter, 0, filters)
	for i := range filters {
		f := &events.Filter{Key: uuid.NewString(), ID: next, Name: fmt.Sprintf("populated %d", i), Layer: "ALE_AUTH_CONNECT_V4",
			Action: events.ActionCalloutInspection, CalloutKey: calloutKey}
		publish(events.NewFilterEvent(events.FilterAdded, f))
		added = append(added, f)
	}
	for _, f := range added[:deleted] {
		publish(events.NewFilterEvent(events.FilterDeleted, f))
	}
	return next - 1
}

// populateAck is how many events Populate writes per acknowledged one.
const populateAck = 4096
