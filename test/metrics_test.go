package test

import (
	"errors"
	"regexp"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/wfpnats/wfp/engine"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
)

// metricsURL waits for a process's log to say where it serves metrics.
func metricsURL(t *testing.T, log *testkit.SyncBuffer) string {
	t.Helper()
	re := regexp.MustCompile(`msg="serving metrics" url=(\S+)`)
	var url string
	testkit.Eventually(t, "the metrics URL in the log", func() bool {
		if m := re.FindStringSubmatch(log.String()); m != nil {
			url = m[1]
		}
		return url != ""
	})
	return url
}

// metric is one expected sample: the family, its labels, and how far it
// moved (delta) or where it stands (value, when absolute).
type metric struct {
	name     string
	labels   []string
	want     float64
	absolute bool
}

// checkMetrics compares two scrapes of one endpoint with what should have
// moved between them.
func checkMetrics(t *testing.T, who string, before, after testkit.Metrics, want []metric) {
	t.Helper()
	for _, m := range want {
		got := after.Value(m.name, m.labels...)
		if got < 0 {
			t.Errorf("%s: no %s%v in the scrape", who, m.name, m.labels)
			continue
		}
		if !m.absolute {
			got -= max(before.Value(m.name, m.labels...), 0)
		}
		if got != m.want {
			kind := "moved by"
			if m.absolute {
				kind = "stands at"
			}
			t.Errorf("%s: %s%v %s %v, want %v", who, m.name, m.labels, kind, got, m.want)
		}
	}
}

