package callout_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
)

// A durable live agent resumes where it stopped: after Close and a new
// Register it gets what was written meanwhile, and nothing again.
func TestDurable_ResumesAfterCloseAndReRegister(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	before := e.add(ck, "before the durable existed") // R2: never announced

	rec := newRecorder()
	a := e.register(ck, rec, callout.WithDurable("agent-1"))
	f1, f2 := e.add(ck, "f1"), e.add(ck, "f2")
	rec.expect(t, addNote(f1, false), addNote(f2, false))
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	// Written while no agent runs.
	f3 := e.add(ck, "f3")
	e.del(f1)
	e.del(before)

	rec2 := newRecorder()
	e.register(ck, rec2, callout.WithDurable("agent-1"))
	f4 := e.add(ck, "f4")
	rec2.expect(t, addNote(f3, false), delNote(f1, false), delNote(before, false), addNote(f4, false))
}

// Close in the middle of an AddFilter (the handler gives up when its ctx
// is cancelled) leaves the message unacked and is no refusal: the next
// agent on the durable gets it at once, before anything later.
func TestDurable_AddInterruptedByCloseIsRedelivered(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	inAdd := make(chan struct{}, 1)
	h := callout.HandlerFunc(func(ctx context.Context, _ callout.NotifyType, _ *callout.Filter) error {
		inAdd <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	})
	a := e.register(ck, h, callout.WithDurable("d"))
	f := e.add(ck, "f")
	waitFor(t, inAdd)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if s := a.Stats(); s.Refused != 0 || s.HandlerErrors != 0 {
		t.Fatalf("an add cut short by Close counted as refused: %+v", s)
	}
	g := e.add(ck, "g")

	rec := newRecorder()
	e.register(ck, rec, callout.WithDurable("d"))
	rec.expect(t, addNote(f, false), addNote(g, false))
}

func TestDurable_Refusals(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	_, err := callout.Register(context.Background(), e.js, ck, newRecorder(), callout.WithMode(callout.Replay), callout.WithDurable("x"))
	if !errors.Is(err, callout.ErrInvalidOption) {
		t.Fatalf("replay + durable: %v, want ErrInvalidOption", err)
	}

	e.register(ck, newRecorder(), callout.WithDurable("shared")).Close()
	_, err = callout.Register(context.Background(), e.js, newKey(), newRecorder(), callout.WithDurable("shared"))
	if !errors.Is(err, callout.ErrDurableConflict) {
		t.Fatalf("durable of another callout: %v, want ErrDurableConflict", err)
	}
}

// Never stuck: a durable consumer deleted under a running agent is
// recreated at the first message not yet handled.
func TestDurable_RecreatedWhenDeleted(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	rec := newRecorder()
	e.register(ck, rec, callout.WithDurable("fragile"))
	f1 := e.add(ck, "f1")
	rec.expect(t, addNote(f1, false))
	if err := e.stream.DeleteConsumer(context.Background(), "fragile"); err != nil {
		t.Fatal(err)
	}
	f2 := e.add(ck, "f2")
	rec.expect(t, addNote(f2, false))
	if _, err := e.stream.Consumer(context.Background(), "fragile"); err != nil {
		t.Fatalf("durable not recreated: %v", err)
	}
}

// The durable consumer acknowledges units: a single event, or a whole
// transaction once the handler is done with all of it. While the agent
// holds part of a transaction, nothing of it is acked.
func TestDurable_AcksEachUnitWhenHandled(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	rec := newRecorder()
	a := e.register(ck, rec, callout.WithDurable("units"))
	consumer := func() *natsjs.ConsumerInfo {
		t.Helper()
		c, err := e.stream.Consumer(context.Background(), "units")
		if err != nil {
			t.Fatal(err)
		}
		return c.CachedInfo()
	}
	if cfg := consumer().Config; cfg.AckPolicy != natsjs.AckAllPolicy || cfg.MaxAckPending < 2000 {
		t.Fatalf("consumer acks %s with max ack pending %d, want all and at least 2000", cfg.AckPolicy, cfg.MaxAckPending)
	}
	f := e.add(ck, "single")
	rec.expect(t, addNote(f, false))
	testkit.Eventually(t, "the single event acked", func() bool {
		ci := consumer()
		return ci.AckFloor.Stream == f.ID && ci.NumAckPending == 0
	})

	b := e.prepareTx(addOp(ck, "t1"), addOp(ck, "t2"), addOp(ck, "t3"))
	e.publishPart(b, 0)
	e.publishPart(b, 1)
	waitStats(t, a, func(s callout.Stats) bool { return s.HeldTxParts == 2 })
	if ci := consumer(); ci.AckFloor.Stream != f.ID || ci.NumAckPending != 2 {
		t.Fatalf("holding 2 parts: ack floor %d, %d pending; want %d and 2", ci.AckFloor.Stream, ci.NumAckPending, f.ID)
	}
	e.publishPart(b, 2)
	rec.expect(t, addNote(b.filters[0], false), addNote(b.filters[1], false), addNote(b.filters[2], false))
	testkit.Eventually(t, "the transaction acked", func() bool {
		ci := consumer()
		return ci.AckFloor.Stream == b.filters[2].ID && ci.NumAckPending == 0
	})
}

