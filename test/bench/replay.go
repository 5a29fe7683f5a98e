package main

import (
	"context"
	"fmt"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/jetstream"
)

// replayTimeout bounds one replay or cold start.
const replayTimeout = 10 * time.Minute

// replayGroup runs the scenarios that share one large log: replay (4),
// cold start (5), memory (6), then churn (4, second half), which appends
// 4N added-and-deleted filters to the same log.
func (b *bench) replayGroup(ctx context.Context) error {
	n := b.cfg.N
	admin, err := b.jsConnect("replay-admin")
	if err != nil {
		return err
	}
	if err := b.checkFidelity(ctx); err != nil {
		return err
	}
	_, cfg, err := b.freshStream(ctx, admin.js, "BENCH_REPLAY", "brep")
	if err != nil {
		return err
	}
	defer b.dropStream(admin.js, cfg.Name)
	calloutKey := newKey()

	t0 := time.Now()
	p, err := b.newPopulator(ctx, cfg)
	if err != nil {
		return err
	}
	if err := p.addCallout(calloutKey); err != nil {
		return err
	}
	if err := p.addFilters(calloutKey, 0, n); err != nil {
		return err
	}
	written, err := p.finish(ctx)
	if err != nil {
		return err
	}
	b.logf("replay: wrote %d events straight to the stream in %v (%.0f/s)", written, time.Since(t0).Round(time.Millisecond), rate(written, time.Since(t0)))

	spec := func(kind string, want int) childSpec {
		return childSpec{Kind: kind, Stream: cfg.Name, Prefix: cfg.Prefix, Callout: calloutKey, N: n, Want: want}
	}

	var noChurn, cold runs
	if b.cfg.wants("replay") || b.cfg.wants("churn") {
		for range b.cfg.Reps {
			if err := noChurn.measure(ctx, b, spec(kindReplayRaw, n), spec(kindReplayAgent, -1), n); err != nil {
				return err
			}
			b.logf("replay: %d filters: agent %.3fs, raw last-per-subject %.3fs", n, noChurn.ours[len(noChurn.ours)-1], noChurn.raw[len(noChurn.raw)-1])
		}
		if b.cfg.wants("replay") {
			o, r := median(noChurn.ours), median(noChurn.raw)
			b.report.add(newFigure("replay", "replay_rate", fmt.Sprintf("replay to synced, N=%s", count(n)), unitPerSec,
				float64(n)/o, float64(n)/r, "raw ordered consumer, last per subject", ratioAtLeast(0.8),
				noChurn.note("agent", "raw consumer", "filter")))
			if err := b.kvReplay(ctx, calloutKey, n, o); err != nil {
				return err
			}
		}
	}

	last := n + 1
	if b.cfg.wants("coldstart") || b.cfg.wants("churn") {
		for range b.cfg.Reps {
			if err := cold.measure(ctx, b, spec(kindColdRaw, last), spec(kindColdEngine, -1), last); err != nil {
				return err
			}
			b.logf("coldstart: %d events: engine %.3fs, raw read %.3fs", last, cold.ours[len(cold.ours)-1], cold.raw[len(cold.raw)-1])
		}
		if b.cfg.wants("coldstart") {
			o, r := median(cold.ours), median(cold.raw)
			b.report.add(newFigure("coldstart", "cold_start_rate", fmt.Sprintf("engine cold start, %s events", count(last)), unitPerSec,
				float64(last)/o, float64(last)/r, "raw ordered read of the stream", ratioAtLeast(0.7),
				cold.note("engine.Start", "raw consumer", "event")))
		}
	}

	if b.cfg.wants("memory") {
		if err := b.memory(ctx, cfg, calloutKey, n); err != nil {
			return err
		}
	}

	if !b.cfg.wants("churn") || b.cfg.Churn == 0 {
		return nil
	}
	// The churn: 4N filters added and deleted as the engine deletes them
	// (each delete rolls up its add and expires after the horizon), under
	// a horizon shortened for the purpose, then the readers again once
	// every delete has expired, the horizon set back to a day.
	churnCfg := cfg
	churnCfg.Horizon = churnHorizon
	if _, err := jetstream.EnsureStream(ctx, admin.js, churnCfg); err != nil {
		return err
	}
	t0 = time.Now()
	if p, err = b.newPopulator(ctx, churnCfg); err != nil {
		return err
	}
	if err := p.churn(calloutKey, n, b.cfg.Churn*n); err != nil {
		return err
	}
	if written, err = p.finish(ctx); err != nil {
		return err
	}
	b.logf("churn: wrote %d more events in %v (%.0f/s)", written, time.Since(t0).Round(time.Millisecond), rate(written, time.Since(t0)))
	if err := b.waitMsgs(ctx, admin.js, cfg.Name, uint64(n+1)); err != nil {
		return err
	}
	b.logf("churn: every delete expired %v after the first was written (horizon %v)", time.Since(t0).Round(time.Millisecond), churnHorizon)
	if _, err := jetstream.EnsureStream(ctx, admin.js, cfg); err != nil {
		return err
	}
	var churn, coldChurn runs
	var tombstones uint64
	for range b.cfg.ChurnReps {
		raw, ours := spec(kindReplayRaw, n), spec(kindReplayAgent, -1)
		raw.Name, ours.Name = "churn-raw", "churn-agent"
		if err := churn.measure(ctx, b, raw, ours, n); err != nil {
			return err
		}
		tombstones = churn.last.Tombstones
		b.logf("churn: agent %.3fs (%d tombstones), raw last-per-subject %.3fs", churn.ours[len(churn.ours)-1], tombstones, churn.raw[len(churn.raw)-1])
		raw, ours = spec(kindColdRaw, last), spec(kindColdEngine, -1)
		raw.Name, ours.Name = "churn-cold-raw", "churn-cold-engine"
		if err := coldChurn.measure(ctx, b, raw, ours, last); err != nil {
			return err
		}
		b.logf("churn: engine cold start %.3fs, raw read %.3fs", coldChurn.ours[len(coldChurn.ours)-1], coldChurn.raw[len(coldChurn.raw)-1])
	}
	b.report.add(newFigure("churn", "replay_churn_time", fmt.Sprintf("replay time after %dN churn, past the horizon", b.cfg.Churn), unitSecs,
		median(churn.ours), median(noChurn.ours), "our replay without churn", ratioAtMost(1.3),
		fmt.Sprintf("%d live filters, %d added, deleted (rolled up) and expired; the agent read %d tombstones; %s",
			n, b.cfg.Churn*n, tombstones, churn.note("agent", "raw consumer", "filter"))))
	b.report.add(newFigure("churn", "replay_churn_raw_time", fmt.Sprintf("raw last-per-subject read after %dN churn", b.cfg.Churn), unitSecs,
		median(churn.raw), median(noChurn.raw), "raw read without churn", nil,
		"what JetStream itself pays for the churn once it is compacted"))
	b.report.add(newFigure("churn", "cold_start_churn_time", fmt.Sprintf("engine cold start after %dN churn, past the horizon", b.cfg.Churn), unitSecs,
		median(coldChurn.ours), median(cold.ours), "engine cold start without churn", nil,
		coldChurn.note("engine.Start", "raw consumer", "event")))
	return nil
}

