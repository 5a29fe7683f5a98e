package main

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/wfpnats/wfp/engine"
)

// addThroughput is scenario 1: filter adds per second through the Go client
// with 1, 16 and 128 concurrent callers, against raw async publish of
// messages the size of our add events, measured right before each level.
func (b *bench) addThroughput(ctx context.Context) error {
	b.logf("throughput: adds through the engine vs raw async publish")
	restore := label(ctx, "throughput", "ours")
	w, err := b.startEngine(ctx, "BENCH_TPUT", "btput")
	restore()
	if err != nil {
		return err
	}
	defer w.close(b)

	var asyncFailed atomic.Int64
	restore = label(ctx, "throughput", "raw")
	pub, err := b.jsConnect("raw-async", natsjs.WithPublishAsyncErrHandler(func(natsjs.JetStream, *nats.Msg, error) {
		asyncFailed.Add(1)
	}))
	restore()
	if err != nil {
		return err
	}
	_, rawCfg, err := b.freshStream(ctx, pub.js, "BENCH_RAW_TPUT", "rawtput")
	if err != nil {
		return err
	}
	defer b.dropStream(pub.js, rawCfg.Name)
	kvConn, err := b.jsConnect("kv-create")
	if err != nil {
		return err
	}
	kv, err := b.freshBucket(ctx, kvConn.js, "BENCH_KV_TPUT")
	if err != nil {
		return err
	}
	defer func() { _ = kvConn.js.DeleteKeyValue(context.Background(), "BENCH_KV_TPUT") }()

	for _, callers := range b.cfg.Callers {
		restore := label(ctx, "throughput", "raw")
		if _, _, err := b.rawAsync(pub.js, rawCfg.Prefix, w.callout, b.cfg.AddWarmup); err != nil {
			return err
		}
		runtime.GC()
		asyncFailed.Store(0)
		rawCPU := startCPU()
		n, el, err := b.rawAsync(pub.js, rawCfg.Prefix, w.callout, b.cfg.AddDuration)
		restore()
		if err != nil {
			return err
		}
		rawPer := rawCPU.per(n)
		rawFailed := int(asyncFailed.Load())
		raw := rate(n-rawFailed, el)

		restore = label(ctx, "throughput", "ours")
		if _, _, _, err := b.engineAdds(ctx, w.client, w.callout, callers, b.cfg.AddWarmup); err != nil {
			return err
		}
		runtime.GC()
		before := w.eng.Stats()
		oursCPU := startCPU()
		ok, failed, el2, err := b.engineAdds(ctx, w.client, w.callout, callers, b.cfg.AddDuration)
		restore()
		if err != nil {
			return err
		}
		oursPer := oursCPU.per(ok)
		after := w.eng.Stats()
		g, err := writeGroups(ctx, w.admin.js, w.cfg.Name, before.Seq+1, after.Seq)
		if err != nil {
			return err
		}
		ours := rate(ok, el2)
		b.logf("throughput: %d callers: %.0f adds/s (%d in %v), raw async %.0f msgs/s", callers, ours, ok, el2.Round(time.Millisecond), raw)

		var t *Target
		if callers == 128 { // the target level
			t = ratioAtLeast(0.5)
		}
		note := fmt.Sprintf("%d adds in %.2fs; engine writes: %s; %d fenced retries; process CPU per add %v, per raw publish %v (%.1fx)",
			ok, el2.Seconds(), g, after.Fenced-before.Fenced, oursPer.Round(100*time.Nanosecond), rawPer.Round(100*time.Nanosecond),
			float64(oursPer)/float64(max(rawPer, 1)))
		if s := errorRate(failed, ok+failed); s != "" {
			note += "; engine: " + s
		}
		if s := errorRate(rawFailed, n); s != "" {
			note += "; raw: " + s
		}
		b.report.add(newFigure("throughput", fmt.Sprintf("add_throughput_c%d", callers),
			fmt.Sprintf("add throughput, %d caller(s)", callers), unitPerSec, ours, raw,
			"raw async publish", t, note))

		if callers != 1 && callers != 128 {
			continue
		}
		// The KV peer: the same filters as JSON values, kv.Create each.
		restore = label(ctx, "throughput", "raw")
		if _, _, err := kvCreates(ctx, kv, w.callout, callers, b.cfg.AddWarmup); err != nil {
			return err
		}
		runtime.GC()
		kvCPU := startCPU()
		kn, kel, err := kvCreates(ctx, kv, w.callout, callers, b.cfg.AddDuration)
		restore()
		if err != nil {
			return err
		}
		kvRate := rate(kn, kel)
		b.logf("throughput: %d callers: kv.Create %.0f/s", callers, kvRate)
		b.report.add(newFigure("throughput", fmt.Sprintf("add_vs_kv_c%d", callers),
			fmt.Sprintf("add throughput vs NATS KV, %d caller(s)", callers), unitPerSec, ours, kvRate,
			"kv.Create of the filter as JSON", nil,
			fmt.Sprintf("%d creates in %.2fs; process CPU per create %v", kn, kel.Seconds(), kvCPU.per(kn).Round(100*time.Nanosecond))))
	}
	return nil
}

