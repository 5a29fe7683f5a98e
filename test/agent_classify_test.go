package test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/classify"
	"github.com/wfpnats/wfp/engine"
	"github.com/wfpnats/wfp/events"
)

// verdictCtx is a callout's context for one filter: the verdict its
// notify chose at add (from the filter's name: "deny" blocks, "allow"
// permits, anything else continues) and the classify calls it counted.
type verdictCtx struct {
	verdict callout.Verdict
	hits    atomic.Uint64
}

// handedBack is a context a DeleteFilter handed back.
type handedBack struct {
	id         uint64
	hadContext bool
	hits       uint64
}

// deciding is a callout with both halves: its notify makes each filter's
// context, its classify decides from that context alone (the fields say
// nothing about the verdict) and counts the hit in it, and its delete
// reports what came back (R6).
type deciding struct {
	added   chan uint64
	deleted chan handedBack
}

func newDeciding() *deciding {
	return &deciding{added: make(chan uint64, 100), deleted: make(chan handedBack, 100)}
}

func (d *deciding) Notify(_ context.Context, t callout.NotifyType, f *callout.Filter) error {
	switch t {
	case callout.AddFilter:
		c := &verdictCtx{verdict: callout.Continue}
		switch {
		case strings.Contains(f.Name, "deny"):
			c.verdict = callout.Block
		case strings.Contains(f.Name, "allow"):
			c.verdict = callout.Permit
		}
		f.Context = c
		d.added <- f.ID
	case callout.DeleteFilter:
		c, ok := f.Context.(*verdictCtx)
		hb := handedBack{id: f.ID, hadContext: ok}
		if ok {
			hb.hits = c.hits.Load()
		}
		d.deleted <- hb
	}
	return nil
}

func (d *deciding) Classify(_ context.Context, f *callout.Filter, in callout.Fields) (callout.Verdict, error) {
	c := f.Context.(*verdictCtx)
	return c.verdict.WithNote(fmt.Sprintf("hits=%d port=%s", c.hits.Add(1), in["IP_REMOTE_PORT"])), nil
}

func (d *deciding) waitDeleted(t *testing.T, id uint64) handedBack {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case hb := <-d.deleted:
			if hb.id == id {
				return hb
			}
		case <-timeout:
			t.Fatalf("no delete of filter %d", id)
		}
	}
}

// answeredBy renders steps as "id:verdict@agent[note]" ("-" for a filter
// not evaluated).
func answeredBy(steps []engine.ClassifyStep) string {
	var parts []string
	for _, s := range steps {
		v := "-"
		if s.Evaluated {
			v = s.Verdict.String()
		}
		parts = append(parts, fmt.Sprintf("%d:%s@%s[%s]", s.Filter.ID, v, s.AgentID, s.Note))
	}
	return strings.Join(parts, " ")
}

