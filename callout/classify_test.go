package callout_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
)

// counted is a filter context that classify updates: the hits its
// Classify counted.
type counted struct{ hits atomic.Uint64 }

// counter is a Handler that is also a Classifier, as a callout driver
// with both a notifyFn and a classifyFn: it makes a context at add and
// counts hits in it at classify.
type counter struct{ added chan uint64 }

func (c counter) Notify(_ context.Context, t callout.NotifyType, f *callout.Filter) error {
	if t == callout.AddFilter {
		f.Context = &counted{}
		c.added <- f.ID
	}
	return nil
}

func (c counter) Classify(_ context.Context, f *callout.Filter, fields callout.Fields) (callout.Verdict, error) {
	switch fields["IP_REMOTE_PORT"] {
	case "panic":
		panic("boom")
	case "fail":
		return callout.Verdict{}, errors.New("cannot tell")
	case "nothing":
		return callout.Verdict{}, nil
	}
	n := f.Context.(*counted).hits.Add(1)
	return callout.Block.WithNote(fmt.Sprintf("hits=%d", n)), nil
}

// ask sends a classify call to agent id of callout key, as an engine
// does, and returns the answer.
func (e *env) ask(key, id string, call any) events.ClassifyAnswer {
	e.t.Helper()
	data, err := json.Marshal(call)
	if err != nil {
		e.t.Fatal(err)
	}
	m, err := e.nc.Request(e.subj.Classify(key, id), data, wait)
	if err != nil {
		e.t.Fatalf("classify call to %s: %v", id, err)
	}
	var a events.ClassifyAnswer
	if err := json.Unmarshal(m.Data, &a); err != nil {
		e.t.Fatalf("classify answer %q: %v", m.Data, err)
	}
	return a
}

// An agent whose Handler is a Classifier serves classify on its own
// subject, with the filter as it holds it (the Context its AddFilter
// set, R6), and answers in its own name. A filter it does not hold, a
// call that is not JSON, a Classify that fails, panics or says nothing
// are error answers; the agent goes on serving.
func TestClassify_AnswersWithTheFilterContext(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	h := counter{added: make(chan uint64, 10)}
	a := e.register(ck, h, callout.WithAgentID("counter-1"))
	f := e.add(ck, "watched")
	waitFor(t, h.added)
	// The handler has seen the add; the agent holds the filter once it
	// returned.
	waitStats(t, a, func(s callout.Stats) bool { return s.Held == 1 })

	call := events.ClassifyCall{FilterID: f.ID, FilterKey: f.Key, Fields: map[string]string{"IP_REMOTE_PORT": "22"}}
	for i := 1; i <= 3; i++ {
		got := e.ask(ck, "counter-1", call)
		want := events.ClassifyAnswer{AgentID: "counter-1", CalloutKey: ck, Instance: a.Instance(), FilterID: f.ID,
			Verdict: events.VerdictBlock, Note: fmt.Sprintf("hits=%d", i)}
		if got != want {
			t.Fatalf("answer %d: %+v, want %+v", i, got, want)
		}
	}
	if held, _ := a.Lookup(f.ID); held.Context.(*counted).hits.Load() != 3 {
		t.Fatal("the hits are not in the filter's context")
	}

	for _, tc := range []struct {
		name string
		call any
		want string
	}{
		{"a filter not held", events.ClassifyCall{FilterID: f.ID + 100, FilterKey: f.Key}, events.NoSuchFilter},
		{"a held id with another key", events.ClassifyCall{FilterID: f.ID, FilterKey: newKey()}, events.NoSuchFilter},
		{"a held id without its key", events.ClassifyCall{FilterID: f.ID}, events.NoSuchFilter},
		{"not a classify call", "garbage", "malformed classify call"},
		{"a Classify that fails", events.ClassifyCall{FilterID: f.ID, FilterKey: f.Key, Fields: map[string]string{"IP_REMOTE_PORT": "fail"}}, "cannot tell"},
		{"a Classify that panics", events.ClassifyCall{FilterID: f.ID, FilterKey: f.Key, Fields: map[string]string{"IP_REMOTE_PORT": "panic"}}, "panicked: Classify: boom"},
		{"a Classify that says nothing", events.ClassifyCall{FilterID: f.ID, FilterKey: f.Key, Fields: map[string]string{"IP_REMOTE_PORT": "nothing"}}, "no verdict"},
	} {
		got := e.ask(ck, "counter-1", tc.call)
		if got.Verdict != "" || !strings.Contains(got.Error, tc.want) || got.AgentID != "counter-1" || got.CalloutKey != ck {
			t.Errorf("%s: %+v, want an error answer saying %q", tc.name, got, tc.want)
		}
	}
	if st := a.Stats(); st.Classifies != 3 || st.ClassifyErrors != 7 || a.Err() != nil {
		t.Fatalf("stats %+v, err %v: want 3 classifies and 7 errors, still running", st, a.Err())
	}
	if got := e.ask(ck, "counter-1", call); got.Note != "hits=4" {
		t.Fatalf("after the errors: %+v", got)
	}
}

