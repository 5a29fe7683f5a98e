package jetstream

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/events"
)

// What the tests in this file establish about roll-ups and TTLs on a real
// server, because the engine's compaction leans on each of them:
//
//   - a message with Nats-Rollup: sub drops its subject's earlier messages
//     and nothing else; sequences are never reused, so filter ids (the
//     sequence of the add) stay valid;
//   - a roll-up is fenced like any write: at a stale
//     Nats-Expected-Last-Sequence it is refused and drops nothing;
//   - in a publish chain, a roll-up passes Nats-Expected-Last-Msg-Id
//     (its predecessor is still the stream's last id when it is checked)
//     and the message after it passes too: the roll-up's purge does not
//     reset the stream's last message id;
//   - in an atomic batch a roll-up is allowed only on the first message of
//     its subject in the batch: the server refuses the whole batch
//     otherwise (PublishFenced strips such roll-ups, see
//     TestPublishFencedBatchDropsLaterRollupOfSameSubject);
//   - a tombstone with Nats-TTL leaves after the TTL, and the stream's last
//     sequence, which the fence names, does not move back when the last
//     message expires.

// tombstone is a message that rolls up its subject, with an optional TTL.
func tombstone(subject, msgID string, ttl time.Duration) *nats.Msg {
	m := newMsg(subject, msgID)
	m.Header.Set(events.HeaderRollup, events.RollupSubject)
	if ttl > 0 {
		m.Header.Set(events.HeaderTTL, events.FormatTTL(ttl))
	}
	return m
}

// subjectSeqs lists the sequences stored on subject, oldest first.
func subjectSeqs(t *testing.T, s natsjs.Stream, subject string) []uint64 {
	t.Helper()
	ctx := testCtx(t)
	var out []uint64
	for seq := uint64(1); ; seq++ {
		m, err := s.GetMsg(ctx, seq, natsjs.WithGetMsgSubject(subject))
		if errors.Is(err, natsjs.ErrMsgNotFound) {
			return out
		}
		if err != nil {
			t.Fatalf("get next on %s from %d: %v", subject, seq, err)
		}
		out = append(out, m.Sequence)
		seq = m.Sequence
	}
}

func TestRollupDropsOnlyItsSubjectsHistory(t *testing.T) {
	js, s := setupStream(t)
	ctx := testCtx(t)
	for _, subj := range []string{"wfp.filter.C.a", "wfp.filter.C.b", "wfp.filter.C.a"} {
		if _, err := js.PublishMsg(ctx, newMsg(subj, "")); err != nil {
			t.Fatal(err)
		}
	}
	ack, err := js.PublishMsg(ctx, tombstone("wfp.filter.C.a", "", 0))
	if err != nil || ack.Sequence != 4 {
		t.Fatalf("roll-up: %v %+v", err, ack)
	}
	if got := subjectSeqs(t, s, "wfp.filter.C.a"); len(got) != 1 || got[0] != 4 {
		t.Fatalf("subject a holds %v, want only the roll-up at 4", got)
	}
	if got := subjectSeqs(t, s, "wfp.filter.C.b"); len(got) != 1 || got[0] != 2 {
		t.Fatalf("subject b holds %v, want its message at 2", got)
	}
	// Sequences are not reused: the next message is 5, not 2.
	if ack, err = js.PublishMsg(ctx, newMsg("wfp.filter.C.c", "")); err != nil || ack.Sequence != 5 {
		t.Fatalf("after the roll-up: %v %+v", err, ack)
	}
	if st := state(t, s); st.Msgs != 3 || st.LastSeq != 5 || st.FirstSeq != 2 {
		t.Fatalf("state %+v, want 3 messages, first 2, last 5", st)
	}
}

