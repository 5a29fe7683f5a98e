package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/jetstream"
)

// The fleet scenario: FleetCallouts callouts of FleetFilters filters
// each, and FleetAgents replay agents per callout, every one on its own
// connection, all started at once in one child process (as a fleet of
// agent hosts would). It reports how many reached Synced, the fleet's
// delivery rate (filters handed to agents per second until the last was
// synced) against one raw reader of the whole stream, and how much the
// server's process grew per agent once the fleet was synced, against a
// fleet of raw ordered consumers (last per subject) doing the same reads
// and, as the floor, a fleet of bare connections with one core
// subscription each (what a live agent needs at least).
//
// The server's growth is measured twice: just after the last reader
// synced, and at rest, once the file store's block caches that the
// reads loaded have expired (fileStoreCacheExpiry): those are the
// stream's, not the readers', and go whoever reads. The target is on the
// growth at rest, which is what the fleet costs while it runs.

const (
	kindFleetAgents = "fleet-agents" // FleetAgents replay agents per callout, until all are synced
	kindFleetRaw    = "fleet-raw"    // the same number of raw last-per-subject ordered consumers
	kindFleetBare   = "fleet-bare"   // the same number of connections with a core subscription each
)

// fileStoreCacheExpiry is how long the harness waits for nats-server's
// message block caches to expire after the last read: their expiry is 10
// s (defaultCacheBufferExpiration), and measured, the server's memory
// rises again for a moment as they expire, then settles (15 s after the
// last agent synced, it had).
const fileStoreCacheExpiry = 20 * time.Second

const unitPerAgent = "B/agent"

func (b *bench) fleet(ctx context.Context) error {
	c := b.cfg
	agents := c.FleetCallouts * c.FleetAgents
	b.logf("fleet: %d callouts x %d filters, %d replay agents", c.FleetCallouts, c.FleetFilters, agents)
	admin, err := b.jsConnect("fleet-admin")
	if err != nil {
		return err
	}
	_, cfg, err := b.freshStream(ctx, admin.js, "BENCH_FLEET", "bfleet")
	if err != nil {
		return err
	}
	defer b.dropStream(admin.js, cfg.Name)
	p, err := b.newPopulator(ctx, cfg)
	if err != nil {
		return err
	}
	var callouts []string
	for i := range c.FleetCallouts {
		key := newKey()
		callouts = append(callouts, key)
		if err := p.addCallout(key); err != nil {
			return err
		}
		if err := p.addFilters(key, i*c.FleetFilters, c.FleetFilters); err != nil {
			return err
		}
	}
	total, err := p.finish(ctx)
	if err != nil {
		return err
	}

	// One raw reader of the whole stream: the rate one consumer gets.
	var one runs
	if err := one.measureOne(ctx, b, childSpec{Kind: kindColdRaw, Name: "fleet-one-raw", Stream: cfg.Name, Prefix: cfg.Prefix, Want: total}, total); err != nil {
		return err
	}
	oneRate := float64(total) / median(one.raw)

	// The server loads per-subject state the first time a callout's
	// subjects are read last-per-subject, and keeps it a while: a warm-up
	// reader per callout loads it before anything is measured, so the
	// first fleet does not pay for the others. Then its block caches are
	// let expire.
	spec := childSpec{Stream: cfg.Name, Prefix: cfg.Prefix, Callouts: callouts, Agents: 1, N: c.FleetFilters, Kind: kindFleetRaw}
	if _, _, err := b.runFleet(ctx, spec, 0); err != nil {
		return err
	}
	rest := cmp.Or(b.cfg.FleetRest, fileStoreCacheExpiry)
	if err := sleepCtx(ctx, rest); err != nil {
		return err
	}
	spec.Agents = c.FleetAgents
	spec.Kind = kindFleetAgents
	ours, ourGrowth, err := b.runFleet(ctx, spec, rest)
	if err != nil {
		return err
	}
	spec.Kind = kindFleetRaw
	raw, rawGrowth, err := b.runFleet(ctx, spec, rest)
	if err != nil {
		return err
	}
	spec.Kind = kindFleetBare // reads nothing: nothing to let expire
	_, bareGrowth, err := b.runFleet(ctx, spec, 0)
	if err != nil {
		return err
	}
	delivered := agents * c.FleetFilters
	oursRate := rate(delivered, time.Duration(ours.Seconds*float64(time.Second)))
	b.logf("fleet: %d of %d agents synced in %.2fs (%.0f filters/s; one raw reader %.0f/s); server grew per agent %.0f KB synced, %.0f KB at rest (raw consumers: %.0f, %.0f KB; bare connections %.0f KB at rest)",
		ours.Synced, agents, ours.Seconds, oursRate, oneRate, ourGrowth.synced/1024, ourGrowth.rest/1024,
		rawGrowth.synced/1024, rawGrowth.rest/1024, bareGrowth.rest/1024)
	b.report.add(newFigure("fleet", "fleet_synced", fmt.Sprintf("fleet: agents synced, %d x %d x %d", c.FleetCallouts, c.FleetFilters, c.FleetAgents),
		"agents", float64(ours.Synced), float64(agents), "agents started", ratioAtLeast(1.0),
		fmt.Sprintf("%d replay agents, each on its own connection, started at once in one child process; %s", agents, ours.Err)))
	b.report.add(newFigure("fleet", "fleet_delivery_rate", "fleet: delivery rate until all synced", unitPerSec,
		oursRate, oneRate, "one raw ordered reader of the whole stream", ratioAtLeast(0.7),
		fmt.Sprintf("%d filters handed to %d agents in %.2fs; raw consumers doing the same reads: %.2fs (%.0f/s)",
			delivered, agents, ours.Seconds, raw.Seconds, rate(delivered, time.Duration(raw.Seconds*float64(time.Second))))))
	b.report.add(newFigure("fleet", "fleet_rss_per_agent", "fleet: server RSS growth per agent, synced, at rest", unitPerAgent,
		ourGrowth.rest, rawGrowth.rest, "per raw ordered consumer (last per subject) doing the same read", oursAtMost(50*1024, unitPerAgent),
		fmt.Sprintf("RSS of the process holding the embedded nats-server, after two GCs and returning freed memory, before the fleet and "+
			"%v after every agent synced (agents still registered: the block caches the reads loaded have expired), over the number of agents; "+
			"just after the sync: ours %.0f KB, raw %.0f KB", rest, ourGrowth.synced/1024, rawGrowth.synced/1024)))
	b.report.add(newFigure("fleet", "fleet_rss_bare", "fleet: server RSS per bare connection + core subscription, at rest", unitPerAgent,
		bareGrowth.rest, ourGrowth.rest, "per agent of ours, at rest", nil,
		"the floor under the agents' figure: a connection with one subscription to its callout's live subject, nothing else"))
	return nil
}

