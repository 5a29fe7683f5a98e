package engine

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wfpnats/wfp/classify"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
	"github.com/wfpnats/wfp/jetstream/embedded"
)

// handAgent is an agent speaking the agent protocol by hand on its own
// connection, as a client in another language (or a hostile one) would:
// it announces itself, serving classify or not, and answers each
// classify call with what answer returns (no answer for nil). With no
// answer function it does not subscribe at all.
func handAgent(t *testing.T, srv *embedded.Server, e *Engine, calloutKey, id string, serves bool,
	answer func(events.ClassifyCall) any) {
	t.Helper()
	nc := testkit.Conn(t, srv)
	subj := events.Subjects{Prefix: events.DefaultPrefix}
	if answer != nil {
		_, err := nc.Subscribe(subj.Classify(calloutKey, id), func(m *nats.Msg) {
			var call events.ClassifyCall
			if err := json.Unmarshal(m.Data, &call); err != nil {
				t.Errorf("classify call %q: %v", m.Data, err)
				return
			}
			switch a := answer(call).(type) {
			case nil:
			case []byte:
				_ = m.Respond(a)
			default:
				data, _ := json.Marshal(a)
				_ = m.Respond(data)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	ann, _ := json.Marshal(events.Announcement{AgentID: id, CalloutKey: calloutKey, Instance: "i-" + id, Mode: "live",
		Classify: serves, Status: events.AgentAlive})
	if err := nc.Publish(subj.Agent(calloutKey, id), ann); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// Alive until the test ends, however slow it runs: announce as
	// agents do.
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		tick := time.NewTicker(events.AnnounceInterval)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				_ = nc.Publish(subj.Agent(calloutKey, id), ann)
			case <-done:
				return
			}
		}
	}()
	testkit.Eventually(t, "agent "+id+" registered", func() bool {
		for _, a := range e.agents.forCallout(calloutKey) {
			if a.AgentID == id {
				return true
			}
		}
		return false
	})
}

// answer is a well-formed answer of agent id about call.
func answer(calloutKey, id string, call events.ClassifyCall, verdict, note string) events.ClassifyAnswer {
	return events.ClassifyAnswer{AgentID: id, CalloutKey: calloutKey, Instance: "i-" + id, FilterID: call.FilterID,
		Verdict: verdict, Note: note}
}

// classifyEnv is an engine and one callout per test case, each with a
// terminating filter on its own port: the agents are registered after
// the adds, so no add waits for them.
type classifyEnv struct {
	srv *embedded.Server
	e   *Engine
	c   *Client
}

func newClassifyEnv(t *testing.T) *classifyEnv {
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	return &classifyEnv{srv: srv, e: startEngine(t, nc), c: NewClient(nc)}
}

func (ce *classifyEnv) callout(t *testing.T, filters ...events.Filter) (string, []*events.Filter) {
	t.Helper()
	co, err := ce.c.AddCallout(context.Background(), events.Callout{Name: "asked"})
	if err != nil {
		t.Fatal(err)
	}
	var out []*events.Filter
	for _, f := range filters {
		f.CalloutKey = co.Key
		out = append(out, mustAdd(t, ce.c, f))
	}
	return co.Key, out
}

// An agent's answer is taken only if it is well formed and in the asked
// agent's name, about the asked filter, with a verdict of continue,
// permit or block and a printable note; any other is the callout failing
// (a terminating filter blocks), counted as dropped. Each bad answer
// below says "permit", so an answer taken wrongly would show.
func TestAgentClassify_AnswersAreValidated(t *testing.T) {
	ce := newClassifyEnv(t)
	for _, tc := range []struct {
		name string
		bad  func(key string, call events.ClassifyCall) any
		want string
	}{
		{"another agent's name", func(key string, call events.ClassifyCall) any {
			return answer(key, "someone-else", call, events.VerdictPermit, "")
		}, `names agent "someone-else"`},
		{"another callout's name", func(_ string, call events.ClassifyCall) any {
			return answer("6f1c2b3a-9d4e-4f5a-8b6c-7d8e9f0a1b2c", "agent-1", call, events.VerdictPermit, "")
		}, `of callout "6f1c2b3a-9d4e-4f5a-8b6c-7d8e9f0a1b2c"`},
		{"another filter", func(key string, call events.ClassifyCall) any {
			call.FilterID++
			return answer(key, "agent-1", call, events.VerdictPermit, "")
		}, "about filter"},
		{"an unknown verdict", func(key string, call events.ClassifyCall) any {
			return answer(key, "agent-1", call, "allow", "")
		}, `verdict "allow"`},
		{"verdict none", func(key string, call events.ClassifyCall) any {
			return answer(key, "agent-1", call, "none", "")
		}, `verdict "none"`},
		{"neither verdict nor error", func(key string, call events.ClassifyCall) any {
			return answer(key, "agent-1", call, "", "")
		}, `verdict ""`},
		{"a note with an escape sequence", func(key string, call events.ClassifyCall) any {
			return answer(key, "agent-1", call, events.VerdictPermit, "\x1b[2J")
		}, "note: control character"},
		{"a note too long", func(key string, call events.ClassifyCall) any {
			return answer(key, "agent-1", call, events.VerdictPermit, strings.Repeat("x", events.MaxNoteLen+1))
		}, "note: 257 bytes"},
		{"not JSON", func(string, events.ClassifyCall) any { return []byte("permit") }, "malformed classify answer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := "1000"
			key, fs := ce.callout(t, portFilter("ask", port, events.ActionCalloutTerminating, ""))
			handAgent(t, ce.srv, ce.e, key, "agent-1", true, func(call events.ClassifyCall) any { return tc.bad(key, call) })
			dropped := ce.e.Stats().AgentDropped
			r := classifyPortOf(t, ce.c, key, port)
			s := r.Filters[0]
			if r.Decision != classify.Block || r.DecidedBy != fs[0].ID || !strings.Contains(s.Error, tc.want) || s.AgentID != "" {
				t.Fatalf("decision %v by %d, step %+v: want a block on an error saying %q", r.Decision, r.DecidedBy, s, tc.want)
			}
			if ce.e.Stats().AgentDropped != dropped+1 {
				t.Fatal("the answer was not counted as dropped")
			}
			// The test's own filters: gone, so the next case's port is free.
			if err := ce.c.DeleteFilter(context.Background(), FilterRef{FilterID: fs[0].ID}); err != nil {
				t.Fatal(err)
			}
		})
	}

	// The same agent answering well is taken, with its note.
	key, fs := ce.callout(t, portFilter("ask", "1000", events.ActionCalloutTerminating, ""))
	handAgent(t, ce.srv, ce.e, key, "agent-1", true, func(call events.ClassifyCall) any {
		return answer(key, "agent-1", call, events.VerdictPermit, "hits=1")
	})
	r := classifyPortOf(t, ce.c, key, "1000")
	if s := r.Filters[0]; r.Decision != classify.Permit || r.DecidedBy != fs[0].ID || s.AgentID != "agent-1" || s.Note != "hits=1" || s.Error != "" {
		t.Fatalf("a good answer: %+v %+v", r, s)
	}
}

