package engine

import (
	"context"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
)

// pauseTail stops e's tail consumer, as if the engine were paused (a
// SIGSTOP, a long GC, a slow network): it folds nothing more until
// resumeTail. Its API still answers.
func pauseTail(t *testing.T, e *Engine) {
	t.Helper()
	e.stopTail()
}

func resumeTail(t *testing.T, e *Engine) {
	t.Helper()
	if err := e.startTail(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Linearizable reads: with two engines, one paused while the other
// acknowledges writes, a list answered by the paused one afterwards
// reflects every one of those writes. Without the read barrier it
// answers at once from its stale state.
func TestListAfterAnotherEnginesWritesReflectsThem(t *testing.T) {
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	a := startEngine(t, testkit.Conn(t, srv))
	b := startEngine(t, testkit.Conn(t, srv))
	ctx := context.Background()
	keep, _, err := a.submit(ctx, addFilter{f: events.Filter{Name: "before", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionBlock}})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "b to fold the first write", func() bool { return b.Seq() == a.Seq() })

	pauseTail(t, b)
	// a acknowledges writes b does not see: adds, and a delete.
	var want []uint64
	for _, name := range []string{"one", "two", "three"} {
		evs, _, err := a.submit(ctx, addFilter{f: events.Filter{Name: name, Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionBlock}})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, evs[0].Filter.ID)
	}
	if _, _, err := a.submit(ctx, deleteFilter{ref: FilterRef{FilterID: keep[0].Filter.ID}}); err != nil {
		t.Fatal(err)
	}
	written := a.Seq()
	a.Close() // only b answers from now on

	type answer struct {
		resp ListFiltersResponse
		code string
	}
	got := make(chan answer, 1)
	go func() {
		code, _, data := rawRequest(t, nc, EndpointFilterList, "")
		var r ListFiltersResponse
		_ = json.Unmarshal(data, &r)
		got <- answer{r, code}
	}()
	// b has the request and waits for its state to reach the log...
	testkit.Eventually(t, "the list to wait for the paused engine's state", func() bool { return b.Stats().ReadsWaiting == 1 })
	select {
	case r := <-got:
		t.Fatalf("the paused engine answered from its stale state: %+v", r)
	default:
	}
	// ...and answers once it is no longer paused.
	resumeTail(t, b)
	r := <-got
	if r.code != "" || r.resp.Seq < written || !slices.Equal(ids(r.resp.Filters), want) {
		t.Fatalf("list from the engine that was paused: %s, %d filters as of %d; want %v as of %d or later",
			r.code, len(r.resp.Filters), r.resp.Seq, want, written)
	}
}

// A get is behind the same barrier.
func TestGetAfterAnotherEnginesWriteReflectsIt(t *testing.T) {
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	a := startEngine(t, testkit.Conn(t, srv))
	b := startEngine(t, testkit.Conn(t, srv))
	pauseTail(t, b)
	evs, _, err := a.submit(context.Background(), addFilter{f: events.Filter{Name: "new", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionBlock}})
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	got := make(chan string, 1)
	go func() {
		code, msg, _ := rawRequest(t, nc, EndpointFilterGet, `{"filterId":`+itoa(evs[0].Filter.ID)+`}`)
		got <- code + msg
	}()
	testkit.Eventually(t, "the get to wait", func() bool { return b.Stats().ReadsWaiting == 1 })
	resumeTail(t, b)
	if r := <-got; r != "" {
		t.Fatalf("get of a filter another engine acknowledged: %s", r)
	}
}

