package test

import (
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/engine"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
)

// natsCLI runs the real nats CLI, pinned in go.mod as a tool dependency,
// against url.
func natsCLI(t *testing.T, url string, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"tool", "nats", "--server", url}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("nats %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// An operator sees the engine and its events with the stock nats CLI:
// `nats micro ls` lists wfp-engine, `nats sub` shows readable headers, and
// `--translate 'engine decode'` shows the payload as JSON.
func TestNatsCLISeesEngineAndEvents(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t)
	co, err := w.client.AddCallout(ctx, events.Callout{Name: "c"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := w.client.AddFilter(ctx, events.Filter{Name: "telnet", Layer: "ALE_AUTH_CONNECT_V4",
		Action: events.ActionCalloutTerminating, CalloutKey: co.Key})
	if err != nil {
		t.Fatal(err)
	}
	g, err := w.client.AddFilter(ctx, events.Filter{Name: "ssh", Layer: "ALE_AUTH_CONNECT_V4",
		Action: events.ActionCalloutTerminating, CalloutKey: co.Key})
	if err != nil {
		t.Fatal(err)
	}
	// The delete rolls up f's add: the log holds g's add and f's delete.
	if err := w.client.DeleteFilter(ctx, engine.FilterRef{FilterKey: f.Key}); err != nil {
		t.Fatal(err)
	}
	url := w.srv.ClientURL()

	if out := natsCLI(t, url, "micro", "ls"); !strings.Contains(out, "wfp-engine") {
		t.Fatalf("nats micro ls does not show wfp-engine:\n%s", out)
	}

	out := natsCLI(t, url, "sub", "wfp.filter.>", "--stream", "WFP", "--all", "--count", "2")
	for _, want := range []string{
		"Wfp-Event: FilterAdded", "Wfp-Event: FilterDeleted", "Wfp-Filter-Key: " + f.Key, "Wfp-Filter-Key: " + g.Key,
		"Nats-Rollup: sub", "Nats-TTL: 86400",
		"Wfp-Callout-Key: " + co.Key, "Wfp-Layer: ALE_AUTH_CONNECT_V4", "Content-Type: application/msgpack",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("nats sub output lacks %q:\n%s", want, out)
		}
	}

	out = natsCLI(t, url, "sub", "wfp.filter.>", "--stream", "WFP", "--all", "--count", "2",
		"--translate", binary(t, "cmd/engine")+" decode")
	var decoded []events.Event
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "{") {
			var ev events.Event
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("translated line is not JSON: %v\n%s", err, line)
			}
			decoded = append(decoded, ev)
		}
	}
	if len(decoded) != 2 || decoded[0].Type != events.FilterAdded || decoded[1].Type != events.FilterDeleted ||
		decoded[0].Filter.Key != g.Key || decoded[0].Filter.ID != g.ID || decoded[1].Filter.Key != f.Key || decoded[1].Filter.ID != f.ID {
		t.Fatalf("translated events: %+v\n%s", decoded, out)
	}
}

// microStats runs `nats micro stats wfp-engine --json`, the real CLI, and
// returns the engine's stats by endpoint.
func microStats(t *testing.T, url string) map[string]*micro.EndpointStats {
	t.Helper()
	out := natsCLI(t, url, "micro", "stats", engine.ServiceName, "--json")
	var stats []*micro.Stats
	if err := json.Unmarshal([]byte(out[strings.Index(out, "["):]), &stats); err != nil || len(stats) != 1 {
		t.Fatalf("nats micro stats --json: %v\n%s", err, out)
	}
	byName := map[string]*micro.EndpointStats{}
	for _, ep := range stats[0].Endpoints {
		byName[ep.Name] = ep
	}
	return byName
}

// `nats micro stats wfp-engine` counts refusals as errors, whether the
// engine or an agent refused, and an add's processing time runs until it
// is answered: it includes the wait for the callout's agents.
func TestNatsMicroStatsCountsRefusalsAndAgentWaits(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t)
	url := w.srv.ClientURL()
	co, err := w.client.AddCallout(ctx, events.Callout{Name: "c"})
	if err != nil {
		t.Fatal(err)
	}
	entered, gate := make(chan struct{}, 1), make(chan struct{})
	agent, err := callout.Register(ctx, w.js, co.Key, callout.HandlerFunc(func(_ context.Context, nt callout.NotifyType, f *callout.Filter) error {
		switch {
		case nt != callout.AddFilter:
		case f.Name == "slow":
			entered <- struct{}{}
			<-gate
		case strings.Contains(f.Name, "ftp"):
			return errors.New("no ftp")
		}
		return nil
	}), callout.WithLogger(quietLog))
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	testkit.Eventually(t, "the agent to register", func() bool {
		info, err := w.client.GetCallout(ctx, co.Key)
		return err == nil && info.Registered
	})
	filter := func(name, callout string) events.Filter {
		return events.Filter{Name: name, Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionCalloutInspection, CalloutKey: callout}
	}
	if _, err := w.client.AddFilter(ctx, filter("allow ftp", co.Key)); !errors.Is(err, engine.ErrCalloutNotificationFailed) {
		t.Fatalf("add the agent refuses: %v", err)
	}
	if _, err := w.client.AddFilter(ctx, filter("orphan", "5b1f0c0e-8a43-4b8e-9d7c-3c2f2d1a0b01")); !errors.Is(err, engine.ErrCalloutNotFound) {
		t.Fatalf("add naming no callout: %v", err)
	}

	added := make(chan error, 1)
	go func() { _, err := w.client.AddFilter(ctx, filter("slow", co.Key)); added <- err }()
	<-entered
	held := time.Now()
	// While the agent holds the add, it is not counted yet.
	st := microStats(t, url)["filter-add"]
	if st.NumRequests != 2 || st.NumErrors != 2 || !strings.HasPrefix(st.LastError, "FWP_E_CALLOUT_NOT_FOUND:") {
		t.Fatalf("filter-add while an add waits for its agent: %+v; want 2 requests, 2 errors", st)
	}
	waited := time.Since(held)
	close(gate)
	if err := <-added; err != nil {
		t.Fatal(err)
	}
	st = microStats(t, url)["filter-add"]
	if st.NumRequests != 3 || st.NumErrors != 2 || st.ProcessingTime < waited {
		t.Fatalf("filter-add: %+v; want 3 requests, 2 errors, and at least the %v the agent held the add", st, waited)
	}
	// info and the stats table read the same service.
	if out := natsCLI(t, url, "micro", "info", engine.ServiceName); !strings.Contains(out, "wfp.api.callout.get") {
		t.Fatalf("nats micro info does not list callout.get:\n%s", out)
	}
	if out := natsCLI(t, url, "micro", "stats", engine.ServiceName); !strings.Contains(out, "filter-add") {
		t.Fatalf("nats micro stats:\n%s", out)
	}
}
