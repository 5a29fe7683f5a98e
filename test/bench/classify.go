package main

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/classify"
	"github.com/wfpnats/wfp/engine"
	"github.com/wfpnats/wfp/events"
)

// The classify scenario's two layers: one of permit and block filters
// (no callout is asked), one of inspection filters naming a registered
// callout (each decision asks it once).
const (
	plainLayer   = "ALE_AUTH_CONNECT_V4"
	calloutLayer = "ALE_AUTH_RECV_ACCEPT_V4"
)

// classifyFilter is filter i of a classify layer: its own remote port, a
// remote network, every tenth an application directory, weights 0-15.
func classifyFilter(i int, layer, calloutKey string) events.Filter {
	f := events.Filter{
		Name: fmt.Sprintf("classify filter %d", i), Layer: layer, Weight: uint64(i % 16),
		Conditions: []events.Condition{
			{Field: "IP_REMOTE_PORT", Value: strconv.Itoa(1024 + i)},
			{Field: "IP_REMOTE_ADDRESS", Match: events.MatchPrefix, Value: "10.1.2.0/24"},
		},
	}
	if i%10 == 0 {
		f.Conditions = append(f.Conditions, events.Condition{Field: "ALE_APP_ID", Match: events.MatchPrefix,
			Value: `\device\harddiskvolume1\program files\`})
	}
	switch {
	case calloutKey != "":
		f.Action, f.CalloutKey = events.ActionCalloutInspection, calloutKey
	case i%2 == 0:
		f.Action = events.ActionPermit
	default:
		f.Action = events.ActionBlock
	}
	return f
}

// classifyInputs are 16 connections, each matching exactly one filter of
// a layer of n.
func classifyInputs(n int) []map[string]string {
	var ins []map[string]string
	for k := range 16 {
		i := k * (n / 16)
		ins = append(ins, map[string]string{"IP_REMOTE_PORT": strconv.Itoa(1024 + i), "IP_REMOTE_ADDRESS": "10.1.2." + strconv.Itoa(k+1),
			"IP_PROTOCOL": "6", "ALE_APP_ID": `\device\harddiskvolume1\program files\app` + strconv.Itoa(k) + `.exe`})
	}
	return ins
}

// classifyRate is the classify scenario: decisions per second on a layer
// of ClassifyFilters filters, in process (Engine.Classify) and through
// the API (Client.Classify, ClassifyCallers callers), without and with
// one callout call per decision, each against classify.LinearScan of the
// same filters with the same concurrency, in the same run.
func (b *bench) classifyRate(ctx context.Context) error {
	n := b.cfg.ClassifyFilters
	b.logf("classify: %d filters per layer", n)
	restore := label(ctx, "classify", "ours")
	defer restore()
	w, err := b.startEngine(ctx, "BENCH_CLS", "bcls")
	if err != nil {
		return err
	}
	defer w.close(b)
	plain, err := b.loadLayer(ctx, w, plainLayer, "")
	if err != nil {
		return err
	}
	withCallout, err := b.loadLayer(ctx, w, calloutLayer, w.callout)
	if err != nil {
		return err
	}

	// Register the callout: an agent that takes every filter (in replay,
	// so it holds those loaded before it) with a hit counter as its
	// context, and answers classify from it, as callout-agent does.
	ac, err := b.jsConnect("classify-agent")
	if err != nil {
		return err
	}
	agent, err := callout.Register(ctx, ac.js, w.callout, callout.HandlerFunc(
		func(_ context.Context, t callout.NotifyType, f *callout.Filter) error {
			if t == callout.AddFilter {
				f.Context = new(atomic.Uint64)
			}
			return nil
		}),
		callout.WithClassifier(callout.ClassifierFunc(func(_ context.Context, f *callout.Filter, _ callout.Fields) (callout.Verdict, error) {
			return callout.Continue.WithNote(fmt.Sprintf("hits=%d", f.Context.(*atomic.Uint64).Add(1))), nil
		})),
		callout.WithMode(callout.Replay), callout.WithStream(w.cfg.Name, w.cfg.Prefix), callout.WithLogger(quiet))
	if err != nil {
		return fmt.Errorf("register agent: %w", err)
	}
	defer agent.Close()
	select {
	case <-agent.Synced():
	case <-agent.Done():
		return fmt.Errorf("classify agent: %w", agent.Err())
	}
	if !waitFor(func() bool { return engineSeesAgent(ctx, w) }, 10*time.Second) {
		return fmt.Errorf("the engine never saw the classify agent")
	}

	ins := classifyInputs(n)
	// The registry for the scan: the callout registered, answered in
	// process (the engine's own answer for a callout whose agents do not
	// serve classify), so the scan pays no round trip.
	reg := classify.Callouts{w.callout: classify.CalloutFunc(func(ctx context.Context, f *events.Filter, in classify.Values) (classify.Verdict, error) {
		a, err := engine.InterimClassifier.ClassifyCallout(ctx, nil, f, in)
		return a.Verdict, err
	})}
	for _, l := range []struct {
		layer   string
		filters []*events.Filter
		asks    int
	}{{plainLayer, plain, 0}, {calloutLayer, withCallout, 1}} {
		for _, in := range ins { // every input matches one filter, and asks as many callouts as meant
			before := w.eng.Stats().CalloutsAsked
			r, err := w.client.Classify(ctx, engine.ClassifyRequest{Layer: l.layer, Fields: in})
			if err != nil {
				return err
			}
			if len(r.Filters) != 1 || int(w.eng.Stats().CalloutsAsked-before) != l.asks {
				return fmt.Errorf("classify on %s of %v: %d filters matched, want 1; callouts asked %d, want %d",
					l.layer, in, len(r.Filters), w.eng.Stats().CalloutsAsked-before, l.asks)
			}
			if s := r.Filters[0]; l.asks > 0 && (s.AgentID != agent.ID() || s.Error != "") {
				return fmt.Errorf("classify on %s of %v: answered by %q (%s), want the agent", l.layer, in, s.AgentID, s.Error)
			}
		}
	}

	d := b.cfg.ClassifyDuration
	callers := b.cfg.ClassifyCallers
	scan := func(filters []*events.Filter, layer string) func(int) error {
		return func(i int) error {
			_, err := classify.LinearScan(ctx, layer, ins[i%len(ins)], filters, reg)
			return err
		}
	}
	rows := []struct {
		id, name   string
		callers    int
		ours, base func(int) error
	}{
		{"classify_inprocess", fmt.Sprintf("classify decisions, %d filters, in process", n), 1,
			func(i int) error {
				_, err := w.eng.Classify(ctx, engine.ClassifyRequest{Layer: plainLayer, Fields: ins[i%len(ins)]})
				return err
			}, scan(plain, plainLayer)},
		{"classify_api", fmt.Sprintf("classify decisions, %d filters, API, %d callers", n, callers), callers,
			func(i int) error {
				_, err := w.client.Classify(ctx, engine.ClassifyRequest{Layer: plainLayer, Fields: ins[i%len(ins)]})
				return err
			}, scan(plain, plainLayer)},
		{"classify_api_callout", fmt.Sprintf("classify decisions, %d filters, API, 1 agent round trip each, %d callers", n, callers), callers,
			func(i int) error {
				_, err := w.client.Classify(ctx, engine.ClassifyRequest{Layer: calloutLayer, Fields: ins[i%len(ins)]})
				return err
			}, scan(withCallout, calloutLayer)},
	}
	// Ours and the scan alternate in rounds, so both see the same
	// background load.
	const rounds = 4
	for _, r := range rows {
		var on, bn int
		var oel, bel, oCPU, bCPU time.Duration
		before := w.eng.Stats()
		for range rounds {
			for _, side := range []struct {
				name    string
				op      func(int) error
				n       *int
				el, cpu *time.Duration
			}{{"raw", r.base, &bn, &bel, &bCPU}, {"ours", r.ours, &on, &oel, &oCPU}} {
				restore := label(ctx, "classify", side.name)
				runtime.GC()
				t := cpuTime()
				n, el, err := runFor(r.callers, d/rounds, side.op)
				restore()
				if err != nil {
					return fmt.Errorf("%s (%s): %w", r.id, side.name, err)
				}
				*side.n, *side.el, *side.cpu = *side.n+n, *side.el+el, *side.cpu+cpuTime()-t
			}
		}
		after := w.eng.Stats()
		ours, base := rate(on, oel), rate(bn, bel)
		b.logf("classify: %s: %.0f/s, linear scan %.0f/s", r.name, ours, base)
		note := fmt.Sprintf("%d decisions in %.2fs; process CPU per decision %v, per scan %v; callouts asked %d; layer compiles %d",
			on, oel.Seconds(), (oCPU / time.Duration(max(on, 1))).Round(100*time.Nanosecond), (bCPU / time.Duration(max(bn, 1))).Round(100*time.Nanosecond),
			after.CalloutsAsked-before.CalloutsAsked, after.ClassifyCompiles-before.ClassifyCompiles)
		b.report.add(newFigure("classify", r.id, r.name, unitPerSec, ours, base,
			fmt.Sprintf("classify.LinearScan, %d goroutine(s)", r.callers), nil, note))
	}

	// What a change costs: the first classify after an add to the layer
	// compiles it again.
	var compile, scanOnce []float64
	for i := range 5 {
		f := classifyFilter(n+i, plainLayer, "")
		if _, err := w.client.AddFilter(ctx, f); err != nil {
			return err
		}
		t0 := time.Now()
		if _, err := w.eng.Classify(ctx, engine.ClassifyRequest{Layer: plainLayer, Fields: ins[0]}); err != nil {
			return err
		}
		compile = append(compile, micros(time.Since(t0)))
		t0 = time.Now()
		if err := scan(plain, plainLayer)(0); err != nil {
			return err
		}
		scanOnce = append(scanOnce, micros(time.Since(t0)))
	}
	b.report.note("classify: the first classify after a change to a layer of %d filters (compile, then classify) takes %s (median of 5), one linear scan %s",
		n, formatValue(median(compile), unitMicros), formatValue(median(scanOnce), unitMicros))
	return nil
}

// loadLayer adds ClassifyFilters filters to layer through the API, in
// transactions of engine.MaxTxOps, and returns them as stored.
func (b *bench) loadLayer(ctx context.Context, w *engineWorld, layer, calloutKey string) ([]*events.Filter, error) {
	var out []*events.Filter
	for i := 0; i < b.cfg.ClassifyFilters; {
		var ops []engine.TxOp
		for ; i < b.cfg.ClassifyFilters && len(ops) < engine.MaxTxOps; i++ {
			f := classifyFilter(i, layer, calloutKey)
			ops = append(ops, engine.TxOp{Op: engine.OpFilterAdd, Filter: &f})
		}
		resp, err := w.client.ApplyTx(ctx, ops)
		if err != nil {
			return nil, fmt.Errorf("loading layer %s: %w", layer, err)
		}
		for _, ev := range resp.Events {
			out = append(out, ev.Filter)
		}
	}
	return slices.Clip(out), nil
}

// runFor runs callers goroutines calling op (with a running count) for d
// and returns how many calls succeeded and the time until the last one
// returned. The first error ends the run.
func runFor(callers int, d time.Duration, op func(int) error) (int, time.Duration, error) {
	var n atomic.Int64
	var firstErr error
	var once sync.Once
	start := time.Now()
	deadline := start.Add(d)
	ends := make([]time.Time, callers)
	var wg sync.WaitGroup
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if err := op(int(n.Add(1))); err != nil {
					once.Do(func() { firstErr = err })
					break
				}
			}
			ends[c] = time.Now()
		}()
	}
	wg.Wait()
	var el time.Duration
	for _, e := range ends {
		el = max(el, e.Sub(start))
	}
	return int(n.Load()), el, firstErr
}