// An agent announces whether it serves classify: registered
// WithClassifier or with a Handler that is a Classifier it does, and
// subscribes to its own classify subject only (not another agent id's);
// otherwise it does not, and nobody answers there. After Close nobody
// answers either.
func TestClassify_AnnouncedAndServedOnlyWhenThereIsAClassifier(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	announced := make(chan events.Announcement, 100)
	subscribeJSON(e, e.subj.AllAgents(), func(a events.Announcement, _ *nats.Msg) { announced <- a })
	plain := callout.HandlerFunc(func(context.Context, callout.NotifyType, *callout.Filter) error { return nil })
	permit := callout.ClassifierFunc(func(context.Context, *callout.Filter, callout.Fields) (callout.Verdict, error) {
		return callout.Permit, nil
	})
	agents := map[string]*callout.Agent{
		"plain":  e.register(ck, plain, callout.WithAgentID("plain")),
		"option": e.register(ck, plain, callout.WithAgentID("option"), callout.WithClassifier(permit)),
		"both":   e.register(ck, counter{added: make(chan uint64, 10)}, callout.WithAgentID("both")),
	}
	want := map[string]bool{"plain": false, "option": true, "both": true}
	seen := map[string]bool{}
	for len(seen) < len(want) {
		select {
		case a := <-announced:
			if a.Classify != want[a.AgentID] {
				t.Fatalf("%s announces classify %v, want %v", a.AgentID, a.Classify, want[a.AgentID])
			}
			seen[a.AgentID] = true
		case <-ctxTimeout(t):
			t.Fatalf("announcements seen from %v only", seen)
		}
	}

	f := e.add(ck, "f")
	testkit.Eventually(t, "every agent to hold the filter", func() bool {
		for _, a := range agents {
			if _, ok := a.Lookup(f.ID); !ok {
				return false
			}
		}
		return true
	})
	call, _ := json.Marshal(events.ClassifyCall{FilterID: f.ID, FilterKey: f.Key})
	if _, err := e.nc.Request(e.subj.Classify(ck, "plain"), call, wait); !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("an agent without a classifier: %v, want no responders", err)
	}
	// Each hears its own subject only: nobody answers for another id.
	if _, err := e.nc.Request(e.subj.Classify(ck, "nobody"), call, wait); !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("an agent id nobody runs: %v, want no responders", err)
	}
	if got := e.ask(ck, "option", events.ClassifyCall{FilterID: f.ID, FilterKey: f.Key}); got.Verdict != events.VerdictPermit {
		t.Fatalf("WithClassifier: %+v", got)
	}
	if err := agents["option"].Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.nc.Request(e.subj.Classify(ck, "option"), call, wait); !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("after Close: %v, want no responders", err)
	}
	if _, err := callout.Register(context.Background(), e.js, ck, plain, callout.WithClassifier(nil)); !errors.Is(err, callout.ErrInvalidOption) {
		t.Fatalf("WithClassifier(nil): %v", err)
	}
}

// A Classify's ctx ends when the engine stops waiting.
func TestClassify_ContextEndsWhenTheEngineStopsWaiting(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	type deadline struct {
		left time.Duration
		set  bool
	}
	deadlines := make(chan deadline, 1)
	slow := callout.ClassifierFunc(func(ctx context.Context, _ *callout.Filter, _ callout.Fields) (callout.Verdict, error) {
		dl, ok := ctx.Deadline()
		deadlines <- deadline{time.Until(dl), ok}
		<-ctx.Done()
		return callout.Verdict{}, ctx.Err()
	})
	added := make(chan uint64, 1)
	e.register(ck, callout.HandlerFunc(func(_ context.Context, t callout.NotifyType, f *callout.Filter) error {
		if t == callout.AddFilter {
			added <- f.ID
		}
		return nil
	}), callout.WithAgentID("slow"), callout.WithClassifier(slow))
	f := e.add(ck, "f")
	waitFor(t, added)
	if got := e.ask(ck, "slow", events.ClassifyCall{FilterID: f.ID, FilterKey: f.Key}); !strings.Contains(got.Error, "deadline") {
		t.Fatalf("answer %+v, want the deadline error", got)
	}
	if d := <-deadlines; !d.set || d.left > events.AgentClassifyTimeout {
		t.Fatalf("Classify's ctx: deadline %+v, want one within %v", d, events.AgentClassifyTimeout)
	}
}
