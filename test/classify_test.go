package test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/classify"
	"github.com/wfpnats/wfp/engine"
	"github.com/wfpnats/wfp/events"
)

const classifyLayer = "ALE_AUTH_CONNECT_V4"

func (w *world) classify(t *testing.T, fields map[string]string) *engine.ClassifyResponse {
	t.Helper()
	r, err := w.client.Classify(ctxT(t), engine.ClassifyRequest{Layer: classifyLayer, Fields: fields})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (w *world) add(t *testing.T, f events.Filter) *events.Filter {
	t.Helper()
	f.Layer = classifyLayer
	got, err := w.client.AddFilter(ctxT(t), f)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// steps renders a classify answer as "id:verdict" per matched filter, in
// order ("-" when not evaluated), then the decision and its filter.
func steps(r *engine.ClassifyResponse) string {
	var b strings.Builder
	for _, s := range r.Filters {
		v := "-"
		if s.Evaluated {
			v = s.Verdict.String()
		}
		fmt.Fprintf(&b, "%d:%s ", s.Filter.ID, v)
	}
	fmt.Fprintf(&b, "=> %s by %d", r.Decision, r.DecidedBy)
	return b.String()
}

var ssh = map[string]string{"IP_REMOTE_PORT": "22", "IP_PROTOCOL": "6", "IP_REMOTE_ADDRESS": "10.1.2.3"}

// Classify end to end on a layer mixing permit, block, inspection and
// terminating callouts, registered and not: filters come in WFP's order
// (sublayer by weight, FWPM_SUBLAYER_INSPECTION last; then filter weight,
// highest first; then id), the first permit or block decides its
// sublayer, an inspection callout lets evaluation go on, a block in a
// later sublayer overrides a soft permit, and what a callout says depends
// on whether an agent serves it.
func TestClassify_ArbitrationOrderAndDecisions(t *testing.T) {
	w := newWorld(t)
	inspector, terminator, orphan := w.addCallout(t), w.addCallout(t), w.addCallout(t)
	register(t, w, inspector, newRecorder(), callout.WithAgentID("inspector-1"))
	term := registerOn(t, w.agentJS(t), terminator, "terminator-1", newRecorder())
	w.waitAgents(t, inspector, "inspector-1")
	w.waitAgents(t, terminator, "terminator-1")

	port22 := []events.Condition{{Field: "IP_REMOTE_PORT", Value: "22"}}
	// Added out of order on purpose: the answer's order is WFP's, not the log's.
	permitLow := w.add(t, events.Filter{Name: "permit ssh", Action: events.ActionPermit, Conditions: port22})
	orphaned := w.add(t, events.Filter{Name: "orphaned terminator", Action: events.ActionCalloutTerminating, CalloutKey: orphan,
		SubLayerKey: events.SubLayerInspection, Conditions: port22})
	block := w.add(t, events.Filter{Name: "block ssh", Weight: 10, Action: events.ActionBlock, Conditions: port22})
	terminate := w.add(t, events.Filter{Name: "terminate ssh", Weight: 50, Action: events.ActionCalloutTerminating, CalloutKey: terminator,
		Conditions: []events.Condition{{Field: "IP_REMOTE_PORT", Match: events.MatchRange, Value: "20-25"},
			{Field: "IP_REMOTE_ADDRESS", Match: events.MatchPrefix, Value: "10.0.0.0/8"}}})
	inspect := w.add(t, events.Filter{Name: "inspect everything", Weight: 100, Action: events.ActionCalloutInspection, CalloutKey: inspector})
	w.add(t, events.Filter{Name: "not ssh", Weight: 1000, Action: events.ActionBlock,
		Conditions: []events.Condition{{Field: "IP_REMOTE_PORT", Match: events.MatchNotEqual, Value: "22"}}})

	// Universal sublayer: inspect (continue), terminate (registered: the
	// interim verdict, permit) decides it; block and permit are not
	// evaluated. Inspection sublayer: the orphaned terminator blocks (R8),
	// overriding the soft permit.
	r := w.classify(t, ssh)
	want := fmt.Sprintf("%d:continue %d:permit %d:- %d:- %d:block => block by %d",
		inspect.ID, terminate.ID, block.ID, permitLow.ID, orphaned.ID, orphaned.ID)
	if got := steps(r); got != want {
		t.Fatalf("ssh:\n got %s\nwant %s", got, want)
	}
	if r.Filters[4].SubLayer != events.SubLayerInspection || r.Filters[0].SubLayer != events.SubLayerUniversal {
		t.Fatalf("sublayers %s, %s", r.Filters[0].SubLayer, r.Filters[4].SubLayer)
	}
	if !strings.Contains(r.Filters[4].Reason, "not registered: blocks") || r.Decision != classify.Block {
		t.Fatalf("orphaned terminator: %+v", r.Filters[4])
	}

	// Outside 10.0.0.0/8 the terminating callout does not match: the block
	// filter decides the first sublayer, and a block is final.
	r = w.classify(t, map[string]string{"IP_REMOTE_PORT": "22", "IP_REMOTE_ADDRESS": "192.0.2.1"})
	want = fmt.Sprintf("%d:continue %d:block %d:- %d:- => block by %d", inspect.ID, block.ID, permitLow.ID, orphaned.ID, block.ID)
	if got := steps(r); got != want {
		t.Fatalf("ssh from outside:\n got %s\nwant %s", got, want)
	}

	// Port 80 matches only the conditionless inspection and "not ssh".
	r = w.classify(t, map[string]string{"IP_REMOTE_PORT": "80"})
	if got := steps(r); !strings.HasSuffix(got, fmt.Sprintf("%d:- => block by %d", inspect.ID, r.DecidedBy)) || r.Filters[0].Filter.Name != "not ssh" {
		t.Fatalf("port 80: %s", got)
	}
	r = w.classify(t, map[string]string{"IP_REMOTE_PORT": "22", "IP_REMOTE_ADDRESS": "10.9.9.9", "IP_PROTOCOL": "17"})
	if r.Decision != classify.Block {
		t.Fatalf("udp ssh: %s", steps(r))
	}

	// The terminating callout's agent leaves: its filter is unregistered
	// and blocks in its place, which ends evaluation there.
	if err := term.Close(); err != nil {
		t.Fatal(err)
	}
	w.waitAgents(t, terminator)
	r = w.classify(t, ssh)
	want = fmt.Sprintf("%d:continue %d:block %d:- %d:- %d:- => block by %d",
		inspect.ID, terminate.ID, block.ID, permitLow.ID, orphaned.ID, terminate.ID)
	if got := steps(r); got != want {
		t.Fatalf("ssh after the terminator left:\n got %s\nwant %s", got, want)
	}
	if st := w.eng.Stats(); st.CalloutsAsked == 0 || st.ClassifyCompiles != 1 {
		t.Fatalf("stats %+v: want callouts asked and one compile for an unchanged layer", st)
	}
}

// R8 end to end: a terminating callout filter whose callout has no agent
// blocks, unless it carries PERMIT_IF_CALLOUT_UNREGISTERED, and an
// inspection one is skipped; once an agent registers the callout is
// asked, and when the agent leaves the rule applies again. callout list
// says which callouts are registered.
func TestR8_UnregisteredCalloutDecisions(t *testing.T) {
	w := newWorld(t)
	c := w.addCallout(t)
	watch := w.add(t, events.Filter{Name: "watch ssh", Weight: 9, Action: events.ActionCalloutInspection, CalloutKey: c,
		Conditions: []events.Condition{{Field: "IP_REMOTE_PORT", Value: "22"}}})
	strict := w.add(t, events.Filter{Name: "strict ssh", Action: events.ActionCalloutTerminating, CalloutKey: c,
		Conditions: []events.Condition{{Field: "IP_REMOTE_PORT", Value: "22"}}})
	lenient := w.add(t, events.Filter{Name: "lenient rdp", Action: events.ActionCalloutUnknown, CalloutKey: c,
		Flags: []string{events.FlagPermitIfCalloutUnregistered}, Conditions: []events.Condition{{Field: "IP_REMOTE_PORT", Value: "3389"}}})
	rdp := map[string]string{"IP_REMOTE_PORT": "3389"}

	registered := func() bool {
		l, err := w.client.ListCallouts(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		return l.Callouts[0].Registered
	}
	unregistered := func(when string) {
		t.Helper()
		if registered() {
			t.Fatalf("%s: callout listed as registered", when)
		}
		if got, want := steps(w.classify(t, ssh)), fmt.Sprintf("%d:- %d:block => block by %d", watch.ID, strict.ID, strict.ID); got != want {
			t.Fatalf("%s, ssh:\n got %s\nwant %s", when, got, want)
		}
		r := w.classify(t, rdp)
		if got, want := steps(r), fmt.Sprintf("%d:permit => permit by %d", lenient.ID, lenient.ID); got != want ||
			!strings.Contains(r.Filters[0].Reason, "PERMIT_IF_CALLOUT_UNREGISTERED") {
			t.Fatalf("%s, rdp:\n got %s (%s)\nwant %s", when, got, r.Filters[0].Reason, want)
		}
	}
	unregistered("before any agent")

	a := registerOn(t, w.agentJS(t), c, "agent-1", newRecorder())
	w.waitAgents(t, c, "agent-1")
	if !registered() {
		t.Fatal("callout with an agent not listed as registered")
	}
	// Asked now (the interim verdicts: inspection continues, terminating
	// permits, unknown continues to the default permit).
	if got, want := steps(w.classify(t, ssh)), fmt.Sprintf("%d:continue %d:permit => permit by %d", watch.ID, strict.ID, strict.ID); got != want {
		t.Fatalf("registered, ssh:\n got %s\nwant %s", got, want)
	}
	if r := w.classify(t, rdp); r.Filters[0].Verdict != classify.Continue || r.DecidedBy != 0 || r.Decision != classify.Permit {
		t.Fatalf("registered, rdp: %s", steps(r))
	}

	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	w.waitAgents(t, c)
	unregistered("after the agent left")
}

// The engine's classify answers as the classify package does on the same
// filters: the endpoint adds no behaviour of its own.
func TestClassify_EngineMatchesThePackage(t *testing.T) {
	w := newWorld(t)
	c := w.addCallout(t)
	for i := range 40 {
		f := events.Filter{Name: fmt.Sprint("f", i), Weight: uint64(i % 7), Action: events.ActionTypes[i%len(events.ActionTypes)],
			Conditions: []events.Condition{{Field: "IP_REMOTE_PORT", Match: events.MatchRange, Value: fmt.Sprintf("%d-%d", i, i+20)}}}
		if f.Action.IsCallout() {
			f.CalloutKey = c
		}
		if i%5 == 0 {
			f.Flags = []string{events.FlagPermitIfCalloutUnregistered}
		}
		w.add(t, f)
	}
	list, err := w.client.ListFilters(ctxT(t), engine.ListFiltersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for port := range 70 {
		in := map[string]string{"IP_REMOTE_PORT": fmt.Sprint(port)}
		want, err := classify.Classify(context.Background(), classifyLayer, in, list.Filters, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := w.classify(t, in)
		if got.Decision != want.Decision || len(got.Filters) != len(want.Steps) {
			t.Fatalf("port %d: engine %s, package %v with %d steps", port, steps(got), want.Decision, len(want.Steps))
		}
		for i, s := range want.Steps {
			if g := got.Filters[i]; g.Filter.ID != s.Filter.ID || g.Verdict != s.Verdict || g.Evaluated != s.Evaluated {
				t.Fatalf("port %d step %d: engine %+v, package %+v", port, i, g, s)
			}
		}
	}
}
