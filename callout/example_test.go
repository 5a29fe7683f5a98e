package callout_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/engine"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
)

// quiet keeps the examples' output to what they print.
var quiet = slog.New(slog.DiscardHandler)

const telnetCallout = "6f1c2b3a-9d4e-4f5a-8b6c-7d8e9f0a1b2c"

// inspectTelnet is a filter that hands telnet connections to the callout.
func inspectTelnet(name, port string) events.Filter {
	return events.Filter{Name: name, Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionCalloutInspection,
		CalloutKey: telnetCallout, Conditions: []events.Condition{{Field: "IP_REMOTE_PORT", Value: port}}}
}

// setupTelnet starts what the examples after the first share: a NATS
// server and an engine in this process, with the telnet callout object.
func setupTelnet() (*engine.Client, jetstream.JetStream, func()) {
	nc, stop := testkit.ExampleServer()
	eng, err := engine.Start(context.Background(), nc, engine.Config{Logger: quiet})
	if err != nil {
		panic(err)
	}
	client := engine.NewClient(nc)
	if _, err := client.AddCallout(context.Background(), events.Callout{Key: telnetCallout, Name: "telnet inspector"}); err != nil {
		panic(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		panic(err)
	}
	return client, js, func() { eng.Close(); stop() }
}

// portState is a callout's own state for one filter: made at AddFilter,
// read by the classify path, released at DeleteFilter.
type portState struct {
	port string
	hits atomic.Uint64
}

// An agent keeps its own state for each filter that names its callout:
// it makes it when the filter is added and gets it back when the filter
// is deleted (R6).
func Example() {
	nc, stop := testkit.ExampleServer() // a NATS server with JetStream, in this process
	defer stop()
	ctx := context.Background()
	eng, err := engine.Start(ctx, nc, engine.Config{Logger: quiet})
	if err != nil {
		panic(err)
	}
	defer eng.Close()
	client := engine.NewClient(nc)
	if _, err := client.AddCallout(ctx, events.Callout{Key: telnetCallout, Name: "telnet inspector"}); err != nil {
		panic(err)
	}

	js, err := jetstream.New(nc)
	if err != nil {
		panic(err)
	}
	deleted := make(chan struct{})
	agent, err := callout.Register(ctx, js, telnetCallout, callout.HandlerFunc(
		func(ctx context.Context, t callout.NotifyType, f *callout.Filter) error {
			switch t {
			case callout.AddFilter:
				f.Context = &portState{port: f.Conditions[0].Value}
				fmt.Printf("add %q: watching port %s\n", f.Name, f.Conditions[0].Value)
			case callout.DeleteFilter:
				// Context is nil for a filter added before this agent
				// registered (R4): nothing to release then.
				if st, ok := f.Context.(*portState); ok {
					fmt.Printf("delete %q: releasing port %s\n", f.Name, st.port)
				}
				close(deleted)
			}
			return nil // notify types it does not know: ignore them (R5)
		}), callout.WithLogger(quiet))
	if err != nil {
		panic(err)
	}
	defer agent.Close()

	f, err := client.AddFilter(ctx, inspectTelnet("inspect telnet", "23"))
	if err != nil {
		panic(err)
	}
	if err := client.DeleteFilter(ctx, engine.FilterRef{FilterID: f.ID}); err != nil {
		panic(err)
	}
	<-deleted
	// Output:
	// add "inspect telnet": watching port 23
	// delete "inspect telnet": releasing port 23
}

// An agent in replay mode first gets the callout's current filters,
// marked Initial, then Synced is closed, then it goes on live (R3).
func ExampleWithMode() {
	client, js, stop := setupTelnet() // a NATS server, an engine and the callout object
	defer stop()
	ctx := context.Background()
	// Two filters exist before the agent registers.
	for _, f := range []events.Filter{inspectTelnet("inspect telnet", "23"), inspectTelnet("inspect telnet-ssl", "992")} {
		if _, err := client.AddFilter(ctx, f); err != nil {
			panic(err)
		}
	}

	agent, err := callout.Register(ctx, js, telnetCallout, callout.HandlerFunc(
		func(ctx context.Context, t callout.NotifyType, f *callout.Filter) error {
			fmt.Printf("%s %q initial=%v\n", t, f.Name, f.Initial)
			return nil
		}), callout.WithMode(callout.Replay), callout.WithLogger(quiet))
	if err != nil {
		panic(err)
	}
	defer agent.Close()
	<-agent.Synced()
	fmt.Println("synced")
	// Output:
	// add "inspect telnet" initial=true
	// add "inspect telnet-ssl" initial=true
	// synced
}

// The classify path finds a filter by id, from any goroutine, with the
// state its AddFilter made.
func ExampleAgent_Lookup() {
	client, js, stop := setupTelnet() // a NATS server, an engine and the callout object
	defer stop()
	ctx := context.Background()
	added := make(chan uint64, 1)
	agent, err := callout.Register(ctx, js, telnetCallout, callout.HandlerFunc(
		func(ctx context.Context, t callout.NotifyType, f *callout.Filter) error {
			if t == callout.AddFilter {
				f.Context = &portState{port: f.Conditions[0].Value}
				added <- f.ID
			}
			return nil
		}), callout.WithLogger(quiet))
	if err != nil {
		panic(err)
	}
	defer agent.Close()
	if _, err := client.AddFilter(ctx, inspectTelnet("inspect telnet", "23")); err != nil {
		panic(err)
	}
	id := <-added

	// A packet to port 23 matched filter id: classify it.
	f, ok := agent.Lookup(id)
	if !ok {
		panic("filter not held")
	}
	st := f.Context.(*portState)
	st.hits.Add(1)
	fmt.Printf("filter %d %q: port %s, %d hit(s)\n", f.ID, f.Name, st.port, st.hits.Load())
	// Output:
	// filter 2 "inspect telnet": port 23, 1 hit(s)
}

// An agent that serves classify answers the engine about traffic that
// matched its filters, with the state its AddFilter made (R6): here a
// hit counter, which its note reports and which DeleteFilter gets back.
func ExampleWithClassifier() {
	client, js, stop := setupTelnet() // a NATS server, an engine and the callout object
	defer stop()
	ctx := context.Background()
	added, deleted := make(chan struct{}), make(chan struct{})
	agent, err := callout.Register(ctx, js, telnetCallout, callout.HandlerFunc(
		func(ctx context.Context, t callout.NotifyType, f *callout.Filter) error {
			switch t {
			case callout.AddFilter:
				f.Context = &portState{port: f.Conditions[0].Value}
				close(added)
			case callout.DeleteFilter:
				if st, ok := f.Context.(*portState); ok {
					fmt.Printf("delete %q: %d hit(s)\n", f.Name, st.hits.Load())
				}
				close(deleted)
			}
			return nil
		}),
		callout.WithClassifier(callout.ClassifierFunc(
			func(ctx context.Context, f *callout.Filter, in callout.Fields) (callout.Verdict, error) {
				st := f.Context.(*portState)
				return callout.Continue.WithNote(fmt.Sprintf("hits=%d on port %s", st.hits.Add(1), st.port)), nil
			})),
		callout.WithAgentID("telnet-1"), callout.WithLogger(quiet))
	if err != nil {
		panic(err)
	}
	defer agent.Close()
	waitRegistered(client) // the engine has heard the agent's announcement
	f, err := client.AddFilter(ctx, inspectTelnet("inspect telnet", "23"))
	if err != nil {
		panic(err)
	}
	<-added

	for range 2 {
		r, err := client.Classify(ctx, engine.ClassifyRequest{Layer: "ALE_AUTH_CONNECT_V4",
			Fields: map[string]string{"IP_REMOTE_PORT": "23"}})
		if err != nil {
			panic(err)
		}
		s := r.Filters[0]
		fmt.Printf("%s: filter %d said %s, agent %s: %s\n", r.Decision, s.Filter.ID, s.Verdict, s.AgentID, s.Note)
	}
	if err := client.DeleteFilter(ctx, engine.FilterRef{FilterID: f.ID}); err != nil {
		panic(err)
	}
	<-deleted
	// Output:
	// permit: filter 2 said continue, agent telnet-1: hits=1 on port 23
	// permit: filter 2 said continue, agent telnet-1: hits=2 on port 23
	// delete "inspect telnet": 2 hit(s)
}

// waitRegistered waits until the engine lists an agent for the telnet
// callout.
func waitRegistered(client *engine.Client) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		l, err := client.ListCallouts(context.Background())
		if err == nil && len(l.Callouts) == 1 && l.Callouts[0].Registered {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	panic("the engine never listed the agent")
}

// A deployment whose engine keeps its log in stream POLICY under subject
// prefix acme.wfp: the agent names both with plain strings, beside the
// nats.go jetstream package.
func ExampleWithStream() {
	nc, stop := testkit.ExampleServer()
	defer stop()
	ctx := context.Background()
	eng, err := engine.Start(ctx, nc, engine.Config{Stream: "POLICY", Prefix: "acme.wfp", Logger: quiet})
	if err != nil {
		panic(err)
	}
	defer eng.Close()
	client := engine.NewClient(nc, engine.WithPrefix("acme.wfp"))
	if _, err := client.AddCallout(ctx, events.Callout{Key: telnetCallout, Name: "telnet inspector"}); err != nil {
		panic(err)
	}

	js, err := jetstream.New(nc)
	if err != nil {
		panic(err)
	}
	added := make(chan struct{})
	agent, err := callout.Register(ctx, js, telnetCallout, callout.HandlerFunc(
		func(ctx context.Context, t callout.NotifyType, f *callout.Filter) error {
			if t == callout.AddFilter {
				fmt.Printf("add %q\n", f.Name)
				close(added)
			}
			return nil
		}), callout.WithStream("POLICY", "acme.wfp"), callout.WithLogger(quiet))
	if err != nil {
		panic(err)
	}
	defer agent.Close()
	if _, err := client.AddFilter(ctx, inspectTelnet("inspect telnet", "23")); err != nil {
		panic(err)
	}
	<-added
	info, err := js.Stream(ctx, "POLICY")
	if err != nil {
		panic(err)
	}
	fmt.Println("stream", info.CachedInfo().Config.Name, "subjects", info.CachedInfo().Config.Subjects)
	// Output:
	// add "inspect telnet"
	// stream POLICY subjects [acme.wfp.filter.> acme.wfp.callout.> acme.wfp.session.*]
}