func TestRollupIsFenced(t *testing.T) {
	js, s := setupStream(t)
	ctx := testCtx(t)
	if _, err := PublishFenced(ctx, js, 0, []*nats.Msg{newMsg("wfp.filter.C.a", "add-a")}); err != nil {
		t.Fatal(err)
	}
	if _, err := PublishFenced(ctx, js, 1, []*nats.Msg{newMsg("wfp.filter.C.b", "add-b")}); err != nil {
		t.Fatal(err)
	}
	// Stale: the stream is at 2.
	_, err := PublishFenced(ctx, js, 1, []*nats.Msg{tombstone("wfp.filter.C.a", "del-a", 0)})
	var fe *FenceError
	if !errors.As(err, &fe) || fe.Actual != 2 {
		t.Fatalf("stale roll-up: %v, want a FenceError at 2", err)
	}
	if got := subjectSeqs(t, s, "wfp.filter.C.a"); len(got) != 1 || got[0] != 1 {
		t.Fatalf("a refused roll-up purged: subject holds %v", got)
	}
	last, err := PublishFenced(ctx, js, 2, []*nats.Msg{tombstone("wfp.filter.C.a", "del-a", 0)})
	if err != nil || last != 3 {
		t.Fatalf("fenced roll-up: %d %v", last, err)
	}
	if got := subjectSeqs(t, s, "wfp.filter.C.a"); len(got) != 1 || got[0] != 3 {
		t.Fatalf("subject a holds %v, want only the roll-up at 3", got)
	}
}

func TestRollupInsidePublishChain(t *testing.T) {
	js, s := setupStream(t)
	ctx := testCtx(t)
	// add a; delete a (rolls up the add, its chain predecessor); add b,
	// fenced on the roll-up's id; delete b; add a again.
	msgs := []*nats.Msg{
		newMsg("wfp.filter.C.a", "add-a"),
		tombstone("wfp.filter.C.a", "del-a", 0),
		newMsg("wfp.filter.C.b", "add-b"),
		tombstone("wfp.filter.C.b", "del-b", 0),
		newMsg("wfp.filter.C.a", "add-a2"),
	}
	n, err := PublishChain(ctx, js, 0, msgs)
	if err != nil || n != len(msgs) {
		t.Fatalf("chain with roll-ups: %d %v", n, err)
	}
	if got := subjectSeqs(t, s, "wfp.filter.C.a"); len(got) != 2 || got[0] != 2 || got[1] != 5 {
		t.Fatalf("subject a holds %v, want the tombstone at 2 and the new add at 5", got)
	}
	if got := subjectSeqs(t, s, "wfp.filter.C.b"); len(got) != 1 || got[0] != 4 {
		t.Fatalf("subject b holds %v, want the tombstone at 4", got)
	}
	// The chain goes on from the last id as usual.
	if n, err := PublishChain(ctx, js, 5, []*nats.Msg{newMsg("wfp.filter.C.c", "add-c"), tombstone("wfp.filter.C.c", "del-c", 0)}); err != nil || n != 2 {
		t.Fatalf("next chain: %d %v", n, err)
	}
}

// The server's own rule, without PublishFenced's guard: a second message
// on a subject in one atomic batch may not roll it up, and the whole
// batch is refused.
func TestAtomicBatchRollupOnlyOnFirstOfItsSubject(t *testing.T) {
	js, s := setupStream(t)
	ctx := testCtx(t)
	batch := func(msgs ...*nats.Msg) error {
		return publishAtomic(ctx, js, msgs)
	}
	if err := batch(newMsg("wfp.filter.C.a", "add-a"), newMsg("wfp.filter.C.b", "add-b")); err != nil {
		t.Fatal(err)
	}
	// First on its subject in the batch: allowed, and it rolls up.
	if err := batch(tombstone("wfp.filter.C.a", "del-a", 0), newMsg("wfp.filter.C.a", "add-a2")); err != nil {
		t.Fatalf("delete then re-add in one batch: %v", err)
	}
	if got := subjectSeqs(t, s, "wfp.filter.C.a"); len(got) != 2 || got[0] != 3 || got[1] != 4 {
		t.Fatalf("subject a holds %v, want 3 and 4", got)
	}
	// Second on its subject: the whole batch is refused.
	err := batch(newMsg("wfp.filter.C.c", "add-c"), tombstone("wfp.filter.C.c", "del-c", 0))
	var apiErr *natsjs.APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("add then delete in one batch: %v, want the server's refusal", err)
	}
	if st := state(t, s); st.LastSeq != 4 {
		t.Fatalf("a refused batch wrote: last %d", st.LastSeq)
	}
}

