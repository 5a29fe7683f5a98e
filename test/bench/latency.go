package main

import (
	"context"
	"fmt"
	"time"
)

// addLatency is scenario 2: p50 and p99 of one caller's adds, one at a
// time, against raw synchronous publish (PublishMsg, waiting for the ack)
// of add-sized messages.
func (b *bench) addLatency(ctx context.Context) error {
	b.logf("latency: one caller's adds vs raw sync publish")
	restore := label(ctx, "latency", "ours")
	w, err := b.startEngine(ctx, "BENCH_LAT", "blat")
	restore()
	if err != nil {
		return err
	}
	defer w.close(b)
	restore = label(ctx, "latency", "raw")
	pub, err := b.jsConnect("raw-sync")
	restore()
	if err != nil {
		return err
	}
	_, rawCfg, err := b.freshStream(ctx, pub.js, "BENCH_RAW_LAT", "rawlat")
	if err != nil {
		return err
	}
	defer b.dropStream(pub.js, rawCfg.Name)

	var raw, ours sample
	var cpuRaw, cpuOurs time.Duration
	timeRaw := func(s *sample) error {
		m := rawMsg(b.addMsg, rawCfg.Prefix, w.callout)
		t0 := time.Now()
		if _, err := pub.js.PublishMsg(ctx, m); err != nil {
			return fmt.Errorf("raw sync publish: %w", err)
		}
		if s != nil {
			s.add(time.Since(t0))
		}
		return nil
	}
	i := 0
	timeOurs := func(s *sample) error {
		i++
		f := benchFilter(i, w.callout)
		t0 := time.Now()
		if _, err := w.client.AddFilter(ctx, f); err != nil {
			return fmt.Errorf("add: %w", err)
		}
		if s != nil {
			s.add(time.Since(t0))
		}
		return nil
	}
	for range b.cfg.LatencyWarmup {
		if err := timeRaw(nil); err != nil {
			return err
		}
		if err := timeOurs(nil); err != nil {
			return err
		}
	}
	// Alternate in blocks, so both see the same background noise.
	const block = 100
	for done := 0; done < b.cfg.LatencyOps; done += block {
		n := min(block, b.cfg.LatencyOps-done)
		t := cpuTime()
		restore := label(ctx, "latency", "raw")
		for range n {
			if err := timeRaw(&raw); err != nil {
				return err
			}
		}
		cpuRaw += cpuTime() - t
		t = cpuTime()
		restore = label(ctx, "latency", "ours")
		for range n {
			if err := timeOurs(&ours); err != nil {
				return err
			}
		}
		restore()
		cpuOurs += cpuTime() - t
	}
	note := fmt.Sprintf("%d adds, one at a time; process CPU per add %v, per raw publish %v",
		ours.len(), (cpuOurs / time.Duration(ours.len())).Round(100*time.Nanosecond), (cpuRaw / time.Duration(raw.len())).Round(100*time.Nanosecond))
	for _, p := range []struct {
		id   string
		pct  float64
		tgt  *Target
		name string
	}{
		{"add_latency_p50", 50, ratioAtMost(2.5), "add latency p50, 1 caller"},
		{"add_latency_p99", 99, nil, "add latency p99, 1 caller"},
	} {
		o, r := ours.percentile(p.pct), raw.percentile(p.pct)
		b.logf("latency: p%.0f ours %v raw %v", p.pct, o, r)
		b.report.add(newFigure("latency", p.id, p.name, unitMicros, micros(o), micros(r),
			fmt.Sprintf("raw sync publish p%.0f", p.pct), p.tgt, note))
		note = "" // said once
	}
	return nil
}