// rawAsync publishes add-sized messages with PublishMsgAsync for d, then
// waits for every ack. It returns how many were published and the time
// until the last ack.
func (b *bench) rawAsync(js natsjs.JetStream, prefix, calloutKey string, d time.Duration) (int, time.Duration, error) {
	start := time.Now()
	deadline := start.Add(d)
	n := 0
	for ; n%64 != 0 || time.Now().Before(deadline); n++ {
		m := rawMsg(b.addMsg, prefix, calloutKey)
		for {
			_, err := js.PublishMsgAsync(m)
			if err == nil {
				break
			}
			if !errors.Is(err, natsjs.ErrTooManyStalledMsgs) {
				return n, 0, fmt.Errorf("raw async publish: %w", err)
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		return n, 0, fmt.Errorf("raw async publish: %d acks still pending after a minute", js.PublishAsyncPending())
	}
	return n, time.Since(start), nil
}

// engineAdds runs callers goroutines adding filters through the client
// for d. It returns the successful and failed adds and the time until the
// last call returned.
func (b *bench) engineAdds(ctx context.Context, c *engine.Client, calloutKey string, callers int, d time.Duration) (ok, failed int, elapsed time.Duration, err error) {
	var nOK, nFailed, seq atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	deadline := start.Add(d)
	ends := make([]time.Time, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				f := benchFilter(int(seq.Add(1)), calloutKey)
				if _, err := c.AddFilter(ctx, f); err != nil {
					nFailed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					if ctx.Err() != nil {
						break
					}
					continue
				}
				nOK.Add(1)
			}
			ends[i] = time.Now()
		}()
	}
	wg.Wait()
	for _, e := range ends {
		elapsed = max(elapsed, e.Sub(start))
	}
	ok, failed = int(nOK.Load()), int(nFailed.Load())
	if ok == 0 {
		return 0, failed, elapsed, fmt.Errorf("no add succeeded (%d failed; first: %v)", failed, firstErr.Load())
	}
	if failed > 0 {
		b.logf("throughput: %d adds failed; first: %v", failed, firstErr.Load())
	}
	return ok, failed, elapsed, nil
}

// groups describes how the engine wrote a range of the log. A write is
// one fenced unit: it starts at a message carrying
// Nats-Expected-Last-Sequence and goes on over the messages fenced on their
// predecessor (Nats-Expected-Last-Msg-Id, a publish chain) or belonging to
// the same atomic batch; the server stores these headers with the messages.
type groups struct {
	writes, events, largest, unfenced int
}

func (g groups) String() string {
	avg := 0.0
	if g.writes > 0 {
		avg = float64(g.events) / float64(g.writes)
	}
	s := fmt.Sprintf("%d fenced writes, mean %.1f events, largest %d", g.writes, avg, g.largest)
	if g.unfenced > 0 {
		s += fmt.Sprintf(", %d unfenced messages", g.unfenced)
	}
	return s
}

// writeGroups reads the log from first to last and groups the engine's
// messages into writes by their fence headers.
func writeGroups(ctx context.Context, js natsjs.JetStream, stream string, first, last uint64) (groups, error) {
	var g groups
	if first > last {
		return g, nil
	}
	cons, err := js.OrderedConsumer(ctx, stream, natsjs.OrderedConsumerConfig{
		DeliverPolicy: natsjs.DeliverByStartSequencePolicy, OptStartSeq: first,
	})
	if err != nil {
		return g, err
	}
	it, err := cons.Messages()
	if err != nil {
		return g, err
	}
	defer it.Stop()
	cur := 0 // events in the write being read
	batch := ""
	flush := func() {
		if cur > 0 {
			g.writes++
			g.events += cur
			g.largest = max(g.largest, cur)
		}
		cur = 0
	}
	for seq := first; seq <= last; seq++ {
		m, err := it.Next()
		if err != nil {
			return g, fmt.Errorf("reading the engine's writes: %w", err)
		}
		h := m.Headers()
		id := h.Get(jetstreamext.BatchIDHeader)
		switch {
		case h.Get(natsjs.ExpectedLastSeqHeader) != "":
			flush()
			cur, batch = 1, id
		case cur > 0 && (h.Get(natsjs.ExpectedLastMsgIDHeader) != "" || (id != "" && id == batch)):
			cur++
		default:
			flush()
			g.unfenced++
		}
	}
	flush()
	return g, nil
}
