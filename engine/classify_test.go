package engine

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/classify"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
)

const v4 = "ALE_AUTH_CONNECT_V4"

func portFilter(name, port string, action events.ActionType, calloutKey string) events.Filter {
	return events.Filter{Name: name, Layer: v4, Action: action, CalloutKey: calloutKey,
		Conditions: []events.Condition{{Field: "IP_REMOTE_PORT", Value: port}}}
}

func mustAdd(t *testing.T, c *Client, f events.Filter, opts ...CallOption) *events.Filter {
	t.Helper()
	got, err := c.AddFilter(context.Background(), f, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func classifyPort(t *testing.T, c *Client, port string) *ClassifyResponse {
	t.Helper()
	resp, err := c.Classify(context.Background(), ClassifyRequest{Layer: v4, Fields: map[string]string{"IP_REMOTE_PORT": port}})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// The compiled layer is rebuilt after its layer changes, and only then: a
// change to another layer, or to no layer (a callout), reuses it, and a
// change to its own layer shows in the very next classify.
func TestClassifyRecompilesOnlyWhenItsLayerChanges(t *testing.T) {
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	e := startEngine(t, nc)
	c := NewClient(nc)

	mustAdd(t, c, portFilter("block telnet", "23", events.ActionBlock, ""))
	if r := classifyPort(t, c, "23"); r.Decision != classify.Block {
		t.Fatalf("port 23: %+v", r)
	}
	classifyPort(t, c, "22")
	if n := e.Stats().ClassifyCompiles; n != 1 {
		t.Fatalf("%d compiles for two classifies of an unchanged layer, want 1", n)
	}

	other := portFilter("block telnet v6", "23", events.ActionBlock, "")
	other.Layer = "FWPM_LAYER_ALE_AUTH_CONNECT_V6"
	mustAdd(t, c, other)
	if _, err := c.AddCallout(context.Background(), events.Callout{Name: "c"}); err != nil {
		t.Fatal(err)
	}
	if r := classifyPort(t, c, "22"); r.Decision != classify.Permit || len(r.Filters) != 0 {
		t.Fatalf("port 22: %+v", r)
	}
	if n := e.Stats().ClassifyCompiles; n != 1 {
		t.Fatalf("%d compiles after changes to other layers, want 1", n)
	}

	// Another spelling of the layer is the same layer.
	ssh := portFilter("block ssh", "22", events.ActionBlock, "")
	ssh.Layer = "fwpm_layer_ale_auth_connect_v4"
	f := mustAdd(t, c, ssh)
	r := classifyPort(t, c, "22")
	if r.Decision != classify.Block || r.DecidedBy != f.ID || r.Seq < f.ID {
		t.Fatalf("port 22 after adding a filter for it: %+v", r)
	}
	if err := c.DeleteFilter(context.Background(), FilterRef{FilterID: f.ID}); err != nil {
		t.Fatal(err)
	}
	if r := classifyPort(t, c, "22"); r.Decision != classify.Permit {
		t.Fatalf("port 22 after deleting its filter: %+v", r)
	}
	if n := e.Stats().ClassifyCompiles; n != 3 {
		t.Fatalf("%d compiles, want 3 (one per change of the layer)", n)
	}
}

// Bad input is refused with FWP_E_INVALID_PARAMETER naming what is wrong.
func TestClassifyRefusesBadInput(t *testing.T) {
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	startEngine(t, nc)
	c := NewClient(nc)
	for _, tc := range []struct {
		req  ClassifyRequest
		want string
	}{
		{ClassifyRequest{}, "layer is required"},
		{ClassifyRequest{Layer: "NO_SUCH_LAYER"}, `layer: "NO_SUCH_LAYER"`},
		{ClassifyRequest{Layer: v4, Fields: map[string]string{"NO_SUCH_FIELD": "1"}}, "fields.NO_SUCH_FIELD"},
		{ClassifyRequest{Layer: v4, Fields: map[string]string{"IP_REMOTE_PORT": "70000"}}, "fields.IP_REMOTE_PORT"},
		{ClassifyRequest{Layer: v4, Fields: map[string]string{"IP_REMOTE_ADDRESS": "10.0.0.0/8"}}, "fields.IP_REMOTE_ADDRESS"},
	} {
		_, err := c.Classify(context.Background(), tc.req)
		if !errors.Is(err, ErrInvalidParameter) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want FWP_E_INVALID_PARAMETER naming %q", tc.req, err, tc.want)
		}
	}
	// The whole request must be JSON of the right shape.
	msg, err := nc.Request(events.Subjects{Prefix: "wfp"}.API(EndpointClassify), []byte(`{"layer":1}`), DefaultClientTimeout)
	if err != nil || msg.Header.Get("Nats-Service-Error-Code") != string(CodeInvalidParameter) {
		t.Fatalf("malformed request: %v %v", msg, err)
	}
}

// R8 as the engine applies it: a callout filter's callout is registered
// while the engine knows live agents for it. Unregistered, a terminating
// filter blocks (or permits, with PERMIT_IF_CALLOUT_UNREGISTERED) and an
// inspection filter is skipped; registered, the engine asks its
// CalloutClassifier. callout.list says which.
func TestClassifyAsksOnlyRegisteredCallouts(t *testing.T) {
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	asked := make(chan []AgentInfo, 16)
	e, err := Start(context.Background(), nc, Config{Classifier: CalloutClassifierFunc(
		func(_ context.Context, agents []AgentInfo, f *events.Filter, _ classify.Values) (CalloutAnswer, error) {
			asked <- agents
			return CalloutAnswer{Verdict: classify.Block}, nil
		})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	c := NewClient(nc)
	co, err := c.AddCallout(context.Background(), events.Callout{Name: "terminator"})
	if err != nil {
		t.Fatal(err)
	}
	f := mustAdd(t, c, portFilter("ask about ssh", "22", events.ActionCalloutTerminating, co.Key))
	flagged := portFilter("ask about rdp", "3389", events.ActionCalloutTerminating, co.Key)
	flagged.Flags = []string{events.FlagPermitIfCalloutUnregistered}
	mustAdd(t, c, flagged)

	registered := func() bool {
		l, err := c.ListCallouts(context.Background())
		if err != nil || len(l.Callouts) != 1 {
			t.Fatalf("callouts: %+v %v", l, err)
		}
		return l.Callouts[0].Registered
	}
	if registered() {
		t.Fatal("a callout without agents is listed as registered")
	}
	if r := classifyPort(t, c, "22"); r.Decision != classify.Block || !strings.Contains(r.Reason, "filter") ||
		!strings.Contains(r.Filters[0].Reason, "not registered") {
		t.Fatalf("unregistered terminating callout: %+v", r)
	}
	if r := classifyPort(t, c, "3389"); r.Decision != classify.Permit || !strings.Contains(r.Filters[0].Reason, "PERMIT_IF_CALLOUT_UNREGISTERED") {
		t.Fatalf("unregistered, with PERMIT_IF_CALLOUT_UNREGISTERED: %+v", r)
	}
	if len(asked) != 0 || e.Stats().CalloutsAsked != 0 {
		t.Fatal("an unregistered callout was asked")
	}

	js, err := jetstream.New(testkit.Conn(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	a, err := callout.Register(context.Background(), js, co.Key, callout.HandlerFunc(
		func(context.Context, callout.NotifyType, *callout.Filter) error { return nil }),
		callout.WithAgentID("agent-1"), callout.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	waitAgents(t, e, co.Key, 1)
	if !registered() {
		t.Fatal("a callout with a live agent is not listed as registered")
	}
	// Registered: asked, and its block stands even with the flag.
	if r := classifyPort(t, c, "3389"); r.Decision != classify.Block || r.Filters[0].Reason != "callout said block" {
		t.Fatalf("registered callout: %+v", r)
	}
	if agents := <-asked; len(agents) != 1 || agents[0].AgentID != "agent-1" {
		t.Fatalf("asked with agents %+v", agents)
	}
	if r := classifyPort(t, c, "22"); r.DecidedBy != f.ID || r.Decision != classify.Block {
		t.Fatalf("registered callout, port 22: %+v", r)
	}

	// The agent leaves (bye): unregistered again, at once.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	waitAgents(t, e, co.Key, 0)
	if r := classifyPort(t, c, "3389"); r.Decision != classify.Permit {
		t.Fatalf("after the agent left: %+v", r)
	}
	if n := e.Stats().CalloutsAsked; n != 2 {
		t.Fatalf("callouts asked %d times, want 2", n)
	}
}

// For a registered callout none of whose agents serves classify, the
// verdict is the engine's interim one: inspection and unknown continue,
// terminating permits, and the note says the engine answered.
func TestInterimClassifier(t *testing.T) {
	for action, want := range map[events.ActionType]classify.Verdict{
		events.ActionCalloutInspection:  classify.Continue,
		events.ActionCalloutUnknown:     classify.Continue,
		events.ActionCalloutTerminating: classify.Permit,
	} {
		got, err := InterimClassifier.ClassifyCallout(context.Background(), nil, &events.Filter{Action: action}, nil)
		if err != nil || got != (CalloutAnswer{Verdict: want, Note: InterimNote}) {
			t.Errorf("%s: %v %v, want %v", action, got, err, want)
		}
	}
}