// PublishFenced keeps a batch that adds and deletes the same filter
// writable: the later message's roll-up is dropped, and its TTL with it,
// or the add it leaves behind would be all that remains once the
// tombstone expired.
func TestPublishFencedBatchDropsLaterRollupOfSameSubject(t *testing.T) {
	js, s := setupStream(t)
	ctx := testCtx(t)
	msgs := []*nats.Msg{
		tombstone("wfp.filter.C.x", "del-x", time.Hour), // first on its subject: kept
		newMsg("wfp.filter.C.c", "add-c"),
		tombstone("wfp.filter.C.c", "del-c", time.Hour), // second: stripped
	}
	last, err := PublishFenced(ctx, js, 0, msgs)
	if err != nil || last != 3 {
		t.Fatalf("batch: %d %v", last, err)
	}
	if got := subjectSeqs(t, s, "wfp.filter.C.c"); len(got) != 2 {
		t.Fatalf("subject c holds %v, want the add and the tombstone", got)
	}
	for seq, want := range map[uint64]bool{1: true, 3: false} {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Header.Get(events.HeaderRollup) != "" && m.Header.Get(events.HeaderTTL) != ""; got != want {
			t.Errorf("seq %d: roll-up and TTL kept = %v, want %v (headers %v)", seq, got, want, m.Header)
		}
	}
	// The caller's messages are untouched, so a retry is the same batch.
	if msgs[2].Header.Get(events.HeaderRollup) == "" {
		t.Error("PublishFenced modified the caller's message")
	}
}

// waitGone waits until the server no longer has message seq.
func waitGone(t *testing.T, s natsjs.Stream, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := s.GetMsg(testCtx(t), seq)
		if errors.Is(err, natsjs.ErrMsgNotFound) {
			return
		}
		if err != nil {
			t.Fatalf("get %d: %v", seq, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("message %d still stored after 20s", seq)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestTombstoneTTLExpiresAndTheFenceStaysPut(t *testing.T) {
	js, s := setupStream(t)
	ctx := testCtx(t)
	if _, err := PublishChain(ctx, js, 0, []*nats.Msg{
		newMsg("wfp.filter.C.a", "add-a"), newMsg("wfp.filter.C.b", "add-b"),
		tombstone("wfp.filter.C.a", "del-a", time.Second),
	}); err != nil {
		t.Fatal(err)
	}
	waitGone(t, s, 3)
	st := state(t, s)
	if st.Msgs != 1 || st.LastSeq != 3 {
		t.Fatalf("after the TTL: %+v, want only b, last sequence still 3", st)
	}
	// The fence still names 3, the sequence of a message that is gone.
	if _, err := PublishFenced(ctx, js, 2, []*nats.Msg{newMsg("wfp.filter.C.c", "")}); !errors.Is(err, ErrWrongLastSequence) {
		t.Fatalf("fence at 2: %v, want wrong last sequence", err)
	}
	if last, err := PublishFenced(ctx, js, 3, []*nats.Msg{newMsg("wfp.filter.C.c", "")}); err != nil || last != 4 {
		t.Fatalf("fence at 3: %d %v", last, err)
	}
}

func TestTombstoneTTLInsideAtomicBatch(t *testing.T) {
	js, s := setupStream(t)
	ctx := testCtx(t)
	if _, err := PublishFenced(ctx, js, 0, []*nats.Msg{newMsg("wfp.filter.C.a", "add-a")}); err != nil {
		t.Fatal(err)
	}
	if _, err := PublishFenced(ctx, js, 1, []*nats.Msg{
		tombstone("wfp.filter.C.a", "del-a", time.Second), newMsg("wfp.filter.C.b", "add-b"),
	}); err != nil {
		t.Fatal(err)
	}
	waitGone(t, s, 2)
	if got := subjectSeqs(t, s, "wfp.filter.C.a"); len(got) != 0 {
		t.Fatalf("subject a holds %v after roll-up and TTL, want nothing", got)
	}
}

// publishAtomic sends msgs as one atomic batch without PublishFenced's
// guards, to show what the server itself accepts.
func publishAtomic(ctx context.Context, js natsjs.JetStream, msgs []*nats.Msg) error {
	_, err := publishBatch(ctx, js, msgs)
	return err
}
