package engine

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
)

// gatedAgent registers an agent for callout key whose AddFilter signals
// entered and then waits for gate to close before accepting.
func gatedAgent(t *testing.T, nc *nats.Conn, key string) (entered chan struct{}, gate chan struct{}) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	entered, gate = make(chan struct{}, 16), make(chan struct{})
	a, err := callout.Register(context.Background(), js, key, callout.HandlerFunc(
		func(ctx context.Context, nt callout.NotifyType, f *callout.Filter) error {
			if nt == callout.AddFilter {
				entered <- struct{}{}
				<-gate
			}
			return nil
		}), callout.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return entered, gate
}

// waitAgents waits until the engine counts n agents for key, so that adds
// wait for them (R7).
func waitAgents(t *testing.T, e *Engine, key string, n int) {
	t.Helper()
	testkit.Eventually(t, "the agent to be registered", func() bool { return len(e.agents.forCallout(key)) == n })
}

// An add whose agent takes longer to accept than the client's own timeout
// succeeds when its notify timeout covers the agent: the client waits for
// the notify timeout on top of its own.
func TestAddFilterWaitsForTheNotifyTimeoutBeyondTheClientTimeout(t *testing.T) {
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	e := startEngine(t, nc)
	const clientTimeout = 100 * time.Millisecond
	c := NewClient(nc, WithTimeout(clientTimeout))
	co, err := NewClient(nc).AddCallout(context.Background(), events.Callout{Name: "slow"})
	if err != nil {
		t.Fatal(err)
	}
	entered, gate := gatedAgent(t, testkit.Conn(t, srv), co.Key)
	waitAgents(t, e, co.Key, 1)

	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := c.AddFilter(context.Background(), events.Filter{Name: "f", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionCalloutInspection,
			CalloutKey: co.Key}, WithNotifyTimeout(time.Minute))
		done <- err
	}()
	<-entered
	// The agent is slow: it answers only once the client's own timeout
	// has long passed.
	<-time.After(time.Until(start.Add(5 * clientTimeout)))
	close(gate)
	if err := <-done; err != nil {
		t.Fatalf("AddFilter with a slow agent that accepts: %v", err)
	}
	list, err := NewClient(nc).ListFilters(context.Background(), ListFiltersRequest{CalloutKey: co.Key})
	if err != nil || len(list.Filters) != 1 {
		t.Fatalf("list: %v, %v; want the filter", list, err)
	}
}

func TestNegativeNotifyTimeoutRefused(t *testing.T) {
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	startEngine(t, nc)
	c := NewClient(nc)
	f := events.Filter{Name: "f", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionBlock}
	if _, err := c.AddFilter(context.Background(), f, WithNotifyTimeout(-time.Second)); !errors.Is(err, ErrInvalidParameter) {
		t.Fatalf("client side: %v, want FWP_E_INVALID_PARAMETER", err)
	}
	// And the engine, for clients that are not this one.
	msg, err := nc.Request(events.Subjects{Prefix: events.DefaultPrefix}.API(EndpointFilterAdd),
		[]byte(`{"name":"f","layer":"ALE_AUTH_CONNECT_V4","action":"block","notifyTimeoutMs":-5}`), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code := msg.Header.Get("Nats-Service-Error-Code"); code != string(CodeInvalidParameter) ||
		!strings.Contains(msg.Header.Get("Nats-Service-Error"), "notifyTimeoutMs") {
		t.Fatalf("engine side: %q %q", code, msg.Header.Get("Nats-Service-Error"))
	}
}

// addWaitingForAgent starts an engine with a gated agent and an add that
// waits for it (R7); it returns once the agent's handler has the add.
func addWaitingForAgent(t *testing.T) (e *Engine, c *Client, added chan error, gate chan struct{}) {
	t.Helper()
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	e = startEngine(t, nc)
	c = NewClient(nc)
	co, err := c.AddCallout(context.Background(), events.Callout{Name: "gated"})
	if err != nil {
		t.Fatal(err)
	}
	entered, gate := gatedAgent(t, testkit.Conn(t, srv), co.Key)
	waitAgents(t, e, co.Key, 1)
	added = make(chan error, 1)
	go func() {
		_, err := c.AddFilter(context.Background(), events.Filter{Name: "f", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionCalloutInspection, CalloutKey: co.Key})
		added <- err
	}()
	<-entered
	return e, c, added, gate
}

// Shutdown answers the requests it took before stopping: here an add that
// waits for its agent.
func TestShutdownFinishesTakenRequests(t *testing.T) {
	e, c, added, gate := addWaitingForAgent(t)
	stopped := make(chan error, 1)
	go func() { stopped <- e.Shutdown(context.Background()) }()
	// The API is gone at once: new requests find no engine...
	testkit.Eventually(t, "the API to stop", func() bool {
		_, err := c.ListCallouts(context.Background())
		return errors.Is(err, ErrEngineNotResponding)
	})
	// ...but the add taken before is still waiting for its agent.
	select {
	case err := <-stopped:
		t.Fatalf("Shutdown returned (%v) with an add unanswered", err)
	default:
	}
	close(gate)
	if err := <-added; err != nil {
		t.Fatalf("add taken before Shutdown: %v", err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// When Shutdown's ctx ends first it stops anyway and says what it left.
func TestShutdownDeadlineReportsUnanswered(t *testing.T) {
	e, _, _, gate := addWaitingForAgent(t)
	defer close(gate)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.Shutdown(ctx); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "1 request(s) left unanswered") {
		t.Fatalf("Shutdown with a spent ctx: %v", err)
	}
}
