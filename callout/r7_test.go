package callout_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/events"
)

// results subscribes to the NotifyResults of callout ck.
func (e *env) results(ck string) <-chan events.NotifyResult {
	e.t.Helper()
	ch := make(chan events.NotifyResult, 100)
	subscribeJSON(e, e.subj.Result(ck, "*"), func(r events.NotifyResult, _ *nats.Msg) { ch <- r })
	return ch
}

// R7: after the handler returns for a live AddFilter, the agent tells the
// engines: an empty Error when it took the filter, the handler's error
// (or panic) text when it refused it.
func TestR7_LiveAddResultsPublished(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	results := e.results(ck)
	rec := newRecorder()
	rec.before = func(_ context.Context, nt callout.NotifyType, f *callout.Filter) error {
		if nt != callout.AddFilter {
			return nil
		}
		switch f.Name {
		case "bad":
			return errors.New(`refusing filter "bad"`)
		case "boom":
			panic("driver bug")
		}
		return nil
	}
	a := e.register(ck, rec, callout.WithAgentID("agent-r7"))
	good, bad, boom := e.add(ck, "good"), e.add(ck, "bad"), e.add(ck, "boom")
	for _, w := range []struct {
		f   *events.Filter
		err string
	}{{good, ""}, {bad, `refusing filter "bad"`}, {boom, "driver bug"}} {
		r := waitFor(t, results)
		want := events.NotifyResult{AgentID: "agent-r7", CalloutKey: ck, Instance: a.Instance(), FilterKey: w.f.Key, FilterID: w.f.ID}
		gotErr := r.Error
		r.Error = ""
		if r != want || (w.err == "") != (gotErr == "") || !strings.Contains(gotErr, w.err) {
			t.Fatalf("result %+v error %q, want %+v error containing %q", r, gotErr, want, w.err)
		}
	}
	waitStats(t, a, func(s callout.Stats) bool { return s.Adds == 1 && s.Refused == 2 && s.Held == 1 })
	if a.ID() != "agent-r7" {
		t.Fatalf("ID() = %q", a.ID())
	}
}

// R7 concerns live adds only: the replay snapshot is the engine's
// committed state and nobody waits for it. A refused snapshot add is not
// held, and counted, but not answered.
func TestR7_NoResultForSnapshotAdds(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	kept, refused := e.add(ck, "kept"), e.add(ck, "refused")
	results := e.results(ck)
	rec := newRecorder()
	rec.before = func(_ context.Context, nt callout.NotifyType, f *callout.Filter) error {
		if nt == callout.AddFilter && f.Name == "refused" {
			return errors.New("no")
		}
		return nil
	}
	a := e.register(ck, rec, callout.WithMode(callout.Replay))
	rec.expect(t, addNote(kept, true))
	waitClosed(t, a.Synced(), "Synced")
	live := e.add(ck, "live")
	rec.expect(t, addNote(live, false))
	// Results come in the order the agent sends them: had it answered a
	// snapshot add, that answer would come first.
	if r := waitFor(t, results); r.FilterID != live.ID || r.Error != "" {
		t.Fatalf("first result %+v, want the live add's", r)
	}
	waitStats(t, a, func(s callout.Stats) bool { return s.Refused == 1 && s.HandlerErrors == 1 && s.Held == 2 })
	if _, ok := a.Lookup(refused.ID); ok {
		t.Fatal("refused snapshot filter held")
	}
	select {
	case r := <-results:
		t.Fatalf("unexpected result %+v", r)
	default:
	}
}
