package test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/engine"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
	"github.com/wfpnats/wfp/jetstream"
	"github.com/wfpnats/wfp/projection"
	"github.com/wfpnats/wfp/test/chaos/check"
	"github.com/wfpnats/wfp/test/chaos/load"
)

// A remote site: agents connect to a leaf node with its own JetStream
// domain and read a mirror of the hub's log there, with the SDK unchanged
// (the mirror has the log's name, subjects and sequence numbers). Their
// announcements and R7 answers are core NATS and cross the leaf
// connection to the engine at the hub: an add waits for them, and a
// refusal at the site rejects it at the hub. With the link down the site
// keeps serving replays from the mirror; once it is back the mirror and
// the agents catch up, and everything equals the hub's log.
func TestSiteAgentsReadALocalMirror(t *testing.T) {
	s := testkit.NewSite(t)
	ctx := ctxT(t)
	hubNC := s.Hub.Connect(t, "")
	hubJS := testkit.JetStream(t, hubNC)
	eng, err := engine.Start(ctx, s.Hub.Connect(t, ""), engine.Config{Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	client := engine.NewClient(hubNC)
	co, err := client.AddCallout(ctx, events.Callout{Name: "site callout"})
	if err != nil {
		t.Fatal(err)
	}
	l := newLoad(t)
	add := func(name string, opts ...engine.CallOption) (*events.Filter, error) {
		op := check.Op{Key: uuid.NewString()}
		f := load.Filter(op.Key, co.Key)
		f.Name = name
		got, err := client.AddFilter(ctx, f, opts...)
		if op.Outcome = load.OutcomeOf(err); op.Outcome == check.Acked {
			op.ID = got.ID
		}
		l.Record(op)
		return got, err
	}
	for i := range 4 {
		f, err := add("before")
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if err := client.DeleteFilter(ctx, engine.FilterRef{FilterID: f.ID}); err != nil {
				t.Fatal(err)
			}
			l.Record(check.Op{Delete: true, ID: f.ID})
		}
	}

	// The site's mirror, created from the site's side.
	siteNC := s.Leaf.Connect(t, "")
	siteJS := testkit.JetStream(t, siteNC)
	if _, err := jetstream.EnsureMirror(ctx, siteJS, jetstream.MirrorConfig{OriginDomain: testkit.HubDomain}); err != nil {
		t.Fatal(err)
	}
	waitMirrored(t, hubJS, siteJS)
	sameMessages(t, hubJS, siteJS)

	// Agents at the site, on the leaf node only.
	start := lastSeq(t, siteJS) + 1
	agents := map[string]*siteAgent{}
	for _, a := range []*siteAgent{
		{name: "live", mode: check.Live, start: start},
		{name: "replay", mode: check.Replay},
		{name: "strict", mode: check.Live, start: start, refuse: "ftp"},
	} {
		a.register(t, siteJS, co.Key)
		agents[a.name] = a
	}
	testkit.Eventually(t, "the hub's engine to list the site's agents", func() bool {
		l, err := client.ListCallouts(ctx)
		return err == nil && len(l.Callouts) == 1 && len(l.Callouts[0].Agents) == 3
	})

	// An add at the hub returns once the site's agents accepted it.
	for range 3 {
		f, err := add("inspect")
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range agents {
			if !a.got(callout.AddFilter, f.ID) {
				t.Fatalf("add %d acknowledged before site agent %s had it", f.ID, a.name)
			}
		}
	}
	// A refusal at the site rejects the add at the hub.
	if _, err := add("allow ftp"); !errors.Is(err, engine.ErrCalloutNotificationFailed) || !strings.Contains(err.Error(), "strict") {
		t.Fatalf("add refused by the site's agent: %v, want FWP_E_CALLOUT_NOTIFICATION_FAILED naming it", err)
	}
	list, err := client.ListFilters(ctx, engine.ListFiltersRequest{CalloutKey: co.Key})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range list.Filters {
		if f.Name == "allow ftp" {
			t.Fatalf("the refused filter %d is listed at the hub", f.ID)
		}
	}

	// The link goes down. The hub keeps writing; adds that wait for the
	// site's agents are taken back once they time out (R7), until the
	// engine forgets the agents; either way they are in the hub's log.
	waitMirrored(t, hubJS, siteJS)
	s.Cut()
	mirrored := lastSeq(t, siteJS)
	for range 3 {
		_, _ = add("during outage", engine.WithNotifyTimeout(300*time.Millisecond))
	}
	if lastSeq(t, hubJS) == mirrored {
		t.Fatal("nothing was written at the hub during the outage")
	}
	// The site still serves a replay, from the mirror as it was.
	late := &siteAgent{name: "late", mode: check.Replay}
	late.register(t, siteJS, co.Key)
	agents[late.name] = late
	if got := lastSeq(t, siteJS); got != mirrored {
		t.Fatalf("the mirror moved from %d to %d with the link down", mirrored, got)
	}

	// The link comes back: the mirror catches up, the agents follow.
	s.Restore()
	waitMirrored(t, hubJS, siteJS)
	sameMessages(t, hubJS, siteJS)
	testkit.Eventually(t, "the hub's engine to list the site's 4 agents again", func() bool {
		l, err := client.ListCallouts(ctx)
		return err == nil && len(l.Callouts) == 1 && len(l.Callouts[0].Agents) == 4
	})
	lastID, err := l.AddUntilAcked(client, co.Key, callTimeout)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range agents {
		testkit.Eventually(t, "site agent "+a.name+" to get the last add", func() bool { return a.got(callout.AddFilter, lastID) })
	}

	entries, err := load.ReadLog(hubJS)
	if err != nil {
		t.Fatal(err)
	}
	var ags []check.Agent
	for _, a := range agents {
		ags = append(ags, a.observed(co.Key))
	}
	var fs []*events.Filter
	eng.View(func(st *projection.State) {
		for _, f := range st.Filters(projection.Template{}) {
			fs = append(fs, f.Clone())
		}
	})
	r := check.Verify(entries, l.Ops(), ags, []check.Engine{{Name: "hub", Seq: eng.Seq(), Filters: fs}})
	t.Log(r)
	for _, p := range r.Problems {
		t.Error(p)
	}
	if !r.OK() || r.Refused == 0 {
		t.Errorf("want consistent, with the site's refusal counted: %v", r)
	}
}

// siteAgent is an agent at the site with what it was told.
type siteAgent struct {
	name   string
	mode   check.Mode
	start  uint64
	refuse string // refuse adds of filters whose name contains it
	rec    *recorder
	agent  *callout.Agent
}

func (a *siteAgent) register(t *testing.T, js natsjs.JetStream, co string) {
	t.Helper()
	a.rec = newRecorder()
	h := callout.HandlerFunc(func(ctx context.Context, nt callout.NotifyType, f *callout.Filter) error {
		err := a.rec.Notify(ctx, nt, f)
		if nt == callout.AddFilter && a.refuse != "" && strings.Contains(f.Name, a.refuse) {
			return errors.New("this site refuses " + a.refuse)
		}
		return err
	})
	opts := []callout.Option{callout.WithLogger(quietLog), callout.WithAgentID(a.name)}
	if a.mode == check.Replay {
		opts = append(opts, callout.WithMode(callout.Replay))
	}
	var err error
	if a.agent, err = callout.Register(ctxT(t), js, co, h, opts...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.agent.Close() })
	waitSynced(t, a.agent)
}

