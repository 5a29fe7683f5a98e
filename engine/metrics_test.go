package engine

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
)

// The engine's collector exposes its counters, the API's requests and
// refusals and its histograms, each moving with what the engine does.
func TestCollector(t *testing.T) {
	w := newAgentWorld(t)
	before := testkit.Gather(t, w.e.Collector())
	w.agent(w.c1, "strict", "refuse")
	c := w.c
	ctx := ctx(t)

	ok, err := c.AddFilter(ctx, w.filter(w.c1, "fine"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddFilter(ctx, w.filter(w.c1, "refuse me")); !errors.Is(err, ErrCalloutNotificationFailed) {
		t.Fatalf("refused add: %v", err)
	}
	if err := c.DeleteFilter(ctx, FilterRef{FilterID: ok.ID}); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteFilter(ctx, FilterRef{FilterID: ok.ID}); !errors.Is(err, ErrFilterNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	m := testkit.Gather(t, w.e.Collector())

	for _, want := range []struct {
		name   string
		labels []string
		value  float64
	}{
		{"wfp_engine_requests_total", []string{"endpoint", "filter-add"}, 2},
		{"wfp_engine_requests_total", []string{"endpoint", "filter-delete"}, 2},
		{"wfp_engine_request_errors_total", []string{"endpoint", "filter-add", "code", string(CodeCalloutNotificationFailed)}, 1},
		{"wfp_engine_request_errors_total", []string{"endpoint", "filter-delete", "code", string(CodeFilterNotFound)}, 1},
		{"wfp_engine_request_duration_seconds", []string{"endpoint", "filter-add"}, 2},
		// Two adds, the take-back of the refused one and the delete; the
		// world's two callouts were written before.
		{"wfp_engine_events_written_total", nil, 6},
		{"wfp_engine_write_duration_seconds", nil, before.Value("wfp_engine_write_duration_seconds") + 3},
		{"wfp_engine_notify_wait_seconds", []string{"outcome", "accepted"}, 1},
		{"wfp_engine_notify_wait_seconds", []string{"outcome", "refused"}, 1},
		{"wfp_engine_adds_taken_back_total", []string{"reason", "refused"}, 1},
		{"wfp_engine_adds_taken_back_total", []string{"reason", "unanswered"}, 0},
		{"wfp_engine_agents", []string{"callout", w.c1}, 1},
		{"wfp_engine_log_sequence", nil, float64(w.e.Seq())},
		{"wfp_engine_stream_last_sequence", nil, float64(w.e.Seq())},
		{"wfp_engine_filters", nil, 0},
		{"wfp_engine_callouts", nil, 2},
		{"wfp_engine_write_fence_retries_total", nil, 0},
	} {
		if got := m.Value(want.name, want.labels...); got != want.value {
			t.Errorf("%s%v = %v, want %v", want.name, want.labels, got, want.value)
		}
	}
	if got := m.Value("wfp_engine_agents", "callout", w.c2); got != -1 {
		t.Errorf("agents of a callout with none: %v", got)
	}
}

// A write refused by the fence and tried again counts as a fence retry:
// two engines writing at once fence each other now and then.
func TestCollectorCountsFenceRetries(t *testing.T) {
	srv := testkit.Server(t)
	engines := []*Engine{startEngine(t, testkit.Conn(t, srv)), startEngine(t, testkit.Conn(t, srv))}
	fenced := func() uint64 { return engines[0].Stats().Fenced + engines[1].Stats().Fenced }
	for round := 0; fenced() == 0; round++ {
		if round == 1000 {
			t.Fatal("1000 rounds of concurrent writes by two engines and no fence retry")
		}
		var wg sync.WaitGroup
		for _, e := range engines {
			wg.Go(func() {
				if _, _, err := e.submit(context.Background(), addCallout{events.Callout{Name: "c"}}); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	for i, e := range engines {
		m := testkit.Gather(t, e.Collector())
		st := e.Stats()
		if got := m.Value("wfp_engine_write_fence_retries_total"); got != float64(st.Fenced) {
			t.Errorf("engine %d: fence retries %v, Stats().Fenced %d", i, got, st.Fenced)
		}
		if got := m.Value("wfp_engine_events_written_total"); got != float64(st.Written) || got == 0 {
			t.Errorf("engine %d: events written %v, Stats().Written %d", i, got, st.Written)
		}
	}
	if !strings.HasPrefix(testkit.Gather(t, engines[0].Collector())["wfp_engine_write_fence_retries_total"].GetHelp(), "Writes refused by the fence") {
		t.Fatal("fence retries without their help text")
	}
}
