package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
	"github.com/wfpnats/wfp/jetstream"
	"github.com/wfpnats/wfp/projection"
)

// fakeClock is the session leases' clock in these tests: time moves only
// when the test says, so a lease runs out exactly when it should.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func startClocked(t *testing.T, nc *nats.Conn, clock *fakeClock) *Engine {
	t.Helper()
	return startClockedConfig(t, nc, Config{clock: clock.now})
}

func startClockedConfig(t *testing.T, nc *nats.Conn, cfg Config) *Engine {
	t.Helper()
	e, err := Start(context.Background(), nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// sessionWorld is a session with a callout and a filter naming it, both
// added in it, and a permanent filter that must survive its end.
type sessionWorld struct {
	c         *Client
	id        string
	callout   *events.Callout
	filter    *events.Filter
	permanent *events.Filter
}

func openSessionWorld(t *testing.T, c *Client, lease time.Duration) *sessionWorld {
	t.Helper()
	ctx := context.Background()
	var r SessionResponse
	if err := c.call(ctx, EndpointSessionOpen, OpenSessionRequest{Dynamic: true, LeaseMs: uint64(lease.Milliseconds())}, &r, 0, nil); err != nil {
		t.Fatal(err)
	}
	w := &sessionWorld{c: c, id: r.Session.ID}
	var err error
	if w.callout, err = c.AddCallout(ctx, events.Callout{Name: "dynamic"}, WithSession(w.id)); err != nil {
		t.Fatal(err)
	}
	w.filter = mustAdd(t, c, portFilter("dynamic", "22", events.ActionCalloutInspection, w.callout.Key), WithSession(w.id))
	w.permanent = mustAdd(t, c, portFilter("permanent", "23", events.ActionBlock, ""))
	if w.callout.Session != w.id || w.filter.Session != w.id || w.permanent.Session != "" {
		t.Fatalf("sessions of the objects: %q %q %q, want %q %q \"\"", w.callout.Session, w.filter.Session, w.permanent.Session, w.id, w.id)
	}
	return w
}

// gone reports whether the session's objects are deleted and the
// permanent filter is not.
func (w *sessionWorld) gone(t *testing.T) bool {
	t.Helper()
	ctx := context.Background()
	_, ferr := w.c.GetFilter(ctx, FilterRef{FilterID: w.filter.ID})
	if _, err := w.c.GetFilter(ctx, FilterRef{FilterID: w.permanent.ID}); err != nil {
		t.Fatalf("the permanent filter went with the session: %v", err)
	}
	l, err := w.c.ListCallouts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return errors.Is(ferr, ErrFilterNotFound) && len(l.Callouts) == 0
}

func (w *sessionWorld) open(t *testing.T) bool {
	t.Helper()
	l, err := w.c.ListSessions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range l.Sessions {
		if s.ID == w.id {
			return true
		}
	}
	return false
}

// sweeps waits until e has swept its sessions twice more: whatever it
// would end by now, it has set out to (e.expiring).
func sweeps(t *testing.T, e *Engine) {
	t.Helper()
	n := e.sweeps.Load()
	testkit.Eventually(t, "two session sweeps", func() bool { return e.sweeps.Load() >= n+2 })
}

// stillOpen fails the test if the session was ended, or e set out to end
// it, by now.
func (w *sessionWorld) stillOpen(t *testing.T, e *Engine, why string) {
	t.Helper()
	sweeps(t, e)
	if n := e.expiring.Load(); n != 0 || !w.open(t) {
		t.Fatalf("%s (sessions set to end: %d, open: %v)", why, n, w.open(t))
	}
}

// Close deletes the session's filters, then its callouts (the callout is
// named by the filter: the other order would be FWP_E_IN_USE), then
// records the end, as one write; a second close, or an add in the closed
// session, is FWP_E_SESSION_ABORTED.
func TestSessionCloseDeletesItsObjectsFiltersFirst(t *testing.T) {
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	e := startEngine(t, nc)
	c := NewClient(nc)
	w := openSessionWorld(t, c, 0)
	before := e.Seq()

	resp, err := c.CloseSession(context.Background(), w.id)
	if err != nil {
		t.Fatal(err)
	}
	if resp.DeletedFilters != 1 || resp.DeletedCallouts != 1 || resp.Seq != before+3 {
		t.Fatalf("close: %+v, want 1 filter and 1 callout deleted and the close at %d", resp, before+3)
	}
	if !w.gone(t) || w.open(t) {
		t.Fatal("the session's objects or the session survived its close")
	}
	var types []events.Type
	for _, ev := range readEngineLog(t, nc, before+1) {
		types = append(types, ev.Type)
		if ev.Type != events.CalloutDeleted && ev.Reason != "session "+w.id+" closed" {
			t.Errorf("%s reason %q", ev.Type, ev.Reason)
		}
	}
	if fmt.Sprint(types) != "[FilterDeleted CalloutDeleted SessionClosed]" {
		t.Fatalf("the end wrote %v", types)
	}

	if _, err := c.CloseSession(context.Background(), w.id); !errors.Is(err, ErrSessionAborted) {
		t.Fatalf("second close: %v, want FWP_E_SESSION_ABORTED", err)
	}
	if _, err := c.AddFilter(context.Background(), portFilter("late", "1", events.ActionBlock, ""), WithSession(w.id)); !errors.Is(err, ErrSessionAborted) {
		t.Fatalf("add in a closed session: %v, want FWP_E_SESSION_ABORTED", err)
	}
	if _, err := c.AddCallout(context.Background(), events.Callout{Name: "late"}, WithSession(w.id)); !errors.Is(err, ErrSessionAborted) {
		t.Fatalf("callout add in a closed session: %v, want FWP_E_SESSION_ABORTED", err)
	}
	if _, err := c.ApplyTx(context.Background(), []TxOp{{Op: OpCalloutAdd, Callout: &events.Callout{Name: "late"}}}, WithSession(w.id)); !errors.Is(err, ErrSessionAborted) {
		t.Fatalf("transaction in a closed session: %v, want FWP_E_SESSION_ABORTED", err)
	}
	if _, err := c.AddFilter(context.Background(), portFilter("x", "1", events.ActionBlock, ""), WithSession("5b1f0c0e-8a43-4b8e-9d7c-3c2f2d1a0b01")); !errors.Is(err, ErrSessionAborted) {
		t.Fatalf("add in a session never opened: %v", err)
	}
}

// The end is validated against the state like any write: a session that
// is not open (closed by someone else meanwhile) cannot be ended again.
func TestEndSessionOnlyEndsOpenSessions(t *testing.T) {
	s := projection.New()
	sess := &events.Session{ID: "3e9a1c2b-4d5e-4f60-8a7b-9c0d1e2f3a4b", Dynamic: true, LeaseMs: 1000}
	s.Apply(1, events.NewSessionEvent(events.SessionOpened, sess.Clone()))
	evs, err := endSession{id: sess.ID}.events(s, 2)
	if err != nil || len(evs) != 1 || evs[0].Type != events.SessionClosed {
		t.Fatalf("ending an open empty session: %v %v", evs, err)
	}
	s.Apply(2, evs[0])
	if _, err := (endSession{id: sess.ID}).events(s, 3); !errors.Is(err, ErrSessionAborted) {
		t.Fatalf("ending it again: %v, want FWP_E_SESSION_ABORTED", err)
	}
}

// A session bigger than one atomic batch ends in several writes, filters
// first, the close last.
func TestSessionBiggerThanABatchEnds(t *testing.T) {
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	startEngine(t, nc)
	c := NewClient(nc)
	ctx := context.Background()
	var r SessionResponse
	if err := c.call(ctx, EndpointSessionOpen, OpenSessionRequest{Dynamic: true}, &r, 0, nil); err != nil {
		t.Fatal(err)
	}
	id := r.Session.ID
	co, err := c.AddCallout(ctx, events.Callout{Name: "c"}, WithSession(id))
	if err != nil {
		t.Fatal(err)
	}
	n := MaxTxOps + 5
	for done := 0; done < n; {
		var ops []TxOp
		for ; done < n && len(ops) < MaxTxOps; done++ {
			f := portFilter(fmt.Sprint("f", done), "22", events.ActionCalloutInspection, co.Key)
			ops = append(ops, TxOp{Op: OpFilterAdd, Filter: &f})
		}
		if _, err := c.ApplyTx(ctx, ops, WithSession(id)); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := c.CloseSession(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if resp.DeletedFilters != n || resp.DeletedCallouts != 1 {
		t.Fatalf("close: %+v, want %d filters and 1 callout", resp, n)
	}
	if l, err := c.ListFilters(ctx, ListFiltersRequest{}); err != nil || len(l.Filters) != 0 {
		t.Fatalf("left after the close: %d filters, %v", len(l.Filters), err)
	}
}

// A filter outside a session cannot name that session's callout (the
// callout goes with the session); nor can one of another session. A
// filter of a session may name a permanent callout.
func TestFilterCannotNameAnotherSessionsCallout(t *testing.T) {
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	startEngine(t, nc)
	c := NewClient(nc)
	w := openSessionWorld(t, c, 0)
	other := openSessionWorld(t, c, 0)
	for _, opts := range [][]CallOption{nil, {WithSession(other.id)}} {
		_, err := c.AddFilter(context.Background(), portFilter("outsider", "80", events.ActionCalloutInspection, w.callout.Key), opts...)
		if !errors.Is(err, ErrWrongSession) {
			t.Fatalf("a filter outside the session naming its callout (%v): %v, want FWP_E_WRONG_SESSION", opts, err)
		}
	}
	perm, err := c.AddCallout(context.Background(), events.Callout{Name: "permanent"})
	if err != nil {
		t.Fatal(err)
	}
	mustAdd(t, c, portFilter("insider", "80", events.ActionCalloutInspection, perm.Key), WithSession(w.id))
	if _, err := c.CloseSession(context.Background(), w.id); err != nil {
		t.Fatal(err)
	}
	if l, err := c.ListCallouts(context.Background()); err != nil || len(l.Callouts) != 2 {
		t.Fatalf("callouts after the close: %+v %v, want the permanent one and the other session's", l, err)
	}
}

// If a log has a filter outside the session naming the session's callout
// anyway (the engine refuses to write one), the session still ends: the
// callout stays, everything else goes.
func TestSessionEndsWhenAnOutsiderNamesItsCallout(t *testing.T) {
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	e := startEngine(t, nc)
	c := NewClient(nc)
	w := openSessionWorld(t, c, 0)
	outsider := portFilter("outsider", "80", events.ActionCalloutInspection, w.callout.Key)
	outsider.Key = "5b1f0c0e-8a43-4b8e-9d7c-3c2f2d1a0b01"
	m, err := events.Subjects{Prefix: "wfp"}.Message(events.NewFilterEvent(events.FilterAdded, &outsider))
	if err != nil {
		t.Fatal(err)
	}
	js := testkit.JetStream(t, nc)
	msg := nats.NewMsg(m.Subject)
	msg.Data, msg.Header = m.Data, nats.Header(m.Header)
	ack, err := js.PublishMsg(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the engine to fold the outsider", func() bool { return e.Seq() >= ack.Sequence })

	resp, err := c.CloseSession(context.Background(), w.id)
	if err != nil {
		t.Fatalf("close with an outsider naming the session's callout: %v", err)
	}
	if resp.DeletedFilters != 1 || resp.DeletedCallouts != 0 || w.open(t) {
		t.Fatalf("close: %+v (open %v), want the session's filter deleted, its callout kept, the session closed", resp, w.open(t))
	}
}

// Abandonment: with no heartbeat for the lease, the engine ends the
// session; heartbeats keep it open past any number of leases.
func TestSessionLeaseRunsOutWithoutHeartbeats(t *testing.T) {
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	clock := newFakeClock()
	e := startClocked(t, nc, clock)
	c := NewClient(nc)
	const lease = 10 * time.Second
	w := openSessionWorld(t, c, lease)
	testkit.Eventually(t, "the engine to see the session", func() bool { return !e.leases.last(w.id).IsZero() })

	for range 5 { // five leases, heartbeating every 0.9 lease
		clock.advance(lease * 9 / 10)
		n := e.Stats().Heartbeats
		if err := c.Heartbeat(w.id); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, "the heartbeat to arrive", func() bool { return e.Stats().Heartbeats > n })
		w.stillOpen(t, e, "a heartbeating session was ended")
	}
	clock.advance(lease) // exactly the lease since the last heartbeat: not more
	w.stillOpen(t, e, "the session ended at its lease, not after it")
	clock.advance(time.Millisecond)
	testkit.Eventually(t, "the abandoned session to end", func() bool { return !w.open(t) })
	if !w.gone(t) {
		t.Fatal("the abandoned session's objects are still there")
	}
	if st := e.Stats(); st.SessionsExpired != 1 {
		t.Fatalf("sessions expired %d, want 1", st.SessionsExpired)
	}
	log := readEngineLog(t, nc, 0)
	if last := log[len(log)-1]; last.Type != events.SessionClosed || last.Reason != "session "+w.id+" abandoned: no heartbeat for 10s" {
		t.Fatalf("last event %s %q", last.Type, last.Reason)
	}
}

// A session outlives its engine: the engine that starts next on the log
// finds it open and gives it a fresh lease from its own start, however
// long the log has been without an engine; its holder can close it there.
func TestSessionGetsAFreshLeaseAfterARestart(t *testing.T) {
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	clock := newFakeClock()
	first := startClocked(t, nc, clock)
	c := NewClient(nc)
	const lease = 10 * time.Second
	w := openSessionWorld(t, c, lease)
	first.Close()

	clock.advance(time.Hour)
	second := startClocked(t, testkit.Conn(t, srv), clock)
	testkit.Eventually(t, "the new engine to see the session", func() bool { return !second.leases.last(w.id).IsZero() })
	w.stillOpen(t, second, "the restarted engine ended the session at once: its lease must start at the restart")
	clock.advance(lease + time.Millisecond)
	testkit.Eventually(t, "the session to end a lease after the restart", func() bool { return !w.open(t) })
	if !w.gone(t) {
		t.Fatal("objects left")
	}
}

// Two engines that both find a session abandoned end it once: the second
// write is fenced or validated against the first, and finds the session
// closed. The same holds for two closes racing on two engines.
func TestSessionEndsOnceWithTwoEngines(t *testing.T) {
	srv := testkit.Server(t)
	clock := newFakeClock()
	ncA, ncB := testkit.Conn(t, srv), testkit.Conn(t, srv)
	withArchive := Config{clock: clock.now, Archive: jetstream.ArchiveName(events.DefaultStream)}
	a := startClockedConfig(t, ncA, withArchive)
	c := NewClient(ncA)
	const lease = 10 * time.Second
	var ids []string
	for range 5 { // before b serves too: a client's next request may reach an engine behind its last
		ids = append(ids, openSessionWorld(t, c, lease).id)
	}
	b := startClockedConfig(t, ncB, withArchive)
	// Closes racing on both engines, straight into their writer loops.
	for _, id := range ids[:3] {
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, e := range []*Engine{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = e.endSessionFully(context.Background(), id, "closed")
			}()
		}
		wg.Wait()
		if (errs[0] == nil) == (errs[1] == nil) || !(errors.Is(errs[0], ErrSessionAborted) || errors.Is(errs[1], ErrSessionAborted)) {
			t.Fatalf("two closes of one session: %v and %v, want one success and one FWP_E_SESSION_ABORTED", errs[0], errs[1])
		}
	}
	// Abandonment found by both.
	for _, e := range []*Engine{a, b} {
		testkit.Eventually(t, "both engines to see the sessions", func() bool { return !e.leases.last(ids[4]).IsZero() })
	}
	clock.advance(lease + time.Second)
	testkit.Eventually(t, "the abandoned sessions to end", func() bool {
		l, err := c.ListSessions(context.Background())
		return err == nil && len(l.Sessions) == 0
	})
	sweeps(t, a)
	sweeps(t, b)
	// The log is compacted (a second SessionClosed would roll up the
	// first): count in the archive, which keeps every event.
	archive := jetstream.ArchiveName(events.DefaultStream)
	js := testkit.JetStream(t, ncA)
	last := a.Seq()
	testkit.Eventually(t, "the archive to hold the whole log", func() bool {
		n, err := jetstream.ArchivedThrough(context.Background(), js, archive)
		return err == nil && n >= last
	})
	closed := map[string]int{}
	for _, ev := range readStreamEvents(t, ncA, archive, 0) {
		if ev.Type == events.SessionClosed {
			closed[ev.Session.ID]++
		}
	}
	for _, id := range ids {
		if closed[id] != 1 {
			t.Errorf("session %s closed %d times in the log", id, closed[id])
		}
	}
	if got := a.Stats().SessionsExpired + b.Stats().SessionsExpired; got != 2 {
		t.Errorf("%d sessions expired across the engines, want 2", got)
	}
}

// readEngineLog reads the events the log holds now, in order, from
// sequence from on (0: all). The log is compacted: what a roll-up removed
// is not there.
func readEngineLog(t *testing.T, nc *nats.Conn, from uint64) []*events.Event {
	t.Helper()
	return readStreamEvents(t, nc, events.DefaultStream, from)
}

// readStreamEvents reads the events stream holds now, in order, from
// sequence from on (0: all).
func readStreamEvents(t *testing.T, nc *nats.Conn, stream string, from uint64) []*events.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	js := testkit.JetStream(t, nc)
	cfg := natsjs.OrderedConsumerConfig{}
	if from > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = natsjs.DeliverByStartSequencePolicy, from
	}
	cons, err := js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out []*events.Event
	for left := cons.CachedInfo().NumPending; left > 0; left-- {
		m, err := cons.Next(natsjs.FetchContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		ev, err := events.Decode(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

// session.open refuses what would not be a dynamic session with a sane
// lease, naming the field.
func TestSessionOpenValidates(t *testing.T) {
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	startEngine(t, nc)
	c := NewClient(nc)
	for _, tc := range []struct {
		req  OpenSessionRequest
		want string
	}{
		{OpenSessionRequest{}, "dynamic:"},
		{OpenSessionRequest{Dynamic: true, LeaseMs: 999}, "leaseMs: 999"},
		{OpenSessionRequest{Dynamic: true, LeaseMs: uint64(MaxSessionLease.Milliseconds()) + 1}, "leaseMs:"},
		{OpenSessionRequest{Dynamic: true, Name: "two\nlines"}, "name:"},
	} {
		var r SessionResponse
		err := c.call(context.Background(), EndpointSessionOpen, tc.req, &r, 0, nil)
		if !errors.Is(err, ErrInvalidParameter) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want FWP_E_INVALID_PARAMETER naming %q", tc.req, err, tc.want)
		}
	}
	var r SessionResponse
	if err := c.call(context.Background(), EndpointSessionOpen, OpenSessionRequest{Dynamic: true}, &r, 0, nil); err != nil ||
		r.Session.Lease() != DefaultSessionLease || !r.Session.Dynamic {
		t.Fatalf("default lease: %+v %v", r.Session, err)
	}
	if _, err := c.OpenSession(context.Background(), SessionConfig{Lease: -time.Second}); !errors.Is(err, ErrInvalidParameter) {
		t.Fatalf("negative lease from the client: %v", err)
	}
}
