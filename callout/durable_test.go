package callout_test

import (
	"context"
	"errors"
	"testing"

	"github.com/wfpnats/wfp/callout"
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

// Close in the middle of a failing AddFilter leaves the message unacked
// (nak'ed): the next agent on the durable gets it, before anything later.
func TestDurable_AddInterruptedByCloseIsRedelivered(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	failing := make(chan struct{}, 100)
	h := callout.HandlerFunc(func(context.Context, callout.NotifyType, *callout.Filter) error {
		failing <- struct{}{}
		return errors.New("not now")
	})
	a := e.register(ck, h, callout.WithDurable("d"))
	f := e.add(ck, "f")
	waitFor(t, failing)
	waitFor(t, failing) // retrying
	if err := a.Close(); err != nil {
		t.Fatal(err)
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
