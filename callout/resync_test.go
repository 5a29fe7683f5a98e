package callout_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
	"github.com/wfpnats/wfp/jetstream"
)

// newEnvHorizon is newEnv on a stream whose deletes leave after horizon.
func newEnvHorizon(t *testing.T, horizon time.Duration) *env {
	t.Helper()
	e := newEnv(t)
	s, err := jetstream.EnsureStream(context.Background(), e.js, jetstream.StreamConfig{Horizon: horizon})
	if err != nil {
		t.Fatal(err)
	}
	e.stream = s
	e.horizon = horizon
	return e
}

// delCompact writes f's FilterDeleted as the engine does: rolling up the
// filter's subject, with the stream's horizon as its TTL.
func (e *env) delCompact(f *events.Filter, ttl time.Duration) uint64 {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	ev := events.NewFilterEvent(events.FilterDeleted, f.Clone())
	m, err := e.subj.Message(ev)
	if err != nil {
		e.t.Fatal(err)
	}
	m.Compact(ttl)
	e.stampHorizon(m)
	return e.publishStamped(ev, m)
}

// waitGone waits until the server no longer holds message seq (its TTL
// passed).
func (e *env) waitGone(seq uint64) {
	e.t.Helper()
	testkit.Eventually(e.t, "the tombstone to leave the stream", func() bool {
		_, err := e.stream.GetMsg(context.Background(), seq)
		return errors.Is(err, natsjs.ErrMsgNotFound)
	})
}

// dropConsumers deletes every consumer on the stream, as a server that lost
// them would: an agent's ordered consumer starts again from where it was.
func (e *env) dropConsumers() {
	e.t.Helper()
	for name := range e.stream.ConsumerNames(context.Background()).Name() {
		if err := e.stream.DeleteConsumer(context.Background(), name); err != nil {
			e.t.Fatal(err)
		}
	}
}

// A live agent that was not reading for longer than the horizon missed a
// delete for good (the tombstone expired before its consumer came back).
// It notices, resyncs from a snapshot, hands the gone filter's Context back
// once, gets the filter added meanwhile, and goes on live.
func TestResync_LiveAgentAwayLongerThanTheHorizon(t *testing.T) {
	const horizon = 2 * time.Second
	e := newEnvHorizon(t, horizon)
	ck := newKey()
	rec, inX, release := stuckIn("X")
	a := e.register(ck, rec)
	f1, f2 := e.add(ck, "f1"), e.add(ck, "f2")
	rec.expect(t, addNote(f1, false), addNote(f2, false))

	// Away: the handler is stuck, and its consumer is gone, so nothing
	// written meanwhile reaches the agent until it starts again.
	x := e.add(ck, "X")
	waitClosed(t, inX, "the handler in X")
	e.dropConsumers()
	e.waitGone(e.delCompact(f1, horizon)) // f1's delete comes and goes
	f3 := e.add(ck, "f3")
	release()

	rec.expect(t, addNote(x, false))
	got := rec.next(t)
	if got.t != callout.DeleteFilter || got.id != f1.ID || got.ctx == nil || got.ctx.(*filterState).id != f1.ID {
		t.Fatalf("after the gap: %v, want f1's delete with the Context its add left", got)
	}
	rec.expect(t, addNote(f3, true))
	waitStats(t, a, func(s callout.Stats) bool { return s.Resyncs == 1 && s.Held == 3 })
	if _, ok := a.Lookup(f1.ID); ok {
		t.Fatal("f1 is still held after the resync")
	}
	// Live again, once.
	f4 := e.add(ck, "f4")
	e.del(f2)
	rec.expect(t, addNote(f4, false), delNote(f2, false))
}

// A durable agent stopped for longer than the horizon cannot tell which
// deletes it missed: when it comes back it replays the callout's live
// filters (Initial) instead of trusting the log, and then goes on live.
func TestResync_DurableAgentBackAfterTheHorizon(t *testing.T) {
	const horizon = 2 * time.Second
	e := newEnvHorizon(t, horizon)
	ck := newKey()
	rec := newRecorder()
	a := e.register(ck, rec, callout.WithDurable("d"))
	f1, f2 := e.add(ck, "f1"), e.add(ck, "f2")
	rec.expect(t, addNote(f1, false), addNote(f2, false))
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	e.waitGone(e.delCompact(f1, horizon))
	f3 := e.add(ck, "f3")

	rec2 := newRecorder()
	a2 := e.register(ck, rec2, callout.WithDurable("d"))
	rec2.expect(t, addNote(f2, true), addNote(f3, true))
	waitStats(t, a2, func(s callout.Stats) bool { return s.Resyncs == 1 && s.Held == 2 })
	f4 := e.add(ck, "f4")
	rec2.expect(t, addNote(f4, false))
}

// Within the horizon a durable agent resumes as before, no resync: it
// recorded how far it had read when it stopped.
func TestResync_DurableAgentBackWithinTheHorizonResumes(t *testing.T) {
	e := newEnvHorizon(t, time.Hour)
	ck := newKey()
	rec := newRecorder()
	a := e.register(ck, rec, callout.WithDurable("d"))
	f1 := e.add(ck, "f1")
	rec.expect(t, addNote(f1, false))
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	f2 := e.add(ck, "f2")
	e.delCompact(f1, time.Hour)

	rec2 := newRecorder()
	a2 := e.register(ck, rec2, callout.WithDurable("d"))
	rec2.expect(t, addNote(f2, false), delNote(f1, false))
	if s := a2.Stats(); s.Resyncs != 0 {
		t.Fatalf("stats %+v: a durable back within its horizon resynced", s)
	}
}