// Classify end to end with the callouts' verdicts coming from their
// agents, on a layer mixing permit, block, inspection and terminating
// callout filters: each agent decides from the context its notify made
// for the filter (R6), counting hits in it, and the arbitration is
// WFP's (an inspection callout's continue goes on, a terminating
// callout's block or permit decides, one that says continue blocks).
// A live agent registered after the filters were added does not hold
// them (R2) and passes them to the callout's next agent; the count comes
// back with the context at delete.
func TestClassify_AgentsDecideWithTheirFilterContext(t *testing.T) {
	w := newWorld(t)
	inspector, terminator := w.addCallout(t), w.addCallout(t)
	insp, replay := newDeciding(), newDeciding()
	registerOn(t, w.agentJS(t), inspector, "inspector", insp)
	registerOn(t, w.agentJS(t), terminator, "b-replay", replay, callout.WithMode(callout.Replay))
	w.waitAgents(t, inspector, "inspector")
	w.waitAgents(t, terminator, "b-replay")

	port22 := events.Condition{Field: "IP_REMOTE_PORT", Value: "22"}
	lab := events.Condition{Field: "IP_REMOTE_ADDRESS", Match: events.MatchPrefix, Value: "10.0.0.0/8"}
	watch := w.add(t, events.Filter{Name: "watch ssh", Weight: 100, Action: events.ActionCalloutInspection, CalloutKey: inspector,
		Conditions: []events.Condition{port22}})
	deny := w.add(t, events.Filter{Name: "deny ssh from the lab", Weight: 50, Action: events.ActionCalloutTerminating, CalloutKey: terminator,
		Conditions: []events.Condition{port22, lab}})
	allow := w.add(t, events.Filter{Name: "allow ssh", Weight: 40, Action: events.ActionCalloutTerminating, CalloutKey: terminator,
		Conditions: []events.Condition{port22}})
	block := w.add(t, events.Filter{Name: "block ssh", Weight: 10, Action: events.ActionBlock, Conditions: []events.Condition{port22}})
	permit := w.add(t, events.Filter{Name: "permit ssh", Action: events.ActionPermit, Conditions: []events.Condition{port22}})
	undecided := w.add(t, events.Filter{Name: "undecided rdp", Action: events.ActionCalloutTerminating, CalloutKey: terminator,
		Conditions: []events.Condition{{Field: "IP_REMOTE_PORT", Value: "3389"}}})

	// A live agent that sorts first, registered now: it holds none of
	// them, so b-replay answers.
	late := newDeciding()
	registerOn(t, w.agentJS(t), terminator, "a-late", late)
	w.waitAgents(t, terminator, "a-late", "b-replay")

	steps := func(fields map[string]string) (*engine.ClassifyResponse, string) {
		t.Helper()
		r := w.classify(t, fields)
		return r, answeredBy(r.Filters)
	}

	// From the lab: the inspector looks and goes on, the terminator's
	// context for "deny" blocks; nothing after it is evaluated.
	a, got := steps(map[string]string{"IP_REMOTE_PORT": "22", "IP_REMOTE_ADDRESS": "10.1.2.3"})
	want := fmt.Sprintf("%d:continue@inspector[hits=1 port=22] %d:block@b-replay[hits=1 port=22] %d:-@[] %d:-@[] %d:-@[]",
		watch.ID, deny.ID, allow.ID, block.ID, permit.ID)
	if got != want || a.Decision != classify.Block || a.DecidedBy != deny.ID {
		t.Fatalf("ssh from the lab: %v by %d\n got %s\nwant %s", a.Decision, a.DecidedBy, got, want)
	}
	// From elsewhere: "deny" does not match; "allow" permits, so the
	// block filter below it is not evaluated.
	a, got = steps(map[string]string{"IP_REMOTE_PORT": "22", "IP_REMOTE_ADDRESS": "192.0.2.1"})
	want = fmt.Sprintf("%d:continue@inspector[hits=2 port=22] %d:permit@b-replay[hits=1 port=22] %d:-@[] %d:-@[]",
		watch.ID, allow.ID, block.ID, permit.ID)
	if got != want || a.Decision != classify.Permit || a.DecidedBy != allow.ID {
		t.Fatalf("ssh from elsewhere: %v by %d\n got %s\nwant %s", a.Decision, a.DecidedBy, got, want)
	}
	// A terminating callout that says continue (its context chose no
	// verdict) blocks: it must decide.
	a, got = steps(map[string]string{"IP_REMOTE_PORT": "3389"})
	if want := fmt.Sprintf("%d:block@b-replay[hits=1 port=3389]", undecided.ID); got != want || a.Decision != classify.Block {
		t.Fatalf("rdp: %v\n got %s\nwant %s", a.Decision, got, want)
	}

	// A filter added now is held by both: the first by agent id answers.
	fresh := w.add(t, events.Filter{Name: "allow https", Action: events.ActionCalloutTerminating, CalloutKey: terminator,
		Conditions: []events.Condition{{Field: "IP_REMOTE_PORT", Value: "443"}}})
	if _, got = steps(map[string]string{"IP_REMOTE_PORT": "443"}); got != fmt.Sprintf("%d:permit@a-late[hits=1 port=443]", fresh.ID) {
		t.Fatalf("https: %s", got)
	}

	// The contexts come back at delete with what classify counted (R6);
	// a-late never held "deny" and gets it with no context (R4).
	if err := w.client.DeleteFilter(ctxT(t), engine.FilterRef{FilterID: deny.ID}); err != nil {
		t.Fatal(err)
	}
	if err := w.client.DeleteFilter(ctxT(t), engine.FilterRef{FilterID: watch.ID}); err != nil {
		t.Fatal(err)
	}
	if hb := replay.waitDeleted(t, deny.ID); !hb.hadContext || hb.hits != 1 {
		t.Fatalf("b-replay's delete of deny: %+v, want its context with 1 hit", hb)
	}
	if hb := late.waitDeleted(t, deny.ID); hb.hadContext {
		t.Fatalf("a-late's delete of deny: %+v, want no context", hb)
	}
	if hb := insp.waitDeleted(t, watch.ID); !hb.hadContext || hb.hits != 2 {
		t.Fatalf("inspector's delete of watch: %+v, want its context with 2 hits", hb)
	}
}
