package callout_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/events"
)

// R8, all together or not at all: the parts of a transaction, written
// here one publish at a time, are held until the last one arrives; the
// handler sees none of them before, then all of them, in order.
func TestR8_TxPartsHeldUntilCompleteThenDeliveredTogether(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	rec := newRecorder()
	a := e.register(ck, rec)
	b := e.prepareTx(addOp(ck, "t1"), addOp(ck, "t2"), addOp(ck, "t3"), addOp(ck, "t4"))
	for i := range 3 {
		e.publishPart(b, i)
		waitStats(t, a, func(s callout.Stats) bool { return s.HeldTxParts == i+1 })
		rec.expectNone(t)
	}
	e.publishPart(b, 3)
	rec.expect(t, addNote(b.filters[0], false), addNote(b.filters[1], false), addNote(b.filters[2], false), addNote(b.filters[3], false))
	waitStats(t, a, func(s callout.Stats) bool {
		return s.Transactions == 1 && s.HeldTxParts == 0 && s.Adds == 4 && s.Held == 4 && s.PostCommits == 0
	})
}

// R8 post-commit: after all of a transaction's notifications, an agent
// that asked gets AddFilterPostCommit for each filter the transaction
// added and the agent holds: not the one it refused, not the one the
// transaction deleted again. Deletes inside a transaction are delivered
// in their place.
func TestR8_PostCommitAfterTheTxForFiltersHeld(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	rec := newRecorder()
	rec.before = func(_ context.Context, nt callout.NotifyType, f *callout.Filter) error {
		if nt == callout.AddFilter && f.Name == "refused" {
			return errors.New("no")
		}
		if nt == callout.AddFilterPostCommit {
			if st, _ := f.Context.(*filterState); st == nil || st.id != f.ID {
				t.Errorf("post-commit of %d: Context %v, want the one AddFilter set", f.ID, f.Context)
			}
		}
		return nil
	}
	a := e.register(ck, rec, callout.WithPostCommit())
	b := e.prepareTx(addOp(ck, "a"), addOp(ck, "refused"), addOp(ck, "b"), delOfOp(0), addOp(ck, "c"))
	fa, fb, fc := b.filters[0], b.filters[2], b.filters[4]
	e.commitTx(b)
	rec.expect(t,
		addNote(fa, false), addNote(fb, false), delNote(fa, false), addNote(fc, false),
		pcNote(fb), pcNote(fc))
	plain := e.add(ck, "plain") // no post-commit outside a transaction
	rec.expect(t, addNote(plain, false))
	sentinel := e.add(ck, "sentinel")
	rec.expect(t, addNote(sentinel, false))
	waitStats(t, a, func(s callout.Stats) bool {
		return s.Transactions == 1 && s.PostCommits == 2 && s.Refused == 1 && s.Held == 4
	})
}

// R8: post-commit only for agents that asked: two agents of one callout
// get the same adds; only the one registered WithPostCommit gets more.
func TestR8_PostCommitOnlyWithPostCommit(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	asked, plain := newRecorder(), newRecorder()
	e.register(ck, asked, callout.WithPostCommit())
	e.register(ck, plain)
	b := e.prepareTx(addOp(ck, "x"), addOp(ck, "y"))
	e.commitTx(b)
	x, y := b.filters[0], b.filters[1]
	after := e.add(ck, "after")
	asked.expect(t, addNote(x, false), addNote(y, false), pcNote(x), pcNote(y), addNote(after, false))
	plain.expect(t, addNote(x, false), addNote(y, false), addNote(after, false))
}

// A transaction's parts are counted per callout: an agent sees only its
// callout's messages of a transaction that spans several.
func TestR8_TxPartsCountedPerCallout(t *testing.T) {
	e := newEnv(t)
	ck, other := newKey(), newKey()
	rec := newRecorder()
	a := e.register(ck, rec, callout.WithPostCommit())
	b := e.prepareTx(addOp(ck, "mine 1"), addOp(other, "theirs"), addOp(ck, "mine 2"))
	e.commitTx(b)
	m1, m2 := b.filters[0], b.filters[2]
	rec.expect(t, addNote(m1, false), addNote(m2, false), pcNote(m1), pcNote(m2))
	waitStats(t, a, func(s callout.Stats) bool { return s.Transactions == 1 })
}

// Never stuck: a message outside the transaction, or of another one,
// arriving while a transaction is incomplete (one server never writes
// that) makes the agent deliver what it holds first, with a warning. The
// stragglers of that transaction are delivered as they come, and a
// transaction delivered in pieces gets no post-commit.
func TestR8_InterleavedMessageFlushesIncompleteTx(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	rec := newRecorder()
	logs := &logBuffer{}
	a := e.register(ck, rec, callout.WithPostCommit(), callout.WithLogger(logs.logger()))

	// A plain message in the middle.
	b := e.prepareTx(addOp(ck, "t1"), addOp(ck, "t2"), addOp(ck, "t3"))
	e.publishPart(b, 0)
	e.publishPart(b, 1)
	waitStats(t, a, func(s callout.Stats) bool { return s.HeldTxParts == 2 })
	rec.expectNone(t)
	p := e.add(ck, "plain")
	rec.expect(t, addNote(b.filters[0], false), addNote(b.filters[1], false), addNote(p, false))
	e.publishPart(b, 2)
	rec.expect(t, addNote(b.filters[2], false))

	// Another transaction in the middle.
	c := e.prepareTx(addOp(ck, "c1"), addOp(ck, "c2"))
	e.publishPart(c, 0)
	waitStats(t, a, func(s callout.Stats) bool { return s.HeldTxParts == 1 })
	d := e.prepareTx(addOp(ck, "d1"))
	e.publishPart(d, 0)
	e.publishPart(c, 1)
	rec.expect(t, addNote(c.filters[0], false), addNote(d.filters[0], false), pcNote(d.filters[0]), addNote(c.filters[1], false))

	last := e.add(ck, "last") // nothing came between: no post-commit for b or c
	rec.expect(t, addNote(last, false))
	waitStats(t, a, func(s callout.Stats) bool { return s.Transactions == 1 && s.PostCommits == 1 && s.HeldTxParts == 0 })
	if n := strings.Count(logs.String(), "transaction incomplete"); n != 2 {
		t.Fatalf("%d warnings about incomplete transactions, want 2:\n%s", n, logs)
	}
}

