package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/engine"
	"github.com/wfpnats/wfp/events"
)

// checkFidelity makes sure the populator still writes what the engine
// writes: it adds and deletes one filter through a scratch engine and
// compares the log (message count, event types, subjects, header names)
// with what the populator would publish for the same filter. A difference
// is reported in the notes, since the replay figures would then measure a
// log the engine never writes.
func (b *bench) checkFidelity(ctx context.Context) error {
	w, err := b.startEngine(ctx, "BENCH_FIDELITY", "bfid")
	if err != nil {
		return err
	}
	defer w.close(b)
	f, err := w.client.AddFilter(ctx, benchFilter(1, w.callout))
	if err != nil {
		return err
	}
	if err := w.client.DeleteFilter(ctx, engine.FilterRef{FilterKey: f.Key}); err != nil {
		return err
	}
	cons, err := w.admin.js.OrderedConsumer(ctx, w.cfg.Name, natsjs.OrderedConsumerConfig{})
	if err != nil {
		return err
	}
	type entry struct {
		subject string
		typ     events.Type
		headers string
	}
	headerNames := func(h map[string][]string) string {
		var ks []string
		for k := range h {
			if !strings.HasPrefix(k, "Nats-Expected") && !strings.HasPrefix(k, "Nats-Batch") {
				ks = append(ks, k)
			}
		}
		slices.Sort(ks)
		return strings.Join(ks, ",")
	}
	var got []entry
	for {
		m, err := cons.Next(natsjs.FetchMaxWait(time.Second))
		if err != nil {
			break // end of the log
		}
		ev, err := events.Decode(m.Data())
		if err != nil {
			return fmt.Errorf("fidelity: engine wrote an undecodable event: %w", err)
		}
		got = append(got, entry{m.Subject(), ev.Type, headerNames(m.Headers())})
	}

	subj := events.Subjects{Prefix: w.cfg.Prefix}
	var want []entry
	// The delete rolls up the add: what stays is the callout's add and
	// the filter's delete.
	for _, ev := range []*events.Event{
		events.NewCalloutEvent(events.CalloutAdded, &events.Callout{Key: w.callout, Name: "bench callout"}),
		events.NewFilterEvent(events.FilterDeleted, f),
	} {
		m, err := populated(subj, ev, w.cfg.Horizon, 0)
		if err != nil {
			return err
		}
		// What the populator changes on purpose (see populator).
		if len(standInMsgIDHeader) != len(events.HeaderMsgID) {
			return fmt.Errorf("fidelity: the stand-in header must be as long as %s", events.HeaderMsgID)
		}
		h := map[string][]string(m.Header)
		h[events.HeaderMsgID] = h[standInMsgIDHeader]
		delete(h, standInMsgIDHeader)
		want = append(want, entry{m.Subject, ev.Type, headerNames(h)})
	}
	if !slices.Equal(got, want) {
		b.report.note("WARNING: the populated logs do not mirror the engine: for callout add, filter add, filter delete the engine wrote %+v, the populator writes %+v; replay, cold start, memory and churn figures measure the populator's log", got, want)
		b.logf("fidelity: MISMATCH engine %+v populator %+v", got, want)
		return nil
	}
	b.report.note("replay/cold-start/memory/churn logs are written straight to the stream, as the engine writes them (checked each run against the engine for a callout add, a filter add and a filter delete: same messages left after compaction, subjects, header names), except that Nats-Msg-Id is renamed to a header of the same length so the server's 2-minute duplicate table does not hold millions of ids while readers are timed")
	return nil
}
