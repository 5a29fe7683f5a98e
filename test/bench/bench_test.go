package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary serve as the memory child, as the bench
// binary does.
func TestMain(m *testing.M) {
	if childMain() {
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// tinyConfig runs every scenario at a size that only checks the harness
// works; its numbers mean nothing.
func tinyConfig(t *testing.T) Config {
	return Config{
		Mode: "tiny", N: 2000, Churn: 4,
		Callers: []int{1, 16, 128}, AddWarmup: 100 * time.Millisecond, AddDuration: 300 * time.Millisecond,
		LatencyOps: 200, LatencyWarmup: 20,
		NotifyRate: 1000, NotifyCallers: 8, NotifyWarmup: 200 * time.Millisecond, NotifyDuration: 600 * time.Millisecond,
		Reps: 2, ChurnReps: 2,
		BulkN: 3000, FleetCallouts: 4, FleetFilters: 100, FleetAgents: 3, FleetRest: time.Second,
		ClassifyFilters: 320, ClassifyCallers: 4, ClassifyDuration: 200 * time.Millisecond,
		Exe: os.Args[0],
		Log: t.Output(),
	}
}

// Every figure the issue asks for, and which have a target.
var wantFigures = map[string]bool{
	"add_throughput_c1":      false,
	"add_throughput_c16":     false,
	"add_throughput_c128":    true,
	"add_vs_kv_c1":           false,
	"add_vs_kv_c128":         false,
	"replay_vs_kv":           true,
	"add_latency_p50":        true,
	"add_latency_p99":        false,
	"notify_latency_p50":     false,
	"notify_latency_p99":     true,
	"notify_stored_p50":      false,
	"notify_stored_p99":      true,
	"notify_add_latency_p50": false,
	"notify_add_latency_p99": false,
	"replay_rate":            true,
	"replay_churn_time":      true,
	"replay_churn_raw_time":  false,
	"cold_start_churn_time":  false,
	"bulk_load":              true,
	"fleet_synced":           true,
	"fleet_delivery_rate":    true,
	"fleet_rss_per_agent":    true,
	"fleet_rss_bare":         false,
	"cold_start_rate":        true,
	"memory_engine":          true,
	"memory_agent":           true,
	"classify_inprocess":     false,
	"classify_api":           false,
	"classify_api_callout":   false,
	"sync_always_c1":         false,
	"sync_always_c16":        false,
	"sync_always_c128":       false,
	"list_barrier_p50":       false,
	"list_barrier_p99":       false,
}

// mayBeZero are the latencies that clamp a notify arriving before the
// response (or PubAck) to 0, so 0 is an honest value for them.
var mayBeZero = map[string]bool{"notify_latency_p50": true, "notify_latency_p99": true}

// TestHarnessTiny runs the whole harness small and checks the report is
// complete and consistent. It never checks a time: the machine may be busy.
func TestHarnessTiny(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Second)
	defer cancel()
	r, err := Run(ctx, tinyConfig(t))
	if err != nil {
		t.Fatal(err)
	}

	seen := map[string]bool{}
	for _, f := range r.Figures {
		hasTarget, ok := wantFigures[f.ID]
		if !ok {
			t.Errorf("unexpected figure %q", f.ID)
			continue
		}
		if seen[f.ID] {
			t.Errorf("figure %q reported twice", f.ID)
		}
		seen[f.ID] = true
		if f.Name == "" || f.Unit == "" || f.BaselineName == "" || f.Scenario == "" {
			t.Errorf("%s: incomplete: %+v", f.ID, f)
		}
		for what, v := range map[string]float64{"ours": f.Ours, "baseline": f.Baseline, "ratio": f.Ratio} {
			if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || (v == 0 && !mayBeZero[f.ID]) {
				t.Errorf("%s: %s = %v, want a positive number", f.ID, what, v)
			}
		}
		if f.Baseline > 0 {
			if want := f.Ours / f.Baseline; math.Abs(f.Ratio-want) > 1e-9*math.Max(1, want) {
				t.Errorf("%s: ratio %v, want ours/baseline = %v", f.ID, f.Ratio, want)
			}
		} else if f.Ratio != 0 {
			t.Errorf("%s: ratio %v with a zero baseline, want 0", f.ID, f.Ratio)
		}
		if hasTarget != (f.Target != nil) || hasTarget != (f.Met != nil) {
			t.Errorf("%s: target %+v met %v, want a target: %v", f.ID, f.Target, f.Met, hasTarget)
		}
		if f.Target != nil {
			v := f.Ratio
			if f.Target.On == "ours" {
				v = f.Ours
			}
			met := v <= f.Target.Value
			if f.Target.Op == ">=" {
				met = v >= f.Target.Value
			}
			if met != *f.Met {
				t.Errorf("%s: met = %v, but %v %s %v is %v", f.ID, *f.Met, v, f.Target.Op, f.Target.Value, met)
			}
		}
	}
	for id := range wantFigures {
		if !seen[id] {
			t.Errorf("figure %q missing", id)
		}
	}
	// Percentiles are ordered.
	for _, pair := range [][2]string{{"add_latency_p50", "add_latency_p99"}, {"notify_latency_p50", "notify_latency_p99"},
		{"notify_stored_p50", "notify_stored_p99"}, {"notify_add_latency_p50", "notify_add_latency_p99"}} {
		lo, _ := r.Figure(pair[0])
		hi, _ := r.Figure(pair[1])
		if lo.Ours > hi.Ours || lo.Baseline > hi.Baseline {
			t.Errorf("%s (%v, %v) above %s (%v, %v)", pair[0], lo.Ours, lo.Baseline, pair[1], hi.Ours, hi.Baseline)
		}
	}
	if r.AddEvent.Payload <= 0 || r.AddEvent.Header <= 0 || r.AddEvent.Subject <= 0 {
		t.Errorf("add event size not measured: %+v", r.AddEvent)
	}

	// The table shows every figure, and the JSON holds the same report.
	var table bytes.Buffer
	r.WriteTable(&table)
	for _, f := range r.Figures {
		if !strings.Contains(table.String(), f.Name) {
			t.Errorf("table lacks %q", f.Name)
		}
	}
	path := filepath.Join(t.TempDir(), "out.json")
	if err := r.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Figures) != len(r.Figures) || back.Config.N != 2000 {
		t.Errorf("JSON round trip: %d figures, N=%d", len(back.Figures), back.Config.N)
	}
	t.Logf("\n%s", table.String())
}

func TestPercentile(t *testing.T) {
	var s sample
	for i := 100; i >= 1; i-- {
		s.add(time.Duration(i))
	}
	for p, want := range map[float64]time.Duration{50: 50, 99: 99, 100: 100, 1: 1, 0.1: 1} {
		if got := s.percentile(p); got != want {
			t.Errorf("p%v = %v, want %v", p, got, want)
		}
	}
	var empty sample
	if empty.percentile(50) != 0 {
		t.Error("empty sample")
	}
	if m := median([]float64{3, 1, 2, 10}); m != 2.5 {
		t.Errorf("median = %v", m)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{QuickConfig(), FullConfig()} {
		if err := c.validate(); err != nil {
			t.Errorf("%s: %v", c.Mode, err)
		}
	}
	c := QuickConfig()
	c.Only = []string{"nope"}
	if c.validate() == nil {
		t.Error("unknown scenario accepted")
	}
}
