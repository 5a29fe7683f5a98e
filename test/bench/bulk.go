package main

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/engine"
)

// bulkLoad is the bulk scenario: a policy of BulkN filters loaded through
// engine.Client.Load (what `engine load` runs: transactions of 1000
// operations, several in flight) against raw async publishing of the
// same number of add-shaped messages.
func (b *bench) bulkLoad(ctx context.Context) error {
	n := b.cfg.BulkN
	b.logf("bulk: loading %d filters through the engine vs raw async publish", n)
	restore := label(ctx, "bulk", "ours")
	w, err := b.startEngine(ctx, "BENCH_BULK", "bbulk")
	restore()
	if err != nil {
		return err
	}
	defer w.close(b)
	ops := make([]engine.TxOp, n)
	for i := range ops {
		f := benchFilter(i, w.callout)
		f.Key = newKey()
		ops[i] = engine.TxOp{Op: engine.OpFilterAdd, Filter: &f}
	}

	var failed atomic.Int64
	restore = label(ctx, "bulk", "raw")
	pub, err := b.jsConnect("raw-bulk", natsjs.WithPublishAsyncErrHandler(func(natsjs.JetStream, *nats.Msg, error) { failed.Add(1) }))
	if err != nil {
		restore()
		return err
	}
	_, rawCfg, err := b.freshStream(ctx, pub.js, "BENCH_RAW_BULK", "rawbulk")
	if err != nil {
		restore()
		return err
	}
	defer b.dropStream(pub.js, rawCfg.Name)
	msgs := make([]*nats.Msg, n)
	for i := range msgs {
		msgs[i] = rawMsg(b.addMsg, rawCfg.Prefix, w.callout)
	}
	runtime.GC()
	rawCPU := startCPU()
	t0 := time.Now()
	for _, m := range msgs {
		for {
			_, err := pub.js.PublishMsgAsync(m)
			if err == nil {
				break
			}
			if !errors.Is(err, natsjs.ErrTooManyStalledMsgs) {
				restore()
				return fmt.Errorf("raw bulk publish: %w", err)
			}
		}
	}
	select {
	case <-pub.js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		restore()
		return fmt.Errorf("raw bulk publish: %d acks pending after 5 minutes", pub.js.PublishAsyncPending())
	}
	rawEl := time.Since(t0)
	rawPer := rawCPU.per(n)
	restore()
	if failed.Load() > 0 {
		return fmt.Errorf("raw bulk publish: %d failed", failed.Load())
	}

	restore = label(ctx, "bulk", "ours")
	runtime.GC()
	oursCPU := startCPU()
	t0 = time.Now()
	res, err := w.client.Load(ctx, ops, engine.DefaultLoadInFlight)
	el := time.Since(t0)
	oursPer := oursCPU.per(n)
	restore()
	if err != nil {
		return fmt.Errorf("bulk load: %w", err)
	}
	if res.Ops != n {
		return fmt.Errorf("bulk load: %d operations committed, want %d", res.Ops, n)
	}
	b.logf("bulk: %d filters in %v (%d transactions), raw %v", n, el.Round(time.Millisecond), res.Transactions, rawEl.Round(time.Millisecond))
	b.report.add(newFigure("bulk", "bulk_load", fmt.Sprintf("bulk load of %s filters", count(n)), unitPerSec,
		rate(n, el), rate(n, rawEl), "raw async publish of the same messages", ratioAtLeast(0.8),
		fmt.Sprintf("engine.Client.Load (engine load): %d transactions of up to %d operations, %d in flight; %.2fs against %.2fs raw; process CPU per filter %v, per raw publish %v",
			res.Transactions, engine.MaxTxOps, engine.DefaultLoadInFlight, el.Seconds(), rawEl.Seconds(),
			oursPer.Round(100*time.Nanosecond), rawPer.Round(100*time.Nanosecond))))
	return nil
}
