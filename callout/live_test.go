package callout_test

import (
	"context"
	"testing"

	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/events"
)

func TestR1_LiveAgentGetsAddFilter(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	rec := newRecorder()
	a := e.register(ck, rec)
	if !isClosed(a.Synced()) {
		t.Fatal("live agent: Synced must be closed once Register returns")
	}

	f := e.add(ck, "inspect telnet")
	e.add(newKey(), "another callout's filter") // not ours: never told
	g := e.add(ck, "second")
	rec.expect(t, addNote(f, false), addNote(g, false))

	got, ok := a.Lookup(f.ID)
	if !ok || got.Key != f.Key || got.Name != f.Name || got.Layer != f.Layer {
		t.Fatalf("Lookup(%d) = %+v, %v", f.ID, got, ok)
	}
	if st, _ := got.Context.(*filterState); st == nil || st.id != f.ID {
		t.Fatalf("Lookup(%d).Context = %v, want the handler's state", f.ID, got.Context)
	}
	waitStats(t, a, func(s callout.Stats) bool { return s.Adds == 2 && s.Held == 2 })
}

// A live agent starts at "now" (R2) yet is told of every delete naming its
// callout, also of filters added before it registered, with no Context (R4).
func TestR2_R4_LateLiveAgentNoOldAddsButOldDeletes(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	old1, old2 := e.add(ck, "old1"), e.add(ck, "old2")

	rec := newRecorder()
	a := e.register(ck, rec)
	fresh := e.add(ck, "fresh")
	e.del(old1)
	e.del(fresh)
	e.del(old2)

	// Log order: had old1 or old2 been announced, they would come first.
	rec.expect(t, addNote(fresh, false), delNote(old1, false))
	freshDel := rec.next(t)
	if freshDel.t != callout.DeleteFilter || freshDel.id != fresh.ID {
		t.Fatalf("got %v, want delete of fresh", freshDel)
	}
	if st, _ := freshDel.ctx.(*filterState); st == nil || st.id != fresh.ID {
		t.Fatalf("delete of a filter added while registered: Context %v, want its state back", freshDel.ctx)
	}
	rec.expect(t, delNote(old2, false))

	waitStats(t, a, func(s callout.Stats) bool {
		return s.Adds == 1 && s.Deletes == 3 && s.Held == 0 && s.HandlerErrors == 0
	})
}

// R4: the Context of an unknown filter's delete is nil, not a stale or
// zero value of some other filter, and the handler may rely on that.
func TestR4_DeleteOfUnseenFilterHasNilContext(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	old := e.add(ck, "old")
	rec := newRecorder()
	e.register(ck, rec)
	e.del(old)
	n := rec.next(t)
	if n.t != callout.DeleteFilter || n.id != old.ID || n.ctx != nil {
		t.Fatalf("got %v, want delete of %d with nil Context", n, old.ID)
	}
}

func TestHandlerCallsAreSequentialInLogOrder(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	rec := newRecorder()
	inFlight := make(chan struct{}, 1)
	rec.before = func(_ context.Context, _ callout.NotifyType, _ *callout.Filter) error {
		select {
		case inFlight <- struct{}{}:
		default:
			t.Error("handler called concurrently")
		}
		<-inFlight
		return nil
	}
	e.register(ck, rec)
	const n = 200
	added := make([]*events.Filter, 0, n)
	for i := range n {
		f := e.add(ck, "f")
		added = append(added, f)
		if i%3 == 0 {
			e.del(f)
		}
	}
	for i, f := range added {
		rec.expect(t, addNote(f, false))
		if i%3 == 0 {
			rec.expect(t, delNote(f, false))
		}
	}
}

// Never stuck, no gap: the live consumer lost before it delivered anything
// comes back from the registration point, not from a new "now" (which a
// DeliverNew ordered consumer would re-apply, losing f).
func TestR2_LiveConsumerResetKeepsNoGap(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	rec := newRecorder()
	e.register(ck, rec)
	for name := range e.stream.ConsumerNames(context.Background()).Name() {
		if err := e.stream.DeleteConsumer(context.Background(), name); err != nil {
			t.Fatal(err)
		}
	}
	f := e.add(ck, "written while the consumer is gone")
	g := e.add(ck, "g")
	rec.expect(t, addNote(f, false), addNote(g, false))
}