// An idle agent that keeps its connection is not "away": it checks that
// it has read the newest message of its callout, and stays caught up
// without resyncing, however long nothing happens.
func TestResync_IdleAgentStaysCaughtUp(t *testing.T) {
	const horizon = 4 * time.Second
	e := newEnvHorizon(t, horizon)
	ck := newKey()
	rec := newRecorder()
	start := time.Now()
	a := e.register(ck, rec)
	f1 := e.add(ck, "f1")
	rec.expect(t, addNote(f1, false))
	testkit.Eventually(t, "two horizons of idle time, caught up all along", func() bool {
		return a.Stats().CaughtUp.After(start.Add(2 * horizon))
	})
	f2 := e.add(ck, "f2")
	rec.expect(t, addNote(f2, false))
	if s := a.Stats(); s.Resyncs != 0 {
		t.Fatalf("stats %+v: an idle agent resynced", s)
	}
}

// A roll-up drops every earlier message of its subject, so a key deleted,
// added again and deleted again leaves only the last delete: an agent that
// held the first filter and did not read the middle (here a durable
// agent, whose consumer was gone meanwhile, made anew from its ack floor)
// learns from the newer filter id that the old one is gone, and hands its
// Context back.
func TestResync_NewerFilterOfTheSameKeyReleasesTheOldOne(t *testing.T) {
	e := newEnv(t) // no horizon: this is about roll-ups alone
	ck := newKey()
	rec, inX, release := stuckIn("X")
	a := e.register(ck, rec, callout.WithDurable("d"))
	old := e.add(ck, "old")
	rec.expect(t, addNote(old, false))
	x := e.add(ck, "X")
	waitClosed(t, inX, "the handler in X")
	e.dropConsumers()
	e.delCompact(old, 0)
	newer := e.addKey(ck, old.Key, "newer")
	e.delCompact(newer, 0) // rolls up old's delete and newer's add
	release()

	rec.expect(t, addNote(x, false))
	got := rec.next(t)
	if got.t != callout.DeleteFilter || got.id != old.ID || got.ctx == nil {
		t.Fatalf("got %v, want old's delete with its Context", got)
	}
	rec.expect(t, delNote(newer, false)) // R4: the delete of a filter never seen, no Context
	if _, ok := a.Lookup(old.ID); ok {
		t.Fatal("the old filter is still held")
	}
}

// The same from the other side: an add of a newer filter of a key the
// agent holds means the held one was deleted, though its delete is not in
// the log any more (here an operator purged it).
func TestResync_AddOfANewerFilterOfTheSameKeyReleasesTheOldOne(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	rec, inX, release := stuckIn("X")
	a := e.register(ck, rec, callout.WithDurable("d"))
	old := e.add(ck, "old")
	rec.expect(t, addNote(old, false))
	x := e.add(ck, "X")
	waitClosed(t, inX, "the handler in X")
	e.dropConsumers()
	tomb := e.delCompact(old, 0)
	if err := e.stream.Purge(context.Background(), natsjs.WithPurgeSubject(e.subj.Filter(old)), natsjs.WithPurgeSequence(tomb+1)); err != nil {
		t.Fatal(err)
	}
	newer := e.addKey(ck, old.Key, "newer")
	release()

	rec.expect(t, addNote(x, false))
	got := rec.next(t)
	if got.t != callout.DeleteFilter || got.id != old.ID || got.ctx == nil {
		t.Fatalf("got %v, want old's delete with its Context", got)
	}
	rec.expect(t, addNote(newer, false))
	if _, ok := a.Lookup(old.ID); ok {
		t.Fatal("the old filter is still held")
	}
}

// A replay snapshot counts its messages when it starts; one that leaves
// the stream before it is read (its TTL passed) never comes. Here the
// agent's reader fetched the first 500 (nats.go's default batch) while the
// handler sat in the first; the 501st, a short-lived tombstone, left
// before the next fetch. The agent asks the server when the snapshot
// stalls, and is synced when nothing is left.
func TestReplay_SnapshotWhoseLastMessageLeftStillSyncs(t *testing.T) {
	e := newEnvHorizon(t, time.Hour) // no resync in this test
	ck := newKey()
	var first *events.Filter
	for i := range 500 {
		f := e.add(ck, "f")
		if i == 0 {
			first = f
		}
	}
	tomb := e.delCompact(e.add(ck, "f0"), time.Second) // the snapshot's last message, short-lived
	inFirst, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int64
	rec := newRecorder()
	rec.before = func(context.Context, callout.NotifyType, *callout.Filter) error {
		if calls.Add(1) == 1 {
			close(inFirst)
			<-release
		}
		return nil
	}
	a := e.register(ck, rec, callout.WithMode(callout.Replay))
	waitClosed(t, inFirst, "the handler in the first filter")
	e.waitGone(tomb)
	close(release)
	rec.expect(t, addNote(first, true))
	waitClosed(t, a.Synced(), "Synced")
	if s := a.Stats(); s.Adds != 500 || s.Resyncs != 0 {
		t.Fatalf("stats %+v, want the 500 filters and no resync", s)
	}
}

// stuckIn is a recorder whose handler, in the AddFilter of the filter
// named name, signals on the returned channel and waits for release.
func stuckIn(name string) (rec *recorder, in <-chan struct{}, release func()) {
	entered, gate := make(chan struct{}), make(chan struct{})
	rec = newRecorder()
	rec.before = func(_ context.Context, nt callout.NotifyType, f *callout.Filter) error {
		if nt == callout.AddFilter && f.Name == name {
			close(entered)
			<-gate
		}
		return nil
	}
	var once sync.Once
	return rec, entered, func() { once.Do(func() { close(gate) }) }
}
