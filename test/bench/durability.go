package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wfpnats/wfp/engine"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/jetstream/embedded"
)

// syncPolicy is the durability scenario: filter adds per second through
// the engine, as `engine serve` runs it (embedded server, high-water mark
// file fsync'ed per write), with the file store syncing every write before
// it is acknowledged (sync always) against the server's default (a sync
// every 2 minutes), at each caller level. Each side has its own server and
// data directory; the levels alternate between them. The ratio is what
// "always" keeps of the default's rate.
func (b *bench) syncPolicy(ctx context.Context) error {
	b.logf("sync: adds with the file store syncing always vs every 2 minutes")
	always, err := b.syncWorld(ctx, "always", embedded.Options{SyncAlways: true})
	if err != nil {
		return err
	}
	defer always.close()
	interval, err := b.syncWorld(ctx, "interval", embedded.Options{})
	if err != nil {
		return err
	}
	defer interval.close()

	for _, callers := range b.cfg.Callers {
		var rates [2]float64
		var notes [2]string
		for i, w := range []*syncWorld{interval, always} {
			if _, _, _, err := b.engineAdds(ctx, w.client, w.callout, callers, b.cfg.AddWarmup); err != nil {
				return err
			}
			ok, failed, el, err := b.engineAdds(ctx, w.client, w.callout, callers, b.cfg.AddDuration)
			if err != nil {
				return err
			}
			rates[i] = rate(ok, el)
			notes[i] = fmt.Sprintf("%s: %d adds in %.2fs", w.name, ok, el.Seconds())
			if s := errorRate(failed, ok+failed); s != "" {
				notes[i] += " (" + s + ")"
			}
		}
		b.logf("sync: %d callers: always %.0f adds/s, interval %.0f adds/s", callers, rates[1], rates[0])
		b.report.add(newFigure("sync", fmt.Sprintf("sync_always_c%d", callers),
			fmt.Sprintf("adds with sync always, %d caller(s)", callers), unitPerSec, rates[1], rates[0],
			"adds with the default sync interval (2 min)", nil, notes[1]+"; "+notes[0]))
	}
	return nil
}

// syncWorld is an engine on a server of its own with one sync policy.
type syncWorld struct {
	name    string
	srv     *embedded.Server
	dir     string
	eng     *engine.Engine
	mark    *engine.FileMark
	client  *engine.Client
	callout string
	conns   []*nats.Conn
}

func (b *bench) syncWorld(ctx context.Context, name string, opts embedded.Options) (*syncWorld, error) {
	dir, err := os.MkdirTemp("", "wfp-bench-sync-")
	if err != nil {
		return nil, err
	}
	w := &syncWorld{name: name, dir: dir}
	opts.StoreDir, opts.Listen, opts.NoLog = dir, "127.0.0.1:-1", true
	if w.srv, err = embedded.Start(opts); err != nil {
		w.close()
		return nil, err
	}
	connect := func(n string) (*nats.Conn, error) {
		o := []nats.Option{nats.Name("wfp-bench sync " + n)}
		if b.cfg.InProcess {
			return w.srv.Connect(o...)
		}
		return nats.Connect(w.srv.ClientURL(), o...)
	}
	enc, err := connect("engine")
	if err != nil {
		w.close()
		return nil, err
	}
	w.conns = append(w.conns, enc)
	if w.mark, err = engine.OpenFileMark(filepath.Join(dir, "engine.mark")); err != nil {
		w.close()
		return nil, err
	}
	if w.eng, err = engine.Start(ctx, enc, engine.Config{Logger: quiet, Mark: w.mark}); err != nil {
		w.close()
		return nil, err
	}
	cnc, err := connect("client")
	if err != nil {
		w.close()
		return nil, err
	}
	w.conns = append(w.conns, cnc)
	w.client = engine.NewClient(cnc)
	co, err := w.client.AddCallout(ctx, events.Callout{Name: "bench callout"})
	if err != nil {
		w.close()
		return nil, err
	}
	w.callout = co.Key
	return w, nil
}

func (w *syncWorld) close() {
	if w.eng != nil {
		w.eng.Close()
	}
	for _, nc := range w.conns {
		nc.Close()
	}
	if w.mark != nil {
		w.mark.Close()
	}
	w.srv.Shutdown()
	_ = os.RemoveAll(w.dir)
}

