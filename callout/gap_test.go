package callout_test

import (
	"context"
	"testing"
	"time"

	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/events"
)

// unheard runs fn while the stream does not republish: what fn writes is
// in the log but never reaches a live subscription, as if the
// subscription had lost it (a slow client, a reconnect).
func (e *env) unheard(fn func()) {
	e.t.Helper()
	ctx := context.Background()
	info, err := e.stream.Info(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	cfg := info.Config
	rp := cfg.RePublish
	cfg.RePublish = nil
	if _, err := e.js.UpdateStream(ctx, cfg); err != nil {
		e.t.Fatal(err)
	}
	fn()
	cfg.RePublish = rp
	if _, err := e.js.UpdateStream(ctx, cfg); err != nil {
		e.t.Fatal(err)
	}
}

// A live agent reads its live subscription, which keeps no position: an
// event whose predecessor (events.HeaderPrev) it never got reveals the
// loss, and it reads the log from the first event it missed, through a
// consumer, before the one that revealed it: in order, nothing twice.
func TestLive_AGapIsCaughtUpInOrder(t *testing.T) {
	for _, mode := range []callout.Mode{callout.Live, callout.Replay} {
		t.Run(mode.String(), func(t *testing.T) {
			e := newEnv(t)
			ck := newKey()
			rec := newRecorder()
			a := e.register(ck, rec, callout.WithMode(mode))
			f1 := e.add(ck, "f1")
			rec.expect(t, addNote(f1, false))
			var f2 *events.Filter
			e.unheard(func() { f2 = e.add(ck, "lost") })
			f3 := e.add(ck, "f3")
			rec.expect(t, addNote(f2, false), addNote(f3, false))
			rec.expectNone(t)
			waitStats(t, a, func(s callout.Stats) bool { return s.CatchUps == 1 && s.Held == 3 })
		})
	}
}

// A loss at the end has nothing after it to tell: the agent's horizon
// check (every quarter horizon), which reads the callout's newest event,
// finds it has not read it, and catches up.
func TestLive_ALossAtTheEndIsFoundByTheHorizonCheck(t *testing.T) {
	e := newEnvHorizon(t, 4*time.Second)
	ck := newKey()
	rec := newRecorder()
	a := e.register(ck, rec)
	f1 := e.add(ck, "f1")
	rec.expect(t, addNote(f1, false))
	var f2 *events.Filter
	e.unheard(func() { f2 = e.add(ck, "lost, and the last") })
	rec.expect(t, addNote(f2, false))
	if st := a.Stats(); st.CatchUps != 1 {
		t.Fatalf("stats %+v, want one catch-up", st)
	}
}