// measureOne runs one raw child and keeps its time.
func (r *runs) measureOne(ctx context.Context, b *bench, raw childSpec, items int) error {
	rr, rs, err := b.runChild(ctx, raw)
	if err != nil {
		return err
	}
	r.raw = append(r.raw, rr.Seconds)
	r.rawServerCPU = append(r.rawServerCPU, rs.Seconds()*1e6/float64(max(items, 1)))
	return nil
}

// growth is a fleet's server RSS growth per reader, just after the sync
// and at rest.
type growth struct{ synced, rest float64 }

// runFleet starts a fleet child, waits for its report (every reader
// synced, or the deadline passed), measures the server's RSS growth while
// the fleet is still up, at once and at rest (rest later), then lets the
// child go.
func (b *bench) runFleet(ctx context.Context, spec childSpec, rest time.Duration) (childResult, growth, error) {
	var r childResult
	var g growth
	spec.URL = b.url
	data, err := json.Marshal(spec)
	if err != nil {
		return r, g, err
	}
	ctx, cancel := context.WithTimeout(ctx, replayTimeout)
	defer cancel()
	before := settledRSS()
	cmd := exec.CommandContext(ctx, b.cfg.Exe)
	cmd.Env = append(os.Environ(), childEnv+"="+string(data))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return r, g, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return r, g, err
	}
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		return r, g, err
	}
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	synced := settledRSS()
	if err == nil {
		_ = sleepCtx(ctx, rest)
	}
	atRest := settledRSS()
	stdin.Close()
	werr := cmd.Wait()
	if err != nil {
		return r, g, fmt.Errorf("fleet child %s: %v (%v): %s", spec.Kind, err, werr, errOut.Bytes())
	}
	if err := json.Unmarshal(line, &r); err != nil {
		return r, g, fmt.Errorf("fleet child %s output %q: %w", spec.Kind, line, err)
	}
	if r.Synced == 0 {
		return r, g, fmt.Errorf("fleet child %s: no reader synced: %s %s", spec.Kind, r.Err, errOut.Bytes())
	}
	readers := float64(len(spec.Callouts) * spec.Agents)
	g.synced = (float64(synced) - float64(before)) / readers
	g.rest = (float64(atRest) - float64(before)) / readers
	return r, g, nil
}