// classifyPortOf classifies port and checks that only the filters of
// callout key matched (the other cases' callouts are left alone).
func classifyPortOf(t *testing.T, c *Client, key, port string) *ClassifyResponse {
	t.Helper()
	r := classifyPort(t, c, port)
	for _, s := range r.Filters {
		if s.Filter.CalloutKey != key {
			t.Fatalf("filter %d of another callout matched", s.Filter.ID)
		}
	}
	return r
}

// The callout's agents are asked in order of agent id, among those that
// serve classify: one that does not hold the filter (events.NoSuchFilter)
// or that nobody answers for passes it to the next; the first other
// answer stands. When none can answer, the callout fails. An agent that
// does not serve classify is never asked, and when no agent serves it the
// engine answers itself (InterimClassifier).
func TestAgentClassify_AsksTheAgentsInTurn(t *testing.T) {
	ce := newClassifyEnv(t)
	key, fs := ce.callout(t, portFilter("ask", "22", events.ActionCalloutTerminating, ""))
	f := fs[0]
	handAgent(t, ce.srv, ce.e, key, "a-0", false, func(call events.ClassifyCall) any {
		return answer(key, "a-0", call, events.VerdictPermit, "never asked")
	})
	newcomer := make(chan events.ClassifyCall, 10)
	handAgent(t, ce.srv, ce.e, key, "a-1", true, func(call events.ClassifyCall) any {
		newcomer <- call
		return events.ClassifyAnswer{AgentID: "a-1", CalloutKey: key, Instance: "i-a-1", FilterID: call.FilterID, Error: events.NoSuchFilter}
	})
	handAgent(t, ce.srv, ce.e, key, "a-2", true, nil) // announces classify, serves nothing: gone as far as classify goes
	handAgent(t, ce.srv, ce.e, key, "a-3", true, func(call events.ClassifyCall) any {
		return answer(key, "a-3", call, events.VerdictBlock, "seen "+call.Fields["IP_REMOTE_PORT"])
	})
	r := classifyPort(t, ce.c, "22")
	if s := r.Filters[0]; r.Decision != classify.Block || s.AgentID != "a-3" || s.Note != "seen 22" || s.Reason != "callout said block" {
		t.Fatalf("decision %v, step %+v: want a-3's block", r.Decision, s)
	}
	if len(newcomer) != 1 {
		t.Fatalf("a-1 was asked %d times, want once", len(newcomer))
	}
	if c := <-newcomer; c.FilterID != f.ID || c.FilterKey != f.Key || c.Fields["IP_REMOTE_PORT"] != "22" {
		t.Fatalf("a-1 was asked %+v", c)
	}
	// a-2, which nobody answers for, was pinged and found gone.
	testkit.Eventually(t, "a-2 forgotten", func() bool { return len(ce.e.agents.forCallout(key)) == 3 })

	// Nobody holds the filter: the callout fails, and the terminating
	// filter blocks.
	key2, _ := ce.callout(t, portFilter("ask", "23", events.ActionCalloutTerminating, ""))
	for _, id := range []string{"b-1", "b-2"} {
		handAgent(t, ce.srv, ce.e, key2, id, true, func(call events.ClassifyCall) any {
			return events.ClassifyAnswer{AgentID: id, CalloutKey: key2, Instance: "i-" + id, FilterID: call.FilterID, Error: events.NoSuchFilter}
		})
	}
	r = classifyPort(t, ce.c, "23")
	if s := r.Filters[0]; r.Decision != classify.Block || !strings.Contains(s.Error, "b-1: no such filter; b-2: no such filter") {
		t.Fatalf("nobody holds it: %v %+v", r.Decision, s)
	}

	// An agent's own error stands: the next agent is not asked.
	key3, _ := ce.callout(t, portFilter("look", "24", events.ActionCalloutInspection, ""))
	handAgent(t, ce.srv, ce.e, key3, "c-1", true, func(call events.ClassifyCall) any {
		return events.ClassifyAnswer{AgentID: "c-1", CalloutKey: key3, Instance: "i-c-1", FilterID: call.FilterID, Error: "state lost\x1b[0m"}
	})
	handAgent(t, ce.srv, ce.e, key3, "c-2", true, func(call events.ClassifyCall) any {
		return answer(key3, "c-2", call, events.VerdictContinue, "")
	})
	r = classifyPort(t, ce.c, "24")
	if s := r.Filters[0]; r.Decision != classify.Permit || s.Verdict != classify.Continue || s.Error != `agent c-1: "state lost\x1b[0m"` {
		t.Fatalf("an agent's error: %v %+v", r.Decision, s)
	}

	// No agent serves classify: the engine answers, and says so.
	key4, _ := ce.callout(t, portFilter("ask", "25", events.ActionCalloutTerminating, ""))
	handAgent(t, ce.srv, ce.e, key4, "d-1", false, nil)
	r = classifyPort(t, ce.c, "25")
	if s := r.Filters[0]; r.Decision != classify.Permit || s.AgentID != "" || s.Note != InterimNote {
		t.Fatalf("no agent serves classify: %v %+v", r.Decision, s)
	}
}

