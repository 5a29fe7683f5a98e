package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
	"github.com/wfpnats/wfp/jetstream/embedded"
)

// The guards of the agent protocol, each against a real server: an
// agent message counts only for the callout and agent id its subject
// names, a result only for a pending add of that callout, and each
// running instance of an agent id has its own say.

// agentWorld is a server, an engine, a client and two callouts.
type agentWorld struct {
	t      *testing.T
	srv    *embedded.Server
	nc     *nats.Conn
	e      *Engine
	c      *Client
	subj   events.Subjects
	c1, c2 string
}

func newAgentWorld(t *testing.T) *agentWorld {
	t.Helper()
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	e, err := Start(context.Background(), nc, Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	w := &agentWorld{t: t, srv: srv, nc: nc, e: e, c: NewClient(nc), subj: events.Subjects{Prefix: events.DefaultPrefix}}
	for _, k := range []*string{&w.c1, &w.c2} {
		co, err := w.c.AddCallout(ctx(t), events.Callout{Name: "c"})
		if err != nil {
			t.Fatal(err)
		}
		*k = co.Key
	}
	return w
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// agent registers a real SDK agent on a connection of its own that
// refuses the adds of filters whose name contains refuse (if set), and
// waits until the engine lists it.
func (w *agentWorld) agent(key, id, refuse string, opts ...callout.Option) (*callout.Agent, *nats.Conn) {
	w.t.Helper()
	nc := testkit.Conn(w.t, w.srv)
	h := callout.HandlerFunc(func(_ context.Context, t callout.NotifyType, f *callout.Filter) error {
		if t == callout.AddFilter && refuse != "" && strings.Contains(f.Name, refuse) {
			return fmt.Errorf("no %s here", refuse)
		}
		return nil
	})
	opts = append([]callout.Option{callout.WithAgentID(id), callout.WithLogger(slog.New(slog.DiscardHandler))}, opts...)
	a, err := callout.Register(ctx(w.t), testkit.JetStream(w.t, nc), key, h, opts...)
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { a.Close() })
	w.waitListed(key, a.Instance(), true)
	return a, nc
}

// listed reports whether the engine has instance inst registered for key.
func (w *agentWorld) listed(key, inst string) bool {
	for _, a := range w.e.agents.forCallout(key) {
		if a.Instance == inst {
			return true
		}
	}
	return false
}

func (w *agentWorld) waitListed(key, inst string, want bool) {
	w.t.Helper()
	testkit.Eventually(w.t, fmt.Sprintf("instance %s listed=%v for %s", inst, want, key), func() bool { return w.listed(key, inst) == want })
}

// fake is an agent instance spoken by hand, on its own connection: what
// a compromised agent host, or a second process with the same agent id,
// can send. It answers pings to its instance, as a running one does.
type fake struct {
	w   *agentWorld
	nc  *nats.Conn
	ann events.Announcement
}

func (w *agentWorld) fake(key, id string) *fake {
	w.t.Helper()
	f := &fake{w: w, nc: testkit.Conn(w.t, w.srv),
		ann: events.Announcement{AgentID: id, CalloutKey: key, Instance: "fake" + strings.ReplaceAll(uuid.NewString()[:8], "-", ""), Mode: "live", Status: events.AgentAlive}}
	data, _ := json.Marshal(f.ann)
	sub, err := f.nc.Subscribe(w.subj.AgentInstancePing(key, id, f.ann.Instance), func(m *nats.Msg) { _ = m.Respond(data) })
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { _ = sub.Unsubscribe() })
	return f
}

// send publishes v as JSON on subject and waits until the server has it.
func (f *fake) send(subject string, v any) {
	f.w.t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		f.w.t.Fatal(err)
	}
	if err := f.nc.Publish(subject, data); err != nil {
		f.w.t.Fatal(err)
	}
	if err := f.nc.Flush(); err != nil {
		f.w.t.Fatal(err)
	}
}

// announce publishes ann (on its own subject unless on is given).
func (f *fake) announce(ann events.Announcement, on ...string) {
	subject := f.w.subj.Agent(ann.CalloutKey, ann.AgentID)
	if len(on) > 0 {
		subject = on[0]
	}
	f.send(subject, ann)
}

func (f *fake) result(r events.NotifyResult, on ...string) {
	subject := f.w.subj.Result(r.CalloutKey, r.AgentID)
	if len(on) > 0 {
		subject = on[0]
	}
	f.send(subject, r)
}

func (w *agentWorld) waitDropped(n uint64) {
	w.t.Helper()
	testkit.Eventually(w.t, fmt.Sprintf("%d agent messages dropped", n), func() bool { return w.e.Stats().AgentDropped >= n })
}