// churnHorizon is the horizon of the churn log: short, so the harness can
// wait past it.
const churnHorizon = 2 * time.Second

// waitMsgs waits until stream holds want messages (deletes expiring).
func (b *bench) waitMsgs(ctx context.Context, js natsjs.JetStream, stream string, want uint64) error {
	ctx, cancel := context.WithTimeout(ctx, replayTimeout)
	defer cancel()
	for {
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return err
		}
		if got := s.CachedInfo().State.Msgs; got <= want {
			if got < want {
				return fmt.Errorf("stream %s holds %d messages, want %d: compaction removed live filters", stream, got, want)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the deletes to expire: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// runs collects alternating raw and ours measurements made in child
// processes: wall times and CPU per item, the reader's own and the server's.
type runs struct {
	raw, ours                   []float64 // seconds
	rawCPU, oursCPU             []float64 // reader process CPU, µs per item
	rawServerCPU, oursServerCPU []float64 // harness (server) CPU, µs per item
	last                        childResult
}

// measure runs the raw child, then ours, over items messages or filters.
func (r *runs) measure(ctx context.Context, b *bench, raw, ours childSpec, items int) error {
	rr, rs, err := b.runChild(ctx, raw)
	if err != nil {
		return err
	}
	or, osrv, err := b.runChild(ctx, ours)
	if err != nil {
		return err
	}
	per := func(d float64) float64 { return d * 1e6 / float64(max(items, 1)) }
	r.raw = append(r.raw, rr.Seconds)
	r.ours = append(r.ours, or.Seconds)
	r.rawCPU = append(r.rawCPU, per(rr.CPUSeconds))
	r.oursCPU = append(r.oursCPU, per(or.CPUSeconds))
	r.rawServerCPU = append(r.rawServerCPU, per(rs.Seconds()))
	r.oursServerCPU = append(r.oursServerCPU, per(osrv.Seconds()))
	r.last = or
	return nil
}

func (r *runs) note(ours, raw, item string) string {
	return fmt.Sprintf("median of %d: %s %.3fs, %s %.3fs; CPU per %s: %s process %.1f µs + server %.1f µs, %s process %.1f µs + server %.1f µs",
		len(r.ours), ours, median(r.ours), raw, median(r.raw), item,
		ours, median(r.oursCPU), median(r.oursServerCPU), raw, median(r.rawCPU), median(r.rawServerCPU))
}

// count renders a filter count compactly: 100k, 1M.
func count(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}