// A callout get is behind the same barrier, and says how many filters
// name the callout and which agents run for it.
func TestGetCalloutAfterAnotherEnginesWriteReflectsIt(t *testing.T) {
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	a := startEngine(t, testkit.Conn(t, srv))
	b := startEngine(t, testkit.Conn(t, srv))
	pauseTail(t, b)
	evs, _, err := a.submit(context.Background(), addCallout{events.Callout{Name: "new"}})
	if err != nil {
		t.Fatal(err)
	}
	key := evs[0].Callout.Key
	if _, _, err := a.submit(context.Background(), addFilter{f: events.Filter{Name: "f", Layer: "ALE_AUTH_CONNECT_V4",
		Action: events.ActionCalloutInspection, CalloutKey: key}}); err != nil {
		t.Fatal(err)
	}
	a.Close()
	got := make(chan *CalloutInfo, 1)
	go func() {
		info, err := NewClient(nc).GetCallout(context.Background(), key)
		if err != nil {
			t.Error(err)
		}
		got <- info
	}()
	testkit.Eventually(t, "the get to wait", func() bool { return b.Stats().ReadsWaiting == 1 })
	resumeTail(t, b)
	if info := <-got; info == nil || info.Key != key || info.Name != "new" || info.FilterCount != 1 || info.Registered || info.Agents == nil {
		t.Fatalf("callout get of a callout another engine acknowledged: %+v", info)
	}
	for body, code := range map[string]Code{`{"calloutKey":"5b1f0c0e-8a43-4b8e-9d7c-3c2f2d1a0b01"}`: CodeCalloutNotFound,
		`{"calloutKey":"nope"}`: CodeInvalidParameter, `{}`: CodeInvalidParameter} {
		if got, msg, _ := rawRequest(t, nc, EndpointCalloutGet, body); got != string(code) || !strings.Contains(msg, "calloutKey") {
			t.Errorf("callout get %s: %s %q, want %s naming calloutKey", body, got, msg, code)
		}
	}
}

func itoa(n uint64) string { b, _ := json.Marshal(n); return string(b) }

// Ready means ready: once Start returns, the server routes API requests
// to the engine, whoever sends them.
func TestStartReturnsWithTheAPIRegistered(t *testing.T) {
	srv := testkit.Server(t)
	subject := events.Subjects{Prefix: events.DefaultPrefix}.API(EndpointFilterList)
	for range 20 {
		e, err := Start(context.Background(), testkit.Conn(t, srv), Config{Logger: testLogger(io.Discard)})
		if err != nil {
			t.Fatal(err)
		}
		ok := srv.NATS.GlobalAccount().SubscriptionInterest(subject)
		e.Close()
		if !ok {
			t.Fatal("Start returned before the server knew the API's subscriptions")
		}
		testkit.Eventually(t, "the closed engine's API to go", func() bool { return !srv.NATS.GlobalAccount().SubscriptionInterest(subject) })
	}
}

// Refusals are linearizable too: a filter add naming a callout another
// engine acknowledged a moment ago is not refused by an engine that has
// not folded it yet (FWP_E_CALLOUT_NOT_FOUND from a stale state); the
// engine catches up with the log first.
func TestRefusalWaitsForTheLog(t *testing.T) {
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	a := startEngine(t, testkit.Conn(t, srv))
	b := startEngine(t, testkit.Conn(t, srv))
	pauseTail(t, b)
	evs, _, err := a.submit(context.Background(), addCallout{events.Callout{Name: "new"}})
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	got := make(chan error, 1)
	go func() {
		_, err := NewClient(nc).AddFilter(context.Background(), events.Filter{Name: "f", Layer: "ALE_AUTH_CONNECT_V4",
			Action: events.ActionCalloutInspection, CalloutKey: evs[0].Callout.Key})
		got <- err
	}()
	testkit.Eventually(t, "the engine to catch up before refusing", func() bool { return b.Stats().CatchingUp })
	resumeTail(t, b)
	if err := <-got; err != nil {
		t.Fatalf("add naming a callout another engine acknowledged: %v", err)
	}
}

// Closed means closed: once Close returns, requests go to the engines
// still running, none is routed to the closed one and left unanswered.
func TestCloseReturnsWithTheAPIGone(t *testing.T) {
	srv := testkit.Server(t)
	subject := events.Subjects{Prefix: events.DefaultPrefix}.API(EndpointFilterList)
	for range 20 {
		e, err := Start(context.Background(), testkit.Conn(t, srv), Config{Logger: testLogger(io.Discard)})
		if err != nil {
			t.Fatal(err)
		}
		e.Close()
		if srv.NATS.GlobalAccount().SubscriptionInterest(subject) {
			t.Fatal("Close returned while the server still routed API requests to the engine")
		}
	}
}