// nextID is the id the next add gets, when nothing else writes first.
func (w *agentWorld) nextID() uint64 { return w.e.Seq() + 1 }

func (w *agentWorld) filter(key, name string) events.Filter {
	return events.Filter{Key: uuid.NewString(), Name: name, Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionCalloutInspection, CalloutKey: key}
}

// An agent allowed to publish on its own subjects only (callout C1)
// announces, says bye and answers on them in the name of callout C2: the
// engine drops every such message, and C2's add is decided by C2's real
// agent alone.
func TestAgentMessages_BodyMustAgreeWithSubject(t *testing.T) {
	w := newAgentWorld(t)
	real, _ := w.agent(w.c2, "c2-agent", "secret")
	f := w.fake(w.c1, "c1-agent")
	own := w.subj.Agent(w.c1, "c1-agent")

	// A fake agent for C2 announced on C1's subject: not registered.
	fakeC2 := f.ann
	fakeC2.CalloutKey = w.c2
	f.announce(fakeC2, own)
	// A bye for C2's real agent, on C1's subject: it stays.
	f.announce(events.Announcement{AgentID: "c2-agent", CalloutKey: w.c2, Instance: real.Instance(), Mode: "live", Status: events.AgentBye}, own)
	// The engine takes one subscription's messages in order: once the
	// fake's own announcement is in, so are the forgeries before it.
	f.announce(f.ann)
	w.waitListed(w.c1, f.ann.Instance, true)
	if w.listed(w.c2, f.ann.Instance) || !w.listed(w.c2, real.Instance()) {
		t.Fatalf("C2's agents after forgeries: %+v", w.e.agents.forCallout(w.c2))
	}
	w.waitDropped(2)

	// A refusal in the name of C2's real agent, sent on C1's result
	// subject ahead of the add: dropped, and the real agent's acceptance
	// decides.
	ok := w.filter(w.c2, "fine")
	f.result(events.NotifyResult{AgentID: "c2-agent", CalloutKey: w.c2, Instance: real.Instance(), FilterKey: ok.Key,
		FilterID: w.nextID(), Error: "forged refusal"}, w.subj.Result(w.c1, "c1-agent"))
	if _, err := w.c.AddFilter(ctx(t), ok); err != nil {
		t.Fatalf("C2 add its agent accepts: %v", err)
	}
	w.waitDropped(3)
	// And C2's real refusal still refuses.
	if _, err := w.c.AddFilter(ctx(t), w.filter(w.c2, "secret")); !errors.Is(err, ErrCalloutNotificationFailed) {
		t.Fatalf("C2 add its agent refuses: %v, want FWP_E_CALLOUT_NOTIFICATION_FAILED", err)
	}
}

// A result counts only for a pending add of its own callout, with that
// add's filter key: a refusal naming the pending filter id with another
// key is dropped, whether it comes before the add waits or while it
// waits, and the same agent's real answer decides.
func TestAgentResults_MustNameAPendingAddOfTheirCallout(t *testing.T) {
	w := newAgentWorld(t)
	f := w.fake(w.c1, "c1-agent")
	f.announce(f.ann)
	w.waitListed(w.c1, f.ann.Instance, true)
	result := func(id uint64, key, refusal string) {
		f.result(events.NotifyResult{AgentID: "c1-agent", CalloutKey: w.c1, Instance: f.ann.Instance, FilterKey: key, FilterID: id, Error: refusal})
	}
	for _, early := range []bool{true, false} {
		add, id := w.filter(w.c1, "f"), w.nextID()
		dropped := w.e.Stats().AgentDropped
		if early {
			result(id, uuid.NewString(), "wrong filter, early")
		}
		answered := make(chan error, 1)
		go func() { _, err := w.c.AddFilter(ctx(t), add); answered <- err }()
		w.waitWaiting(id)
		if !early {
			result(id, uuid.NewString(), "wrong filter, while waiting")
		}
		w.waitDropped(dropped + 1)
		result(id, add.Key, "")
		if err := <-answered; err != nil {
			t.Fatalf("add (wrong key early: %v): %v; the refusal that named another filter key counted", early, err)
		}
	}
	// And one naming an id that is no filter at all.
	dropped := w.e.Stats().AgentDropped
	result(1, uuid.NewString(), "")
	w.waitDropped(dropped + 1)
}