// sleepCtx waits d, or less if ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// settledRSS is this process's resident set after GCs that return freed
// memory to the OS (two: what sync.Pools hold survives one): the embedded
// server's footprint, or 0 where /proc/self/statm does not exist.
func settledRSS() uint64 {
	runtime.GC()
	debug.FreeOSMemory()
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}

// fleetChild runs a fleet in a child process: it prints its result as
// soon as every reader is synced (or the deadline passes), keeps the
// readers up until its stdin closes, then stops them.
func fleetChild(s childSpec) childResult {
	r := childResult{Kind: s.Kind}
	ctx, cancel := context.WithTimeout(context.Background(), replayTimeout)
	defer cancel()
	cfg := jetstream.StreamConfig{Name: s.Stream, Prefix: s.Prefix}.WithDefaults()
	subj := events.Subjects{Prefix: cfg.Prefix}
	var (
		mu      sync.Mutex
		closers []func()
		synced  atomic.Int64
		firstE  atomic.Value
		wg      sync.WaitGroup
	)
	start := time.Now()
	for _, key := range s.Callouts {
		for i := range s.Agents {
			wg.Go(func() {
				closeFn, err := fleetReader(ctx, s, cfg, subj, key, i)
				if err != nil {
					firstE.CompareAndSwap(nil, err.Error())
					return
				}
				synced.Add(1)
				mu.Lock()
				closers = append(closers, closeFn)
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	r.Seconds = time.Since(start).Seconds()
	r.Synced = int(synced.Load())
	if e := firstE.Load(); e != nil {
		r.Err = fmt.Sprintf("first failure: %v", e)
	}
	out, _ := json.Marshal(r)
	fmt.Println(string(out))
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until the harness closes stdin
	for _, c := range closers {
		c()
	}
	return r
}

// fleetReader starts one reader of callout key on a connection of its
// own and returns once it has the callout's filters.
func fleetReader(ctx context.Context, s childSpec, cfg jetstream.StreamConfig, subj events.Subjects, key string, i int) (func(), error) {
	nc, err := nats.Connect(s.URL, nats.Name(fmt.Sprintf("wfp-bench fleet %s %d", key[:8], i)))
	if err != nil {
		return nil, err
	}
	js, err := natsjs.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	switch s.Kind {
	case kindFleetBare:
		// What a live agent needs at least: its connection and a
		// subscription to its callout's live subject.
		sub, err := nc.SubscribeSync(subj.LiveFilters(key))
		if err == nil {
			err = nc.Flush()
		}
		if err != nil {
			nc.Close()
			return nil, err
		}
		return func() { _ = sub.Unsubscribe(); nc.Close() }, nil
	case kindFleetAgents:
		h := callout.HandlerFunc(func(context.Context, callout.NotifyType, *callout.Filter) error { return nil })
		a, err := callout.Register(ctx, js, key, h, callout.WithMode(callout.Replay),
			callout.WithStream(cfg.Name, cfg.Prefix), callout.WithLogger(quiet))
		if err != nil {
			nc.Close()
			return nil, err
		}
		select {
		case <-a.Synced():
		case <-a.Done():
			nc.Close()
			return nil, fmt.Errorf("agent stopped: %v", a.Err())
		case <-ctx.Done():
			a.Close()
			nc.Close()
			return nil, ctx.Err()
		}
		if got := a.Stats().Held; got != s.N {
			a.Close()
			nc.Close()
			return nil, fmt.Errorf("agent holds %d filters, want %d", got, s.N)
		}
		return func() { a.Close(); nc.Close() }, nil
	default:
		cons, err := js.OrderedConsumer(ctx, cfg.Name, natsjs.OrderedConsumerConfig{
			FilterSubjects: []string{subj.CalloutFilters(key)}, DeliverPolicy: natsjs.DeliverLastPerSubjectPolicy,
		})
		if err != nil {
			nc.Close()
			return nil, err
		}
		pending := cons.CachedInfo().NumPending
		done := make(chan struct{})
		var got atomic.Uint64
		cc, err := cons.Consume(func(natsjs.Msg) {
			if got.Add(1) == pending {
				close(done)
			}
		})
		if err != nil {
			nc.Close()
			return nil, err
		}
		select {
		case <-done:
		case <-ctx.Done():
			cc.Stop()
			nc.Close()
			return nil, ctx.Err()
		}
		return func() { cc.Stop(); nc.Close() }, nil
	}
}
