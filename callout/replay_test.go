package callout_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
	"github.com/wfpnats/wfp/jetstream"
)

// R3: a replay agent is told every current filter once, with Initial set,
// then Synced closes, then it is live: here with filters added and deleted
// while the snapshot is being read (the handler is stuck on the first one).
func TestR3_ReplaySnapshotThenLiveWithWritesDuringSnapshot(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	a1 := e.add(ck, "A")
	b := e.add(ck, "B")
	c := e.add(ck, "C")
	e.del(b) // a tombstone in the snapshot: must not be told
	other := e.add(newKey(), "other callout")
	_ = other

	var agent atomic.Pointer[callout.Agent]
	release := make(chan struct{})
	firstCall := make(chan struct{})
	calls := 0
	type seen struct {
		note
		synced bool
	}
	seenCh := make(chan seen, 100)
	h := callout.HandlerFunc(func(ctx context.Context, t callout.NotifyType, f *callout.Filter) error {
		calls++
		if calls == 1 {
			close(firstCall)
			<-release
		}
		if t == callout.AddFilter {
			f.Context = &filterState{id: f.ID}
		}
		seenCh <- seen{note{t: t, key: f.Key, id: f.ID, initial: f.Initial, ctx: f.Context}, isClosed(agent.Load().Synced())}
		return nil
	})
	ag := e.register(ck, h, callout.WithMode(callout.Replay))
	agent.Store(ag)

	waitClosed(t, firstCall, "first snapshot call")
	if isClosed(ag.Synced()) {
		t.Fatal("Synced closed before the snapshot was delivered")
	}
	// Written while the snapshot is read: all of it comes live, after Synced.
	d := e.add(ck, "D")
	e.del(a1)
	f := e.add(ck, "F")
	e.del(f)
	close(release)

	want := []struct {
		n      note
		synced bool
	}{
		{addNote(a1, true), false},
		{addNote(c, true), false},
		{addNote(d, false), true},
		{delNote(a1, false), true},
		{addNote(f, false), true},
		{delNote(f, false), true},
	}
	for i, w := range want {
		var got seen
		select {
		case got = <-seenCh:
		case <-ctxTimeout(t):
			t.Fatalf("notification %d missing", i)
		}
		if got.t != w.n.t || got.id != w.n.id || got.key != w.n.key || got.initial != w.n.initial || got.synced != w.synced {
			t.Fatalf("notification %d: got %v synced=%v, want %v synced=%v", i, got.note, got.synced, w.n, w.synced)
		}
		if got.t == callout.DeleteFilter {
			if st, _ := got.ctx.(*filterState); st == nil || st.id != got.id {
				t.Fatalf("delete of %d: Context %v, want the state set at its add", got.id, got.ctx)
			}
		}
	}
	waitClosed(t, ag.Synced(), "Synced")
	waitStats(t, ag, func(s callout.Stats) bool {
		return s.Adds == 4 && s.Deletes == 2 && s.Tombstones == 1 && s.Held == 2
	})
	if _, ok := ag.Lookup(c.ID); !ok {
		t.Fatal("snapshot filter C not held")
	}
}

func TestR3_ReplayOfEmptyCalloutIsSyncedAtOnce(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	e.add(newKey(), "someone else's")
	rec := newRecorder()
	a := e.register(ck, rec, callout.WithMode(callout.Replay))
	if !isClosed(a.Synced()) {
		t.Fatal("empty snapshot: Synced must be closed when Register returns")
	}
	f := e.add(ck, "live")
	rec.expect(t, addNote(f, false))
}

// R3 with only tombstones: the snapshot has messages but no filter.
func TestR3_ReplayOfOnlyTombstonesSyncsWithoutNotifications(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	for range 3 {
		e.del(e.add(ck, "gone"))
	}
	rec := newRecorder()
	a := e.register(ck, rec, callout.WithMode(callout.Replay))
	waitClosed(t, a.Synced(), "Synced")
	f := e.add(ck, "live")
	rec.expect(t, addNote(f, false))
	waitStats(t, a, func(s callout.Stats) bool { return s.Tombstones == 3 && s.Deletes == 0 })
}

