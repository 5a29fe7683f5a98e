package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/events"
)

// The NATS KV peer: what a user would write instead of this system, a
// KV bucket holding each filter as JSON under its key. Adds are kv.Create
// (fails if the key exists, as an add of an existing filter key does);
// a late reader is kv.WatchAll, decoding every value into a map until the
// watcher says the initial values are done.

// kvBucketConfig is the bucket the peer uses: file storage, one value
// per key, as our stream keeps one message per filter.
func kvBucketConfig(name string) natsjs.KeyValueConfig {
	return natsjs.KeyValueConfig{Bucket: name, Storage: natsjs.FileStorage, History: 1}
}

// freshBucket creates an empty bucket, deleting a leftover first.
func (b *bench) freshBucket(ctx context.Context, js natsjs.JetStream, name string) (natsjs.KeyValue, error) {
	if err := js.DeleteKeyValue(ctx, name); err != nil && !errors.Is(err, natsjs.ErrBucketNotFound) {
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		kv, err := js.CreateKeyValue(ctx, kvBucketConfig(name))
		var apiErr *natsjs.APIError
		if err == nil || !errors.As(err, &apiErr) || apiErr.ErrorCode != jsErrStoreFailed || time.Now().After(deadline) {
			return kv, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kvCreates runs callers goroutines doing kv.Create of a bench filter's
// JSON under a fresh key for d; it returns the creates that succeeded and
// the time until the last returned.
func kvCreates(ctx context.Context, kv natsjs.KeyValue, calloutKey string, callers int, d time.Duration) (int, time.Duration, error) {
	var ok, seq atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	deadline := start.Add(d)
	ends := make([]time.Time, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			for time.Now().Before(deadline) && ctx.Err() == nil {
				f := benchFilter(int(seq.Add(1)), calloutKey)
				f.Key = newKey()
				data, err := json.Marshal(&f)
				if err == nil {
					_, err = kv.Create(ctx, f.Key, data)
				}
				if err != nil {
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				ok.Add(1)
			}
			ends[i] = time.Now()
		})
	}
	wg.Wait()
	var el time.Duration
	for _, e := range ends {
		el = max(el, e.Sub(start))
	}
	if ok.Load() == 0 {
		return 0, el, fmt.Errorf("kv.Create: none succeeded: %v", firstErr.Load())
	}
	return int(ok.Load()), el, nil
}

// populateKV writes n bench filters as JSON values straight to the
// bucket's subjects (async publish: populating is not timed).
func (b *bench) populateKV(ctx context.Context, name, calloutKey string, n int) error {
	var failed atomic.Int64
	jc, err := b.jsConnect("populate-kv",
		natsjs.WithPublishAsyncErrHandler(func(natsjs.JetStream, *nats.Msg, error) { failed.Add(1) }),
		natsjs.WithPublishAsyncMaxPending(8192))
	if err != nil {
		return err
	}
	for i := range n {
		f := benchFilter(i, calloutKey)
		f.Key, f.ID = newKey(), uint64(i+2)
		data, err := json.Marshal(&f)
		if err != nil {
			return err
		}
		for {
			_, err := jc.js.PublishAsync("$KV."+name+"."+f.Key, data)
			if err == nil {
				break
			}
			if !errors.Is(err, natsjs.ErrTooManyStalledMsgs) {
				return err
			}
		}
	}
	select {
	case <-jc.js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	}
	if failed.Load() > 0 {
		return fmt.Errorf("populate kv: %d publishes failed", failed.Load())
	}
	return nil
}

// kvWatchAll is the peer's late reader: WatchAll, each value decoded from
// JSON into a map by key, until the initial values are all there (the
// watcher's nil entry).
func kvWatchAll(ctx context.Context, js natsjs.JetStream, bucket string) (map[string]*events.Filter, error) {
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return nil, err
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	out := make(map[string]*events.Filter)
	for e := range w.Updates() {
		if e == nil {
			return out, nil
		}
		var f events.Filter
		if err := json.Unmarshal(e.Value(), &f); err != nil {
			return nil, fmt.Errorf("kv value %s: %w", e.Key(), err)
		}
		out[e.Key()] = &f
	}
	return nil, fmt.Errorf("kv watcher closed before the initial values: %v", ctx.Err())
}

// kvReplay is the peer of our replay: the same n filters in a KV bucket,
// read by a late reader with WatchAll and a JSON decode, in a child
// process as our agent is; ours is our replay's median time.
func (b *bench) kvReplay(ctx context.Context, calloutKey string, n int, ours float64) error {
	admin, err := b.jsConnect("kv-admin")
	if err != nil {
		return err
	}
	const bucket = "BENCH_KV_REPLAY"
	if _, err := b.freshBucket(ctx, admin.js, bucket); err != nil {
		return err
	}
	defer func() { _ = admin.js.DeleteKeyValue(context.Background(), bucket) }()
	if err := b.populateKV(ctx, bucket, calloutKey, n); err != nil {
		return err
	}
	var secs, cpu, srv []float64
	for range b.cfg.Reps {
		r, s, err := b.runChild(ctx, childSpec{Kind: kindKVWatch, Stream: bucket, N: n, Want: -1})
		if err != nil {
			return err
		}
		secs = append(secs, r.Seconds)
		cpu = append(cpu, r.CPUSeconds*1e6/float64(n))
		srv = append(srv, s.Seconds()*1e6/float64(n))
		b.logf("replay: KV WatchAll + JSON decode of %d filters: %.3fs", n, r.Seconds)
	}
	k := median(secs)
	b.report.add(newFigure("replay", "replay_vs_kv", fmt.Sprintf("replay to synced vs NATS KV, N=%s", count(n)), unitPerSec,
		float64(n)/ours, float64(n)/k, "KV WatchAll + JSON decode of the same filters", ratioAtLeast(1.0),
		fmt.Sprintf("median of %d: KV watcher %.3fs, CPU per filter: watcher process %.1f µs + server %.1f µs", len(secs), k, median(cpu), median(srv))))
	return nil
}
