package test

import (
	"errors"
	"testing"
	"time"

	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/engine"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
)

// dynamicWorld is a world with a permanent callout served by a live agent
// and a dynamic session holding two filters naming it and a callout
// object of its own (named by a third filter of the session).
type dynamicWorld struct {
	*world
	agent     *recorder
	permanent string
	session   *engine.Session
	filters   []*events.Filter // the session's filters naming the permanent callout
	own       *events.Callout  // the session's callout object
}

func newDynamicWorld(t *testing.T, lease time.Duration) *dynamicWorld {
	t.Helper()
	w := &dynamicWorld{world: newWorld(t), agent: newRecorder()}
	w.permanent = w.addCallout(t)
	registerOn(t, w.agentJS(t), w.permanent, "agent-1", w.agent)
	w.waitAgents(t, w.permanent, "agent-1")
	w.open(t, lease)
	return w
}

// open opens the session on w.client and adds its objects.
func (w *dynamicWorld) open(t *testing.T, lease time.Duration) {
	t.Helper()
	var err error
	w.session, err = w.client.OpenSession(ctxT(t), engine.SessionConfig{Name: "test", Lease: lease})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.session.Detach)
	in := engine.WithSession(w.session.ID())
	for _, name := range []string{"dynamic ssh", "dynamic rdp"} {
		f, err := w.client.AddFilter(ctxT(t), filterNamed(w.permanent, name), in)
		if err != nil {
			t.Fatal(err)
		}
		w.filters = append(w.filters, f)
		w.agent.waitFor(t, callout.AddFilter, f.Key)
	}
	if w.own, err = w.client.AddCallout(ctxT(t), events.Callout{Name: "dynamic"}, in); err != nil {
		t.Fatal(err)
	}
	if _, err := w.client.AddFilter(ctxT(t), filterNamed(w.own.Key, "names the session's callout"), in); err != nil {
		t.Fatal(err)
	}
}

// ended checks that the session is over: its objects are gone, the
// permanent callout stays, and the agent got DeleteFilter for each of its
// filters with the context its AddFilter made (R4, R6).
func (w *dynamicWorld) ended(t *testing.T, reason string) {
	t.Helper()
	testkit.Eventually(t, "the session's filters to be deleted", func() bool {
		l, err := w.client.ListFilters(ctxT(t), engine.ListFiltersRequest{})
		return err == nil && len(l.Filters) == 0
	})
	l, err := w.client.ListCallouts(ctxT(t))
	if err != nil || len(l.Callouts) != 1 || l.Callouts[0].Key != w.permanent {
		t.Fatalf("callouts after the session: %+v %v, want only the permanent one", l, err)
	}
	s, err := w.client.ListSessions(ctxT(t))
	if err != nil || len(s.Sessions) != 0 {
		t.Fatalf("sessions after the end: %+v %v", s, err)
	}
	for _, f := range w.filters {
		add, del := w.agent.waitFor(t, callout.AddFilter, f.Key), w.agent.waitFor(t, callout.DeleteFilter, f.Key)
		if del.ctx == nil || del.ctx != add.ctx || del.id != f.ID {
			t.Fatalf("DeleteFilter of %s: context %v, want the one AddFilter made (%v)", f.Key, del.ctx, add.ctx)
		}
	}
	var closed *events.Event
	for _, e := range readLog(t, w.js) {
		if e.ev != nil && e.ev.Type == events.SessionClosed {
			if closed != nil {
				t.Fatal("two SessionClosed in the log")
			}
			closed = e.ev
		}
	}
	if closed == nil || closed.Session.ID != w.session.ID() || closed.Reason != reason {
		t.Fatalf("SessionClosed %+v, want session %s with reason %q", closed, w.session.ID(), reason)
	}
}

