package engine

import (
	"context"
	"strconv"
	"testing"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
	"github.com/wfpnats/wfp/jetstream"
)

// Every filter event names the previous filter event of its callout
// (events.HeaderPrev), as live agents check it: across lone writes,
// commands written together as one chain, and a transaction, with two
// callouts interleaved; callout events carry none.
func TestFilterEventsNameTheirCalloutsPreviousEvent(t *testing.T) {
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	// The archive keeps the history the log rolls up: every event, with
	// its log sequence.
	startEngineConfig(t, nc, Config{Archive: jetstream.ArchiveName(events.DefaultStream)})
	c := NewClient(nc)
	ctx := context.Background()
	var callouts []string
	for range 2 {
		co, err := c.AddCallout(ctx, events.Callout{Name: "c"})
		if err != nil {
			t.Fatal(err)
		}
		callouts = append(callouts, co.Key)
	}
	filter := func(i int) events.Filter {
		return events.Filter{Name: "f", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionCalloutInspection, CalloutKey: callouts[i%2]}
	}
	for i := range 4 {
		if _, err := c.AddFilter(ctx, filter(i)); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 8)
	for i := range 8 { // concurrent: chains
		go func() {
			_, err := c.AddFilter(ctx, filter(i))
			done <- err
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	var ops []TxOp
	for i := range 5 {
		f := filter(i)
		ops = append(ops, TxOp{Op: OpFilterAdd, Filter: &f})
	}
	resp, err := c.ApplyTx(ctx, ops)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteFilter(ctx, FilterRef{FilterID: resp.Events[0].Filter.ID}); err != nil {
		t.Fatal(err)
	}
	last := map[string]uint64{}
	n := 0
	for _, m := range readArchive(t, nc) {
		if m.ev == nil || m.ev.Filter == nil {
			if m.header.Get(events.HeaderPrev) != "" {
				t.Fatalf("seq %d: %s carries %s", m.seq, m.ev.Type, events.HeaderPrev)
			}
			continue
		}
		ck := m.ev.Filter.CalloutKey
		if got, want := m.header.Get(events.HeaderPrev), strconv.FormatUint(last[ck], 10); got != want {
			t.Fatalf("seq %d: %s %s, want %s", m.seq, events.HeaderPrev, got, want)
		}
		last[ck] = m.seq
		n++
	}
	if n != 4+8+5+1 {
		t.Fatalf("%d filter events read, want 18", n)
	}
}