func (a *siteAgent) got(nt callout.NotifyType, id uint64) bool {
	for _, n := range a.rec.snapshot() {
		if n.t == nt && n.id == id {
			return true
		}
	}
	return false
}

func (a *siteAgent) observed(co string) check.Agent {
	var notes []check.Notice
	for _, n := range a.rec.snapshot() {
		notes = append(notes, check.Notice{Delete: n.t == callout.DeleteFilter, ID: n.id, Key: n.key, Initial: n.initial})
	}
	held := []uint64{}
	for f := range a.agent.Filters() {
		held = append(held, f.ID)
	}
	return check.Agent{Name: a.name, Callout: co, Mode: a.mode, Runs: [][]check.Notice{notes}, Start: a.start, Held: held}
}

func lastSeq(t *testing.T, js natsjs.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(ctxT(t), jetstream.DefaultStreamName)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().State.LastSeq
}

// waitMirrored waits until the site's mirror has everything the hub's log
// has.
func waitMirrored(t *testing.T, hub, site natsjs.JetStream) {
	t.Helper()
	want := lastSeq(t, hub)
	testkit.Eventually(t, "the mirror to catch up with the hub", func() bool { return lastSeq(t, site) >= want })
}

// sameMessages checks that the mirror holds every message of the hub's
// log at the same sequence: filter ids (add sequences) and the SDK's start
// positions mean the same at the site.
func sameMessages(t *testing.T, hub, site natsjs.JetStream) {
	t.Helper()
	ctx := ctxT(t)
	hs, err := hub.Stream(ctx, jetstream.DefaultStreamName)
	if err != nil {
		t.Fatal(err)
	}
	ss, err := site.Stream(ctx, jetstream.DefaultStreamName)
	if err != nil {
		t.Fatal(err)
	}
	hst, sst := hs.CachedInfo().State, ss.CachedInfo().State
	if hst.FirstSeq != sst.FirstSeq || hst.LastSeq != sst.LastSeq || hst.Msgs != sst.Msgs {
		t.Fatalf("hub holds %d..%d (%d), the mirror %d..%d (%d)", hst.FirstSeq, hst.LastSeq, hst.Msgs, sst.FirstSeq, sst.LastSeq, sst.Msgs)
	}
	for seq := hst.FirstSeq; seq <= hst.LastSeq; seq++ {
		hm, herr := hs.GetMsg(ctx, seq)
		sm, serr := ss.GetMsg(ctx, seq)
		if errors.Is(herr, natsjs.ErrMsgNotFound) && errors.Is(serr, natsjs.ErrMsgNotFound) {
			continue // rolled up by a delete, at both (the mirror applies roll-ups too)
		}
		if herr != nil || serr != nil {
			t.Fatalf("seq %d: hub %v, mirror %v", seq, herr, serr)
		}
		if hm.Subject != sm.Subject || hm.Header.Get(natsjs.MsgIDHeader) != sm.Header.Get(natsjs.MsgIDHeader) {
			t.Fatalf("seq %d: hub has %s %s, the mirror %s %s", seq, hm.Subject, hm.Header.Get(natsjs.MsgIDHeader), sm.Subject, sm.Header.Get(natsjs.MsgIDHeader))
		}
	}
}