// waitWaiting waits until an add waits for its agents' answers about id.
func (w *agentWorld) waitWaiting(id uint64) {
	w.t.Helper()
	testkit.Eventually(w.t, fmt.Sprintf("an add waiting on filter %d", id), func() bool {
		w.e.waits.mu.Lock()
		defer w.e.waits.mu.Unlock()
		_, ok := w.e.waits.waiting[id]
		return ok
	})
}

// Two running instances of one agent id (a second process started with
// the same --agent-id; the SDK refuses that, a hand-written client may
// not): each is waited for, so the one that accepts at once cannot make
// the other's refusal moot, and the refused filter is not added.
func TestAgentInstances_DuplicateIDCannotMakeARefusedFilterStick(t *testing.T) {
	w := newAgentWorld(t)
	real, _ := w.agent(w.c1, "dup", "secret")
	twin := w.fake(w.c1, "dup")
	twin.announce(twin.ann)
	w.waitListed(w.c1, twin.ann.Instance, true)

	refused := w.filter(w.c1, "secret")
	// The twin's acceptance is there before the add is even written.
	twin.result(events.NotifyResult{AgentID: "dup", CalloutKey: w.c1, Instance: twin.ann.Instance, FilterKey: refused.Key, FilterID: w.nextID()})
	_, err := w.c.AddFilter(ctx(t), refused)
	if !errors.Is(err, ErrCalloutNotificationFailed) || !strings.Contains(err.Error(), "dup") {
		t.Fatalf("add one instance refuses: %v, want FWP_E_CALLOUT_NOTIFICATION_FAILED", err)
	}
	if _, err := w.c.GetFilter(ctx(t), FilterRef{FilterKey: refused.Key}); !errors.Is(err, ErrFilterNotFound) {
		t.Fatalf("the refused filter stuck: %v", err)
	}
	_ = real
}

// One instance saying bye unregisters that instance only: the other
// instance of the same agent id stays listed, and its refusals still
// refuse.
func TestAgentInstances_ByeIsPerInstance(t *testing.T) {
	w := newAgentWorld(t)
	real, _ := w.agent(w.c1, "dup", "secret")
	twin := w.fake(w.c1, "dup")
	twin.announce(twin.ann)
	w.waitListed(w.c1, twin.ann.Instance, true)
	bye := twin.ann
	bye.Status = events.AgentBye
	twin.announce(bye)
	w.waitListed(w.c1, twin.ann.Instance, false)
	if !w.listed(w.c1, real.Instance()) {
		t.Fatal("the twin's bye unregistered the real instance")
	}
	if _, err := w.c.AddFilter(ctx(t), w.filter(w.c1, "secret")); !errors.Is(err, ErrCalloutNotificationFailed) {
		t.Fatalf("add the real instance refuses: %v", err)
	}
}

// Issue 9 item 6: an agent killed (its connection gone, no bye) does not
// fail an add, nor make it wait out its notify timeout: after the grace
// the engine pings the instance, NATS answers "no responders", and the
// instance is forgotten.
func TestAgentInstances_KilledAgentDoesNotFailAnAdd(t *testing.T) {
	w := newAgentWorld(t)
	a, nc := w.agent(w.c1, "doomed", "")
	nc.Close() // as SIGKILL would
	// The default notify timeout (5 s) ends before the registry would
	// forget a silent agent (events.AgentTTL, 7 s): only asking it saves
	// the add.
	f, err := w.c.AddFilter(ctx(t), w.filter(w.c1, "f"))
	if err != nil {
		t.Fatalf("add after the agent was killed: %v", err)
	}
	if w.listed(w.c1, a.Instance()) || w.e.Stats().AgentsGone != 1 {
		t.Fatalf("the killed instance is still registered (gone %d)", w.e.Stats().AgentsGone)
	}
	if _, err := w.c.GetFilter(ctx(t), FilterRef{FilterID: f.ID}); err != nil {
		t.Fatal(err)
	}
}

// A restart with the same agent id supersedes the killed instance at
// once: the engine pings the old instance when the new one announces.
func TestAgentInstances_RestartSupersedesTheKilledInstance(t *testing.T) {
	w := newAgentWorld(t)
	old, nc := w.agent(w.c1, "phoenix", "")
	nc.Close()
	testkit.Eventually(t, "the server to drop the killed connection", func() bool {
		_, err := w.nc.Request(w.subj.AgentPing(w.c1, "phoenix"), nil, 100*time.Millisecond)
		return errors.Is(err, nats.ErrNoResponders)
	})
	fresh, _ := w.agent(w.c1, "phoenix", "secret")
	w.waitListed(w.c1, old.Instance(), false)
	if _, err := w.c.AddFilter(ctx(t), w.filter(w.c1, "secret")); !errors.Is(err, ErrCalloutNotificationFailed) {
		t.Fatalf("add the restarted agent refuses: %v", err)
	}
	_ = fresh
}