// Never stuck: when the rest of a transaction does not come, the agent
// delivers what it holds after the hold timeout.
func TestR8_IncompleteTxDeliveredAfterHoldTimeout(t *testing.T) {
	defer callout.SetTxHoldTimeout(200 * time.Millisecond)()
	e := newEnv(t)
	ck := newKey()
	rec := newRecorder()
	logs := &logBuffer{}
	a := e.register(ck, rec, callout.WithLogger(logs.logger()))
	b := e.prepareTx(addOp(ck, "t1"), addOp(ck, "t2"))
	e.publishPart(b, 0) // the second part never comes
	rec.expect(t, addNote(b.filters[0], false))
	waitStats(t, a, func(s callout.Stats) bool { return s.HeldTxParts == 0 && s.Transactions == 0 })
	if !strings.Contains(logs.String(), "did not arrive within") {
		t.Fatalf("no warning about the missing parts:\n%s", logs)
	}
}

// A transaction whose first parts were written before the agent started
// reading: it does not wait for those, it delivers the rest together.
func TestR8_TxBegunBeforeRegisterIsNotWaitedFor(t *testing.T) {
	defer callout.SetTxHoldTimeout(time.Minute)()
	e := newEnv(t)
	ck := newKey()
	b := e.prepareTx(addOp(ck, "t1"), addOp(ck, "t2"), addOp(ck, "t3"))
	e.publishPart(b, 0)
	rec := newRecorder()
	a := e.register(ck, rec)
	e.publishPart(b, 1)
	waitStats(t, a, func(s callout.Stats) bool { return s.HeldTxParts == 1 })
	rec.expectNone(t)
	e.publishPart(b, 2)
	rec.expect(t, addNote(b.filters[1], false), addNote(b.filters[2], false))
	waitStats(t, a, func(s callout.Stats) bool { return s.Transactions == 1 })
}

// Malformed transaction headers make a plain message, with a warning.
func TestR8_MalformedTxHeadersMakeAPlainMessage(t *testing.T) {
	defer callout.SetTxHoldTimeout(time.Minute)()
	e := newEnv(t)
	ck := newKey()
	rec := newRecorder()
	logs := &logBuffer{}
	a := e.register(ck, rec, callout.WithLogger(logs.logger()))
	for i, h := range []nats.Header{
		{events.HeaderTxID: {"tx"}, events.HeaderTxPart: {"two of three"}},
		{events.HeaderTxID: {"tx"}, events.HeaderTxPart: {"3/2"}},
		{events.HeaderTxPart: {"1/2"}},
	} {
		b := e.prepareTx(addOp(ck, "f"))
		for k, v := range h {
			b.msgs[0].Header[k] = v
		}
		if h.Get(events.HeaderTxID) == "" {
			b.msgs[0].Header.Del(events.HeaderTxID)
		}
		e.publishPart(b, 0)
		rec.expect(t, addNote(b.filters[0], false))
		if n := strings.Count(logs.String(), "malformed transaction headers"); n != i+1 {
			t.Fatalf("%d warnings after message %d, want %d:\n%s", n, i, i+1, logs)
		}
	}
	waitStats(t, a, func(s callout.Stats) bool { return s.Adds == 3 && s.Transactions == 0 })
}

// R3 with transactions: the replay snapshot is committed state, the last
// message of each filter, so a transaction's parts may be superseded; the
// agent ignores transaction headers there and does not wait.
func TestR3_ReplaySnapshotIgnoresTxHeaders(t *testing.T) {
	defer callout.SetTxHoldTimeout(time.Minute)()
	e := newEnv(t)
	ck := newKey()
	b := e.prepareTx(addOp(ck, "a"), addOp(ck, "b"), addOp(ck, "c"))
	e.commitTx(b)
	e.del(b.filters[1]) // part 2 of 3 superseded by a tombstone
	rec := newRecorder()
	a := e.register(ck, rec, callout.WithMode(callout.Replay), callout.WithPostCommit())
	rec.expect(t, addNote(b.filters[0], true), addNote(b.filters[2], true))
	waitClosed(t, a.Synced(), "Synced")
	d := e.add(ck, "live")
	rec.expect(t, addNote(d, false))
	waitStats(t, a, func(s callout.Stats) bool {
		return s.Transactions == 0 && s.HeldTxParts == 0 && s.PostCommits == 0 && s.Tombstones == 1
	})
}
