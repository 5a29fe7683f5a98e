package test

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/wfpnats/wfp/engine"
	"github.com/wfpnats/wfp/events"
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
