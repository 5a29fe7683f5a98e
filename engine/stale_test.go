package engine

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
)

// An engine cut off from the server for longer than the horizon, while
// another engine deleted a filter (the delete rolled up the add, then
// expired), would keep that filter for good: its tail resumes where it
// stopped and the delete is no longer there to read. It notices that it
// was away too long, rebuilds from a snapshot of the log, and lists what
// the log holds, also when nothing was written after the delete (its
// check of the log's end finds the log moved on) and when something was
// (its tail resumes after a gap).
func TestEngineAwayLongerThanTheHorizonRebuilds(t *testing.T) {
	for _, writeAfter := range []bool{false, true} {
		name := "nothing written after the delete"
		if writeAfter {
			name = "a write after the delete"
		}
		t.Run(name, func(t *testing.T) {
			const horizon = 2 * time.Second
			srv := testkit.Server(t)
			hop := testkit.NewCutter(t, srv.NATS.Addr().String())
			cfg := Config{Horizon: horizon, Logger: testLogger(io.Discard)}
			ncA := testkit.Dial(t, hop.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
			a := startEngineConfig(t, ncA, cfg)
			b := startEngineConfig(t, testkit.Conn(t, srv), cfg)
			ctx := context.Background()
			add := func(name string) uint64 {
				t.Helper()
				evs, _, err := b.submit(ctx, addFilter{f: events.Filter{Name: name, Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionBlock}})
				if err != nil {
					t.Fatal(err)
				}
				return evs[0].Filter.ID
			}
			gone, kept := add("gone"), add("kept")
			testkit.Eventually(t, "a to fold b's adds", func() bool { return has(a, gone) && has(a, kept) })

			hop.Cut()
			testkit.Eventually(t, "a to lose its connection", func() bool { return !ncA.IsConnected() })
			if _, _, err := b.submit(ctx, deleteFilter{ref: FilterRef{FilterID: gone}}); err != nil {
				t.Fatal(err)
			}
			del := b.Seq()
			s := testkit.Stream(t, testkit.JetStream(t, testkit.Conn(t, srv)))
			testkit.Eventually(t, "the delete to expire", func() bool {
				_, err := s.GetMsg(ctx, del)
				return errors.Is(err, natsjs.ErrMsgNotFound)
			})
			var later uint64
			if writeAfter {
				later = add("later")
			}
			hop.Mend()

			testkit.Eventually(t, "a to rebuild without the deleted filter", func() bool {
				return !has(a, gone) && has(a, kept) && (later == 0 || has(a, later))
			})
			if st := a.Stats(); st.Rebuilds == 0 || st.Filters != b.Stats().Filters {
				t.Fatalf("a: %+v; b holds %d filters", st, b.Stats().Filters)
			}
			// It writes again, on the rebuilt state.
			if _, _, err := a.submit(ctx, addFilter{f: events.Filter{Name: "from a", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionBlock}}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// has reports whether e's state holds filter id.
func has(e *Engine, id uint64) bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	_, ok := e.state.FilterByID(id)
	return ok
}
