package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/wfpnats/wfp/engine"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
)

// A second engine on a data directory in use is refused, with an error
// naming the directory and the engine that holds it.
func TestSecondEngineOnTheSameDataIsRefused(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs testkit.SyncBuffer
	first := make(chan error, 1)
	go func() {
		first <- run(ctx, []string{"serve", "--data", dir, "--listen", "127.0.0.1:0"}, nil, nil, &logs)
	}()
	testkit.Eventually(t, "the first engine to be ready", func() bool { return strings.Contains(logs.String(), "engine ready") })

	err := run(context.Background(), []string{"serve", "--data", dir, "--listen", "127.0.0.1:0"}, nil, nil, &testkit.SyncBuffer{})
	if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("second engine on %s: %v; want a refusal naming the directory and the first engine", dir, err)
	}
	cancel()
	if err := <-first; err != nil {
		t.Fatalf("first engine: %v", err)
	}
}

func TestSyncFlag(t *testing.T) {
	for _, bad := range []string{"never", "-1s", "0s"} {
		err := run(context.Background(), []string{"serve", "--data", t.TempDir(), "--sync", bad}, nil, nil, &testkit.SyncBuffer{})
		if err == nil || !strings.Contains(err.Error(), "sync") {
			t.Errorf("--sync %s: %v", bad, err)
		}
	}
}

// Listing 20,000 filters through the CLI: far more than one reply of the
// server's max payload holds, so it reads page after page.
func TestListingTwentyThousandFilters(t *testing.T) {
	c := newCLI(t)
	c.ok("callout", "add", "--key", calloutKey, "--name", "inspector")
	nc := testkit.Dial(t, c.url)
	client := engine.NewClient(nc)
	const n = 20_000
	for done := 0; done < n; done += engine.MaxTxOps {
		ops := make([]engine.TxOp, engine.MaxTxOps)
		for i := range ops {
			ops[i] = engine.TxOp{Op: engine.OpFilterAdd, Filter: &events.Filter{Name: fmt.Sprintf("filter %d", done+i),
				Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionCalloutInspection, CalloutKey: calloutKey,
				Conditions: []events.Condition{{Field: "IP_REMOTE_PORT", Value: fmt.Sprint(1 + (done+i)%65535)}}}}
		}
		if _, err := client.ApplyTx(context.Background(), ops); err != nil {
			t.Fatal(err)
		}
	}
	out := c.ok("filter", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != n+2 || !strings.HasPrefix(lines[len(lines)-1], fmt.Sprintf("(%d filters as of log sequence %d)", n, n+1)) {
		t.Fatalf("filter list printed %d lines, ending %q; want %d filters", len(lines), lines[len(lines)-1], n)
	}
	if out := c.ok("filter", "list", "--callout", "{"+strings.ToUpper(calloutKey)+"}", "--json"); strings.Count(out, `"filterKey"`) != n {
		t.Fatalf("filter list --callout {UPPER} --json: %d filters", strings.Count(out, `"filterKey"`))
	}
}

// serveFor runs serve with args until the test ends, and returns its log
// once it is ready.
func serveFor(t *testing.T, args ...string) *testkit.SyncBuffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var logs testkit.SyncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"serve", "--data", t.TempDir(), "--listen", "127.0.0.1:0"}, args...), nil, nil, &logs)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve %v: %v", args, err)
		}
	})
	testkit.Eventually(t, "the engine to be ready", func() bool { return strings.Contains(logs.String(), "engine ready") })
	return &logs
}

// The embedded server's notices (its startup banner) are logged only
// with --server-log; --log-format json makes every line a JSON object.
func TestServeLogs(t *testing.T) {
	logs := serveFor(t, "--log-format", "json")
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec struct{ Level, Msg string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Level == "" || rec.Msg == "" {
			t.Fatalf("--log-format json wrote %q (%v)", line, err)
		}
	}
	if strings.Contains(logs.String(), "Starting nats-server") {
		t.Fatalf("the server's banner without --server-log:\n%s", logs.String())
	}
	logs = serveFor(t, "--server-log")
	if !regexp.MustCompile(`level=INFO msg="Starting nats-server" component=nats-server`).MatchString(logs.String()) {
		t.Fatalf("no server banner with --server-log:\n%s", logs.String())
	}
}

// --metrics-addr serves the engine's metrics, and the Go runtime's, in
// the Prometheus text format.
func TestServeMetrics(t *testing.T) {
	logs := serveFor(t, "--metrics-addr", "127.0.0.1:0")
	var url string
	testkit.Eventually(t, "the metrics URL in the log", func() bool {
		m := regexp.MustCompile(`msg="serving metrics" url=(\S+)`).FindStringSubmatch(logs.String())
		if m != nil {
			url = m[1]
		}
		return m != nil
	})
	m := testkit.Scrape(t, url)
	for _, name := range []string{"wfp_engine_log_sequence", "wfp_engine_events_written_total", "go_goroutines"} {
		if m.Value(name) < 0 {
			t.Errorf("no %s in the scrape", name)
		}
	}
}