// R8: closing a dynamic session deletes every callout and filter added
// in it, through the log: agents get the deletes with their contexts.
func TestR8_DynamicSessionClosed(t *testing.T) {
	w := newDynamicWorld(t, 0)
	resp, err := w.session.Close(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if resp.DeletedFilters != 3 || resp.DeletedCallouts != 1 {
		t.Fatalf("close: %+v", resp)
	}
	w.ended(t, "session "+w.session.ID()+" closed")
	if _, err := w.client.AddFilter(ctxT(t), filterNamed(w.permanent, "late"), engine.WithSession(w.session.ID())); !errors.Is(err, engine.ErrSessionAborted) {
		t.Fatalf("add in the closed session: %v, want FWP_E_SESSION_ABORTED", err)
	}
}

// R8: a session whose holder stops heartbeating (it died, here it
// detaches) is ended by the engine after its lease, the same way.
func TestR8_DynamicSessionAbandoned(t *testing.T) {
	w := newDynamicWorld(t, time.Second)
	w.session.Detach()
	w.ended(t, "session "+w.session.ID()+" abandoned: no heartbeat for 1s")
	if st := w.eng.Stats(); st.SessionsExpired != 1 {
		t.Fatalf("engine stats %+v, want one session expired", st)
	}
}

// A session outlives its engine. While its holder heartbeats, it stays
// open through a second engine taking over and through a restart (each
// engine hears the heartbeats itself); when its holder dies while no
// engine runs, the next engine ends it a lease after its own start.
func TestR8_DynamicSessionSurvivesTakeoverAndRestart(t *testing.T) {
	const lease = time.Second
	w := newDynamicWorld(t, lease)

	// heard waits until e has heard n heartbeats: n/3 leases of the
	// holder heartbeating every third of a lease, so 7 span more than two
	// leases with e watching.
	heard := func(e *engine.Engine, n uint64) {
		t.Helper()
		testkit.Eventually(t, "heartbeats", func() bool { return e.Stats().Heartbeats >= n })
		if s, err := w.client.ListSessions(ctxT(t)); err != nil || len(s.Sessions) != 1 || s.Sessions[0].FilterCount != 3 {
			t.Fatalf("session after %d heartbeats: %+v %v", n, s, err)
		}
	}
	startOn := func() *engine.Engine {
		return startEngine(t, testkit.Conn(t, w.srv))
	}

	// Takeover: a second engine starts, the first stops.
	second := startOn()
	w.eng.Close()
	heard(second, 7)

	// Restart: the second stops, a third starts on the same log.
	second.Close()
	third := startOn()
	heard(third, 7)

	// The holder dies while no engine runs.
	third.Close()
	w.session.Detach()
	fourth := startOn()
	w.ended(t, "session "+w.session.ID()+" abandoned: no heartbeat for 1s")
	if fourth.Stats().SessionsExpired != 1 {
		t.Fatal("the restarted engine did not end the session")
	}
}

// Heartbeats are plain core NATS messages: anything that publishes on
// <prefix>.heartbeat.<id> keeps a session alive, and garbage on that
// subject is ignored.
func TestR8_HeartbeatsFromAnyClientKeepASessionAlive(t *testing.T) {
	w := newDynamicWorld(t, time.Second)
	w.session.Detach()
	other := testkit.Conn(t, w.srv)
	subj := events.Subjects{Prefix: events.DefaultPrefix}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			_ = other.Publish(subj.Heartbeat(w.session.ID()), nil)
			_ = other.Publish(subj.Heartbeat("not-a-session"), []byte("garbage"))
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	n := w.eng.Stats().Heartbeats
	testkit.Eventually(t, "heartbeats from another client", func() bool { return w.eng.Stats().Heartbeats >= n+10 })
	if s, err := w.client.ListSessions(ctxT(t)); err != nil || len(s.Sessions) != 1 {
		t.Fatalf("session kept alive by another client: %+v %v", s, err)
	}
	close(stop)
	<-done
	w.ended(t, "session "+w.session.ID()+" abandoned: no heartbeat for 1s")
}