// R3, no gap and no duplicate across a consumer reset in the middle of
// the snapshot: the ordered consumer restarts from a stream sequence and
// then also delivers history (X's add and delete), so counting messages
// alone would end the snapshot too early.
func TestR3_ReplaySurvivesConsumerResetMidSnapshot(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	const n = 700 // more than one pull batch, so the reset lands mid-snapshot
	current := map[uint64]*events.Filter{}
	for range n {
		f := e.add(ck, "f")
		current[f.ID] = f
	}
	x := e.add(ck, "X")
	e.del(x)
	y := e.add(ck, "Y")
	current[y.ID] = y

	rec := newRecorder()
	release := make(chan struct{})
	first := make(chan struct{})
	var calls atomic.Int64
	rec.before = func(context.Context, callout.NotifyType, *callout.Filter) error {
		if calls.Add(1) == 1 {
			close(first)
			<-release
		}
		return nil
	}
	a := e.register(ck, rec, callout.WithMode(callout.Replay))
	waitClosed(t, first, "first snapshot call")
	names := e.stream.ConsumerNames(context.Background())
	for name := range names.Name() {
		if err := e.stream.DeleteConsumer(context.Background(), name); err != nil {
			t.Fatal(err)
		}
	}
	close(release)
	waitClosed(t, a.Synced(), "Synced")
	z := e.add(ck, "Z")

	added := map[uint64]bool{}
	xSeen := 0
	for {
		got := rec.next(t)
		if got.id == z.ID {
			if got.t != callout.AddFilter || got.initial {
				t.Fatalf("live Z: %v", got)
			}
			break
		}
		if got.id == x.ID { // history replayed after the reset: add then delete
			xSeen++
			continue
		}
		if got.t != callout.AddFilter || !got.initial || current[got.id] == nil {
			t.Fatalf("unexpected %v", got)
		}
		if added[got.id] {
			t.Fatalf("duplicate %v", got)
		}
		added[got.id] = true
	}
	if len(added) != len(current) {
		t.Fatalf("snapshot delivered %d filters before Z, want %d", len(added), len(current))
	}
	if xSeen != 0 && xSeen != 2 {
		t.Fatalf("X told %d times, want 0 or add+delete", xSeen)
	}
	t.Logf("stats %+v (X replayed: %v)", a.Stats(), xSeen == 2)
}

// A replay agent whose handler is slower than the server: the snapshot's
// consumer has handed every message over (none pending on the server)
// while most wait in the client, unread. That is not the end of the
// snapshot (the check for a snapshot whose rest left the stream must not
// take it for one), or the agent would sync and drop them.
func TestR3_SnapshotHandedOverIsNotSnapshotRead(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	const n = 20
	for i := range n {
		e.add(ck, fmt.Sprint("f", i))
	}
	blocked, release := make(chan struct{}), make(chan struct{})
	first := true
	h := callout.HandlerFunc(func(ctx context.Context, t callout.NotifyType, f *callout.Filter) error {
		if first {
			first = false
			close(blocked)
			<-release
		}
		return nil
	})
	ag := e.register(ck, h, callout.WithMode(callout.Replay))
	waitClosed(t, blocked, "the first snapshot call")
	cons, err := e.js.Consumer(context.Background(), jetstream.DefaultStreamName, events.AgentConsumer(ck, ag.ID()))
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the server to hand the whole snapshot over", func() bool {
		ci, err := cons.Info(context.Background())
		return err == nil && ci.NumPending == 0
	})
	drained := callout.SnapshotDrained(ag)
	close(release)
	if drained {
		t.Fatal("the snapshot counts as read with 19 of its messages unhandled")
	}
	select {
	case <-ag.Synced():
	case <-ctxTimeout(t):
		t.Fatal("the agent did not sync")
	}
	if held := ag.Stats().Held; held != n {
		t.Fatalf("synced holding %d filters, want %d", held, n)
	}
}