// The engine's and the agents' metrics endpoints, scraped and parsed as
// Prometheus does, while filters are added (one accepted, one refused by
// an agent, one refused by the engine), deleted (once, then again) and a
// replay agent rebuilds the callout's filters: every counter and
// histogram named moves as it should.
func TestMetricsEndpoints(t *testing.T) {
	ctx := ctxT(t)
	p := runEngineWith(t, nil, "--listen", "127.0.0.1:-1", "--data", t.TempDir(), "--metrics-addr", "127.0.0.1:0")
	engineMetrics := metricsURL(t, p.log)
	nc, err := nats.Connect(p.url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	client := engine.NewClient(nc)
	co, err := client.AddCallout(ctx, events.Callout{Name: "metered"})
	if err != nil {
		t.Fatal(err)
	}
	live := startAgentProc(t, "--callout", co.Key, "--server", p.url, "--agent-id", "strict", "--reject-adds", "ftp",
		"--metrics-addr", "127.0.0.1:0")
	live.waitLine(t, `"notify":"synced"`)
	liveMetrics := metricsURL(t, live.errOut)
	testkit.Eventually(t, "the engine to count the agent", func() bool {
		return testkit.Scrape(t, engineMetrics).Value("wfp_engine_agents", "callout", co.Key) == 1
	})

	e0, a0 := testkit.Scrape(t, engineMetrics), testkit.Scrape(t, liveMetrics)
	filter := func(name, callout string) events.Filter {
		return events.Filter{Name: name, Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionCalloutInspection, CalloutKey: callout}
	}
	telnet, err := client.AddFilter(ctx, filter("inspect telnet", co.Key))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.AddFilter(ctx, filter("allow ftp", co.Key)); !errors.Is(err, engine.ErrCalloutNotificationFailed) {
		t.Fatalf("add the agent refuses: %v", err)
	}
	if _, err := client.AddFilter(ctx, filter("orphan", "5b1f0c0e-8a43-4b8e-9d7c-3c2f2d1a0b01")); !errors.Is(err, engine.ErrCalloutNotFound) {
		t.Fatalf("add naming no callout: %v", err)
	}
	for i, want := range []error{nil, engine.ErrFilterNotFound} {
		if err := client.DeleteFilter(ctx, engine.FilterRef{FilterID: telnet.ID}); !errors.Is(err, want) {
			t.Fatalf("delete %d: %v, want %v", i, err, want)
		}
	}
	rdp, err := client.AddFilter(ctx, filter("inspect rdp", co.Key))
	if err != nil {
		t.Fatal(err)
	}
	live.waitLine(t, rdp.Key)
	last := float64(rdp.ID)

	// The agent counts a notification just after its handler returned
	// (and the engine may have answered the add by then).
	var a1 testkit.Metrics
	testkit.Eventually(t, "the live agent to count rdp's add", func() bool {
		a1 = testkit.Scrape(t, liveMetrics)
		return a1.Value("wfp_agent_filters_held") == 1 && a1.Value("wfp_agent_position") == float64(rdp.ID)
	})
	e1 := testkit.Scrape(t, engineMetrics)
	checkMetrics(t, "engine", e0, e1, []metric{
		{"wfp_engine_requests_total", []string{"endpoint", "filter-add"}, 4, false},
		{"wfp_engine_requests_total", []string{"endpoint", "filter-delete"}, 2, false},
		{"wfp_engine_request_errors_total", []string{"endpoint", "filter-add", "code", "FWP_E_CALLOUT_NOTIFICATION_FAILED"}, 1, false},
		{"wfp_engine_request_errors_total", []string{"endpoint", "filter-add", "code", "FWP_E_CALLOUT_NOT_FOUND"}, 1, false},
		{"wfp_engine_request_errors_total", []string{"endpoint", "filter-delete", "code", "FWP_E_FILTER_NOT_FOUND"}, 1, false},
		{"wfp_engine_request_duration_seconds", []string{"endpoint", "filter-add"}, 4, false},
		// telnet's add and delete, ftp's add and its take-back, rdp's add.
		{"wfp_engine_events_written_total", nil, 5, false},
		// Writes answered by the writer: the three stored adds and the delete.
		{"wfp_engine_write_duration_seconds", nil, 4, false},
		{"wfp_engine_write_fence_retries_total", nil, 0, false},
		{"wfp_engine_notify_wait_seconds", []string{"outcome", "accepted"}, 2, false},
		{"wfp_engine_notify_wait_seconds", []string{"outcome", "refused"}, 1, false},
		{"wfp_engine_adds_taken_back_total", []string{"reason", "refused"}, 1, false},
		{"wfp_engine_log_sequence", nil, last, true},
		{"wfp_engine_stream_last_sequence", nil, last, true},
		{"wfp_engine_filters", nil, 1, true},
		{"wfp_engine_callouts", nil, 1, true},
	})
	checkMetrics(t, "live agent", a0, a1, []metric{
		{"wfp_agent_notifications_total", []string{"type", "add", "callout", co.Key, "agent_id", "strict"}, 3, false},
		{"wfp_agent_notifications_total", []string{"type", "delete"}, 2, false}, // telnet's, and ftp's take-back
		{"wfp_agent_adds_refused_total", nil, 1, false},
		{"wfp_agent_handler_errors_total", nil, 1, false},
		{"wfp_agent_filters_held", nil, 1, true},
		{"wfp_agent_position", nil, last, true},
		{"wfp_agent_lag", nil, 0, true},
		{"wfp_agent_synced", nil, 1, true},
	})

	// A replay agent: the snapshot holds rdp and the tombstones of telnet
	// and ftp.
	replay := startAgentProc(t, "--callout", co.Key, "--server", p.url, "--agent-id", "rebuilt", "--mode", "replay",
		"--metrics-addr", "127.0.0.1:0")
	replay.waitLine(t, `"notify":"synced"`)
	r := testkit.Scrape(t, metricsURL(t, replay.errOut))
	checkMetrics(t, "replay agent", nil, r, []metric{
		{"wfp_agent_replay_total", []string{"agent_id", "rebuilt"}, 3, true},
		{"wfp_agent_replay_done", nil, 3, true},
		{"wfp_agent_tombstones_total", nil, 2, true},
		{"wfp_agent_filters_held", nil, 1, true},
		{"wfp_agent_notifications_total", []string{"type", "add"}, 1, true},
		{"wfp_agent_synced", nil, 1, true},
		{"wfp_agent_lag", nil, 0, true},
	})
	testkit.Eventually(t, "the engine to count both agents", func() bool {
		return testkit.Scrape(t, engineMetrics).Value("wfp_engine_agents", "callout", co.Key) == 2
	})
}