// A live agent that is merely slow answers the engine's pings and gets
// its whole notify timeout: its late refusal still refuses (R7).
func TestAgentInstances_SlowLiveAgentGetsItsWholeTimeout(t *testing.T) {
	w := newAgentWorld(t)
	nc := testkit.Conn(t, w.srv)
	var pings atomic.Int64
	sub, err := w.nc.Subscribe(w.subj.AgentPing(w.c1, "slow")+".*", func(*nats.Msg) { pings.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	h := callout.HandlerFunc(func(ctx context.Context, nt callout.NotifyType, _ *callout.Filter) error {
		if nt != callout.AddFilter {
			return nil
		}
		// Refuse only once the engine has asked twice whether we run.
		for pings.Load() < 2 && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		return errors.New("slow no")
	})
	a, err := callout.Register(ctx(t), testkit.JetStream(t, nc), w.c1, h, callout.WithAgentID("slow"), callout.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	w.waitListed(w.c1, a.Instance(), true)
	_, err = w.c.AddFilter(ctx(t), w.filter(w.c1, "f"), WithNotifyTimeout(20*time.Second))
	if !errors.Is(err, ErrCalloutNotificationFailed) || !strings.Contains(err.Error(), "slow no") {
		t.Fatalf("add a slow agent refuses: %v", err)
	}
}

// A flood of forgeries is counted one by one but logged at a bounded
// rate: at most a line a second per reason, saying how many it stands for.
func TestAgentMessages_DropsAreLoggedAtABoundedRate(t *testing.T) {
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	var log testkit.SyncBuffer
	e, err := Start(context.Background(), nc, Config{Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	subj := events.Subjects{Prefix: events.DefaultPrefix}
	c1, c2 := uuid.NewString(), uuid.NewString()
	forged, _ := json.Marshal(events.Announcement{AgentID: "a", CalloutKey: c2, Instance: "i", Mode: "live", Status: events.AgentAlive})
	const n = 500
	for range n {
		if err := nc.Publish(subj.Agent(c1, "a"), forged); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Eventually(t, "every forgery counted", func() bool { return e.Stats().AgentDropped == n })
	lines := strings.Count(log.String(), "dropped an agent message")
	if lines == 0 || lines > 10 {
		t.Fatalf("%d log lines for %d drops, want a few:\n%s", lines, n, log.String())
	}
}

// A result that arrives just as its add starts waiting (the wait opens
// while the result is checked against the state) reaches the add: it is
// neither kept for an add that already waits nor lost.
func TestWaits_ResultArrivingAsTheWaitOpensIsNotLost(t *testing.T) {
	w := newWaits()
	f := &events.Filter{Key: uuid.NewString(), ID: 7, CalloutKey: uuid.NewString()}
	r := events.NotifyResult{AgentID: "a", CalloutKey: f.CalloutKey, Instance: "i", FilterKey: f.Key, FilterID: f.ID}
	var ch chan events.NotifyResult
	why := w.deliver(r, func(events.NotifyResult) bool {
		ch, _ = w.open(f, 1) // the add starts waiting right now
		return true
	})
	select {
	case got := <-ch:
		if got != r || why != "" {
			t.Fatalf("got %+v (%q), want %+v", got, why, r)
		}
	default:
		t.Fatalf("the result did not reach the waiting add (dropped: %q, kept early: %d)", why, w.nEarly)
	}
}

// Made-up instances of one agent id (a hostile agent host announcing
// fresh instance ids) do not grow the registry without end: at most
// maxInstances are kept, the least recently seen going first.
func TestAgentInstances_AtMostEightPerAgentID(t *testing.T) {
	w := newAgentWorld(t)
	f := w.fake(w.c1, "many")
	// It answers the pings of every instance it makes up, as its
	// permissions let it (<p>.agent.C.id.ping.*).
	sub, err := f.nc.Subscribe(w.subj.AgentPing(w.c1, "many")+".*", func(m *nats.Msg) { _ = m.Respond([]byte("{}")) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := f.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	var last string
	for i := range 3 * maxInstances {
		ann := f.ann
		ann.Instance = fmt.Sprintf("made-up-%d", i)
		f.announce(ann)
		last = ann.Instance
	}
	w.waitListed(w.c1, last, true)
	if n := len(w.e.agents.forCallout(w.c1)); n > maxInstances {
		t.Fatalf("%d instances of one agent id kept, want at most %d", n, maxInstances)
	}
}