// All together, also across a kill: an agent whose connection dies while
// its handler is inside the second add of a four-filter transaction
// (no Close, no ack) is started again on the same durable, and gets the
// four adds again, as one transaction, at once, then post-commit; and
// nothing it had acked before.
func TestDurable_KilledMidTransactionGetsItWholeAgain(t *testing.T) {
	e := newEnv(t)
	ck := newKey()

	// The first agent has a connection of its own, to kill under it.
	nc, err := e.srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := natsjsNew(nc)
	if err != nil {
		t.Fatal(err)
	}
	inSecond, release := make(chan struct{}), make(chan struct{})
	first := newRecorder()
	first.before = func(ctx context.Context, nt callout.NotifyType, f *callout.Filter) error {
		if nt == callout.AddFilter && f.Name == "x2" {
			close(inSecond)
			<-release
		}
		return nil
	}
	a1, err := callout.Register(context.Background(), js, ck, first,
		callout.WithLogger(quietLogger()), callout.WithDurable("killed"), callout.WithPostCommit())
	if err != nil {
		t.Fatal(err)
	}
	released := false
	t.Cleanup(func() {
		if !released {
			close(release)
		}
		a1.Close()
	})
	before := e.add(ck, "before")
	first.expect(t, addNote(before, false))

	b := e.prepareTx(addOp(ck, "x1"), addOp(ck, "x2"), addOp(ck, "x3"), addOp(ck, "x4"))
	e.commitTx(b)
	first.expect(t, addNote(b.filters[0], false))
	waitClosed(t, inSecond, "second add in the handler")
	nc.Close() // the kill

	rec := newRecorder()
	a2 := e.register(ck, rec, callout.WithDurable("killed"), callout.WithPostCommit())
	x := b.filters
	rec.expect(t,
		addNote(x[0], false), addNote(x[1], false), addNote(x[2], false), addNote(x[3], false),
		pcNote(x[0]), pcNote(x[1]), pcNote(x[2]), pcNote(x[3]))
	waitStats(t, a2, func(s callout.Stats) bool {
		return s.Transactions == 1 && s.Adds == 4 && s.PostCommits == 4 && s.Duplicates == 0
	})
	after := e.add(ck, "after")
	rec.expect(t, addNote(after, false))
	testkit.Eventually(t, "everything acked", func() bool {
		c, err := e.stream.Consumer(context.Background(), "killed")
		if err != nil {
			t.Fatal(err)
		}
		ci := c.CachedInfo()
		return ci.AckFloor.Stream == after.ID && ci.NumAckPending == 0
	})

	// The killed agent, let go, notices and stops, failed.
	close(release)
	released = true
	waitClosed(t, a1.Done(), "killed agent's Done")
	if a1.Err() == nil {
		t.Fatal("killed agent stopped without Err")
	}
}

// A durable consumer left by an older agent (explicit acks, one message
// in flight) is recreated with this agent's configuration, from its ack
// floor: nothing written meanwhile is lost.
func TestDurable_OlderConsumerIsRecreated(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	_, err := e.stream.CreateConsumer(context.Background(), natsjs.ConsumerConfig{
		Durable: "old", DeliverPolicy: natsjs.DeliverNewPolicy, AckPolicy: natsjs.AckExplicitPolicy,
		MaxAckPending: 1, FilterSubject: e.subj.CalloutFilters(ck),
	})
	if err != nil {
		t.Fatal(err)
	}
	f := e.add(ck, "written while no agent ran")
	rec := newRecorder()
	e.register(ck, rec, callout.WithDurable("old"))
	g := e.add(ck, "g")
	rec.expect(t, addNote(f, false), addNote(g, false))
	c, err := e.stream.Consumer(context.Background(), "old")
	if err != nil {
		t.Fatal(err)
	}
	if cfg := c.CachedInfo().Config; cfg.AckPolicy != natsjs.AckAllPolicy || cfg.MaxAckPending < 2000 {
		t.Fatalf("consumer not recreated: %s, max ack pending %d", cfg.AckPolicy, cfg.MaxAckPending)
	}
}

// Never skip, never reorder: a delivery the agent never gets (here taken
// by another client's pull request on the same durable; in production
// lost in a reconnect) shows as a gap in the consumer's delivery
// sequence. The server would redeliver it only after the ack wait, after
// newer messages; the agent instead recreates the consumer at the first
// message it has not handled, and gets everything in log order at once.
func TestDurable_LostDeliveryIsRecoveredInOrder(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	inA, release := make(chan struct{}), make(chan struct{})
	rec := newRecorder()
	rec.before = func(_ context.Context, nt callout.NotifyType, f *callout.Filter) error {
		if f.Name == "A" {
			close(inA)
			<-release
		}
		return nil
	}
	logs := &logBuffer{}
	e.register(ck, rec, callout.WithDurable("shared"), callout.WithLogger(logs.logger()))
	fa := e.add(ck, "A")
	waitClosed(t, inA, "handler in A")

	// Another client pulls one message from the same durable: the server
	// serves the waiting pull requests round robin, so it gets one of the
	// next messages.
	c, err := e.stream.Consumer(context.Background(), "shared")
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the agent's pull request waiting", func() bool {
		ci, err := c.Info(context.Background())
		return err == nil && ci.NumWaiting >= 1
	})
	batch, err := c.Fetch(1, natsjs.FetchMaxWait(wait))
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the other pull request waiting", func() bool {
		ci, err := c.Info(context.Background())
		return err == nil && ci.NumWaiting >= 2
	})
	var later []*events.Filter
	for _, name := range []string{"B", "C", "D", "E"} {
		later = append(later, e.add(ck, name))
	}
	stolen := waitFor(t, batch.Messages())
	if stolen == nil {
		t.Fatalf("the other client got nothing: %v", batch.Error())
	}
	close(release)

	rec.expect(t, addNote(fa, false))
	for _, f := range later {
		rec.expect(t, addNote(f, false))
	}
	if !strings.Contains(logs.String(), "deliveries lost in flight") {
		t.Fatalf("no log line about the lost delivery:\n%s", logs)
	}
}
