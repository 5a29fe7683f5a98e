package callout_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/internal/testkit"
)

// An agent's collector shows its notifications by type, refusals,
// handler errors, tombstones, the replay's progress, its position and
// its lag, each moving with what the agent does; every metric names the
// callout and the agent id.
func TestCollector(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	kept := e.add(ck, "kept")
	gone := e.add(ck, "gone")
	e.del(gone) // a tombstone in the snapshot

	gate := make(chan struct{})
	rec := newRecorder()
	rec.before = func(_ context.Context, nt callout.NotifyType, f *callout.Filter) error {
		switch {
		case nt == callout.AddFilter && strings.HasPrefix(f.Name, "refuse"):
			return errors.New("refused")
		case nt == callout.AddFilter && f.Name == "slow":
			<-gate
		}
		return nil
	}
	a := e.register(ck, rec, callout.WithMode(callout.Replay), callout.WithAgentID("metered"))
	rec.expect(t, addNote(kept, true))
	waitClosed(t, a.Synced(), "Synced")
	m := testkit.Gather(t, a.Collector())
	for _, want := range []struct {
		name   string
		labels []string
		value  float64
	}{
		{"wfp_agent_replay_total", nil, 2},
		{"wfp_agent_replay_done", nil, 2},
		{"wfp_agent_synced", nil, 1},
		{"wfp_agent_tombstones_total", nil, 1},
		{"wfp_agent_filters_held", nil, 1},
		{"wfp_agent_position", nil, float64(gone.ID + 1)}, // the tombstone's sequence
		{"wfp_agent_lag", nil, 0},
		{"wfp_agent_notifications_total", []string{"type", "add", "callout", ck, "agent_id", "metered"}, 1},
	} {
		if got := m.Value(want.name, want.labels...); got != want.value {
			t.Errorf("after the replay: %s%v = %v, want %v", want.name, want.labels, got, want.value)
		}
	}

	// Live: a slow add holds the agent while two more events arrive.
	slow := e.add(ck, "slow")
	refused := e.add(ck, "refuse me")
	e.del(kept)
	testkit.Eventually(t, "the lag to show the events behind the slow add", func() bool {
		return testkit.Gather(t, a.Collector()).Value("wfp_agent_lag") == 3
	})
	close(gate)
	rec.expect(t, addNote(slow, false), delNote(kept, false))
	waitStats(t, a, func(s callout.Stats) bool { return s.Deletes == 1 })
	m = testkit.Gather(t, a.Collector())
	for _, want := range []struct {
		name   string
		labels []string
		value  float64
	}{
		{"wfp_agent_notifications_total", []string{"type", "add"}, 3},
		{"wfp_agent_notifications_total", []string{"type", "delete"}, 1},
		{"wfp_agent_notifications_total", []string{"type", "add_post_commit"}, 0},
		{"wfp_agent_adds_refused_total", nil, 1},
		{"wfp_agent_handler_errors_total", nil, 1},
		{"wfp_agent_filters_held", nil, 1},
		{"wfp_agent_lag", nil, 0},
		{"wfp_agent_position", nil, float64(refused.ID + 1)},
	} {
		if got := m.Value(want.name, want.labels...); got != want.value {
			t.Errorf("live: %s%v = %v, want %v", want.name, want.labels, got, want.value)
		}
	}
}