// An agent that does not answer costs a classify the agent wait
// (events.AgentClassifyTimeout), not the whole classify's: the callout
// fails for that filter, an inspection filter goes on and a terminating
// one blocks, and the answer comes.
func TestAgentClassify_BoundsTheWaitForAnAgent(t *testing.T) {
	ce := newClassifyEnv(t)
	key, fs := ce.callout(t,
		portFilter("look", "22", events.ActionCalloutInspection, ""),
		portFilter("decide", "22", events.ActionCalloutTerminating, ""))
	asked := make(chan struct{}, 10)
	handAgent(t, ce.srv, ce.e, key, "silent", true, func(events.ClassifyCall) any { asked <- struct{}{}; return nil })
	r := classifyPort(t, ce.c, "22")
	want := "agent silent did not answer within " + events.AgentClassifyTimeout.String()
	look, decide := r.Filters[0], r.Filters[1]
	if look.Filter.ID != fs[0].ID || look.Verdict != classify.Continue || look.Error != want ||
		decide.Verdict != classify.Block || decide.Error != want || r.DecidedBy != fs[1].ID {
		t.Fatalf("decision %v by %d, steps %+v %+v", r.Decision, r.DecidedBy, look, decide)
	}
	if len(asked) != 2 {
		t.Fatalf("the agent was asked %d times, want 2", len(asked))
	}
}