// readBarrier is the read-barrier scenario: p50 and p99 of one caller's
// filter.list (one callout's 10 filters out of 1,000) from an engine that
// makes every read linearizable (it asks the stream for its last sequence
// and waits for its state to reach it), against the same list from an
// engine without the barrier (Config.StaleReads), on the same server.
func (b *bench) readBarrier(ctx context.Context) error {
	b.logf("barrier: list latency with and without the read barrier")
	var worlds [2]*engineWorld
	for i, stale := range []bool{false, true} {
		name, prefix := "BENCH_BARRIER", "bbar"
		if stale {
			name, prefix = "BENCH_STALE", "bstale"
		}
		w, err := b.startEngineWith(ctx, name, prefix, engine.Config{StaleReads: stale})
		if err != nil {
			return err
		}
		defer w.close(b)
		// 1,000 filters, 10 of them naming the listed callout.
		var ops []engine.TxOp
		for j := range 990 {
			f := benchFilter(j, "")
			f.Action, f.CalloutKey = events.ActionBlock, ""
			ops = append(ops, engine.TxOp{Op: engine.OpFilterAdd, Filter: &f})
		}
		for j := range 10 {
			f := benchFilter(990+j, w.callout)
			ops = append(ops, engine.TxOp{Op: engine.OpFilterAdd, Filter: &f})
		}
		if _, err := w.client.ApplyTx(ctx, ops); err != nil {
			return err
		}
		worlds[i] = w
	}
	var samples [2]sample
	list := func(w *engineWorld, s *sample) error {
		t0 := time.Now()
		resp, err := w.client.ListFilters(ctx, engine.ListFiltersRequest{CalloutKey: w.callout})
		if err != nil {
			return err
		}
		if len(resp.Filters) != 10 {
			return fmt.Errorf("listed %d filters, want 10", len(resp.Filters))
		}
		if s != nil {
			s.add(time.Since(t0))
		}
		return nil
	}
	for range b.cfg.LatencyWarmup {
		for _, w := range worlds {
			if err := list(w, nil); err != nil {
				return err
			}
		}
	}
	const block = 100
	for done := 0; done < b.cfg.LatencyOps; done += block {
		for i, w := range worlds {
			for range min(block, b.cfg.LatencyOps-done) {
				if err := list(w, &samples[i]); err != nil {
					return err
				}
			}
		}
	}
	for _, p := range []float64{50, 99} {
		o, r := samples[0].percentile(p), samples[1].percentile(p)
		b.logf("barrier: list p%.0f with barrier %v, without %v", p, o, r)
		b.report.add(newFigure("barrier", fmt.Sprintf("list_barrier_p%.0f", p),
			fmt.Sprintf("list latency p%.0f with the read barrier, 1 caller", p), unitMicros, micros(o), micros(r),
			fmt.Sprintf("the same list without the barrier, p%.0f", p), nil,
			fmt.Sprintf("%d lists of 10 of 1,000 filters each way", samples[0].len())))
	}
	return nil
}

// startEngineWith is startEngine with an engine configuration.
func (b *bench) startEngineWith(ctx context.Context, name, prefix string, cfg engine.Config) (*engineWorld, error) {
	admin, err := b.jsConnect(name + "-admin")
	if err != nil {
		return nil, err
	}
	_, sc, err := b.freshStream(ctx, admin.js, name, prefix)
	if err != nil {
		return nil, err
	}
	enc, err := b.connect(name + "-engine")
	if err != nil {
		return nil, err
	}
	cfg.Stream, cfg.Prefix, cfg.Replicas, cfg.Logger = sc.Name, sc.Prefix, sc.Replicas, quiet
	eng, err := engine.Start(ctx, enc, cfg)
	if err != nil {
		return nil, fmt.Errorf("engine start: %w", err)
	}
	cnc, err := b.connect(name + "-client")
	if err != nil {
		eng.Close()
		return nil, err
	}
	w := &engineWorld{cfg: sc, eng: eng, client: engine.NewClient(cnc, engine.WithPrefix(prefix)), admin: admin}
	co, err := w.client.AddCallout(ctx, events.Callout{Name: "bench callout"})
	if err != nil {
		eng.Close()
		return nil, fmt.Errorf("add callout: %w", err)
	}
	w.callout = co.Key
	return w, nil
}
