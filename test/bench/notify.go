package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/events"
)

// notifyLatency is scenario 3: adds paced at a steady rate from several
// callers while a live agent is registered for their callout. It reports
//
//   - response -> Notify: from the moment a caller has the add's response
//     to the moment the agent's handler is called with that filter (the
//     issue's definition). A notify that arrives before the response counts
//     as 0, and how often that happens is reported: when the engine
//     confirms adds with the agents before it answers (R7), it always does,
//     and the figure is 0 by construction;
//   - stored -> Notify: from the moment the server stored the add event
//     (the stream message's timestamp) to the handler call: the notify
//     path itself, whatever the engine's answer path does;
//   - the add latency the callers see meanwhile.
//
// The baselines are the same shapes in raw JetStream: sync publishes at the
// same pace, timed from the PubAck (and from the stored timestamp) to the
// delivery by an ordered consumer reading the same kind of subjects an
// agent reads, and the publish latency.
//
// Response and notify times come from one monotonic clock in this process;
// stored times are the server's wall clock, which is this process's too
// (the server is embedded), so they are compared with wall-clock readings.
func (b *bench) notifyLatency(ctx context.Context) error {
	b.logf("notify: %d adds/s from %d callers with a live agent registered", b.cfg.NotifyRate, b.cfg.NotifyCallers)
	warm := int(float64(b.cfg.NotifyRate) * b.cfg.NotifyWarmup.Seconds())
	total := warm + int(float64(b.cfg.NotifyRate)*b.cfg.NotifyDuration.Seconds())
	epoch := time.Now()
	now := func() int64 { return int64(time.Since(epoch)) } // monotonic ns

	restore := label(ctx, "notify", "raw")
	raw, err := b.rawNotify(ctx, total, warm, now)
	restore()
	if err != nil {
		return err
	}

	restore = label(ctx, "notify", "ours")
	defer restore()
	w, err := b.startEngine(ctx, "BENCH_NOTIFY", "bnotify")
	if err != nil {
		return err
	}
	defer w.close(b)

	keys := make([]string, total)
	index := make(map[string]int, total) // read-only once the agent runs
	for i := range keys {
		keys[i] = newKey()
		index[keys[i]] = i
	}
	notifyAt := make([]atomic.Int64, total)   // monotonic
	notifyWall := make([]atomic.Int64, total) // wall clock, ns
	var notified, unknown atomic.Int64
	h := callout.HandlerFunc(func(_ context.Context, t callout.NotifyType, f *callout.Filter) error {
		if t != callout.AddFilter {
			return nil
		}
		at, wall := now(), time.Now().UnixNano()
		if i, ok := index[f.Key]; ok {
			notifyAt[i].Store(at)
			notifyWall[i].Store(wall)
			notified.Add(1)
		} else {
			unknown.Add(1)
		}
		return nil
	})
	ac, err := b.jsConnect("notify-agent")
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	agent, err := callout.Register(rctx, ac.js, w.callout, h, callout.WithStream(w.cfg.Name, w.cfg.Prefix), callout.WithLogger(quiet))
	cancel()
	if err != nil {
		return fmt.Errorf("register live agent: %w", err)
	}
	defer agent.Close()
	<-agent.Synced()
	// Let the engine learn about the agent (announcements run on core
	// NATS), so the adds are confirmed with it from the first one.
	waitFor(func() bool { return engineSeesAgent(ctx, w) }, 5*time.Second)

	sendAt := make([]int64, total)
	respAt := make([]int64, total)
	var failed atomic.Int64
	pace, err := paced(ctx, total, b.cfg.NotifyCallers, b.cfg.NotifyRate, func(i int) {
		f := benchFilter(i, w.callout)
		f.Key = keys[i]
		sendAt[i] = now()
		if _, err := w.client.AddFilter(ctx, f); err != nil {
			failed.Add(1)
			return
		}
		respAt[i] = now()
	})
	if err != nil {
		return err
	}
	ok := total - int(failed.Load())
	waitFor(func() bool { return int(notified.Load()) >= ok }, 30*time.Second)
	stored, err := storedTimes(ctx, w.admin.js, w.cfg.Name, index)
	if err != nil {
		return err
	}

	var lat, fromStore, addLat sample
	negative, missing := 0, 0
	for i := warm; i < total; i++ {
		if respAt[i] == 0 {
			continue // failed add
		}
		addLat.add(time.Duration(respAt[i] - sendAt[i]))
		n := notifyAt[i].Load()
		if n == 0 {
			missing++
			continue
		}
		d := time.Duration(n - respAt[i])
		if d < 0 {
			negative++
			d = 0
		}
		lat.add(d)
		if s := stored[i]; s != 0 {
			fromStore.add(max(time.Duration(notifyWall[i].Load()-s), 0))
		}
	}
	if lat.len() == 0 || fromStore.len() == 0 {
		return fmt.Errorf("no add was notified (%d failed, %d missing)", failed.Load(), missing)
	}
	note := fmt.Sprintf("%d adds measured at %.0f adds/s achieved (%s); %d of them (%.1f%%) were notified before their response arrived and count as 0",
		lat.len(), pace.achieved, pace, negative, 100*float64(negative)/float64(lat.len()))
	if negative == lat.len() {
		note += " (the engine answers an add only once the live agent accepted it, R7, so this figure is 0 by construction; stored -> Notify is the notify path)"
	}
	if missing > 0 || failed.Load() > 0 || unknown.Load() > 0 {
		note += fmt.Sprintf("; %d adds failed, %d never notified, %d unexpected notifies", failed.Load(), missing, unknown.Load())
	}
	rawNote := fmt.Sprintf("raw: %d sync publishes at %.0f/s (%s); %d (%.1f%%) delivered before their PubAck, counted as 0",
		raw.lat.len(), raw.pace.achieved, raw.pace, raw.negative, 100*float64(raw.negative)/float64(raw.lat.len()))
	at := count(b.cfg.NotifyRate) + " adds/s"
	fiveMs := func() *Target { return oursAtMost(5000, unitMicros) }
	for _, p := range []struct {
		id, name  string
		ours, raw *sample
		pct       float64
		rawName   string
		t         *Target
		note      string
	}{
		{"notify_latency_p50", "response -> Notify p50 @" + at, &lat, &raw.lat, 50, "raw PubAck -> consumer", nil, note},
		{"notify_latency_p99", "response -> Notify p99 @" + at, &lat, &raw.lat, 99, "raw PubAck -> consumer", fiveMs(), rawNote},
		{"notify_stored_p50", "stored -> Notify p50 @" + at, &fromStore, &raw.fromStore, 50, "raw stored -> consumer", nil,
			"from the stream message's timestamp to the handler call"},
		{"notify_stored_p99", "stored -> Notify p99 @" + at, &fromStore, &raw.fromStore, 99, "raw stored -> consumer", fiveMs(), ""},
		{"notify_add_latency_p50", "add latency p50 @" + at + ", live agent", &addLat, &raw.pubLat, 50, "raw sync publish", nil,
			"not a target: with a live agent registered the add waits for its answer (R7)"},
		{"notify_add_latency_p99", "add latency p99 @" + at + ", live agent", &addLat, &raw.pubLat, 99, "raw sync publish", nil, ""},
	} {
		o, r := p.ours.percentile(p.pct), p.raw.percentile(p.pct)
		b.logf("notify: %s: ours %v raw %v", p.id, o, r)
		b.report.add(newFigure("notify", p.id, p.name, unitMicros, micros(o), micros(r),
			fmt.Sprintf("%s p%.0f", p.rawName, p.pct), p.t, p.note))
	}
	return nil
}

// engineSeesAgent reports whether the engine lists an agent for the
// world's callout (engines learn about agents from their announcements).
func engineSeesAgent(ctx context.Context, w *engineWorld) bool {
	resp, err := w.client.ListCallouts(ctx)
	if err != nil {
		return false
	}
	for _, c := range resp.Callouts {
		if c.Key == w.callout {
			return len(c.Agents) > 0
		}
	}
	return false
}

// storedTimes reads the stream and returns, by the index of each filter
// key, the server's timestamp (wall clock, ns) of its FilterAdded.
func storedTimes(ctx context.Context, js natsjs.JetStream, stream string, index map[string]int) ([]int64, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	last := s.CachedInfo().State.LastSeq
	cons, err := js.OrderedConsumer(ctx, stream, natsjs.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	it, err := cons.Messages()
	if err != nil {
		return nil, err
	}
	defer it.Stop()
	out := make([]int64, len(index))
	for {
		m, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("reading stored times: %w", err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return nil, err
		}
		h := m.Headers()
		if h.Get(events.HeaderEvent) == string(events.FilterAdded) {
			if i, ok := index[h.Get(events.HeaderFilterKey)]; ok {
				out[i] = meta.Timestamp.UnixNano()
			}
		}
		if meta.Sequence.Stream >= last {
			return out, nil
		}
	}
}

// rawNotifyResult is the raw baseline of the notify scenario.
type rawNotifyResult struct {
	lat       sample // PubAck -> delivery
	fromStore sample // stored timestamp -> delivery
	pubLat    sample // the sync publish itself
	negative  int
	pace      paceStats
}

// rawNotify publishes total add-sized messages synchronously at the notify
// rate and times each from its PubAck to its delivery by an ordered
// consumer reading the same kind of subjects an agent reads.
func (b *bench) rawNotify(ctx context.Context, total, warm int, now func() int64) (*rawNotifyResult, error) {
	pub, err := b.jsConnect("raw-notify-pub")
	if err != nil {
		return nil, err
	}
	s, cfg, err := b.freshStream(ctx, pub.js, "BENCH_RAW_NOTIFY", "rawnotify")
	if err != nil {
		return nil, err
	}
	defer b.dropStream(pub.js, cfg.Name)
	sub, err := b.jsConnect("raw-notify-sub")
	if err != nil {
		return nil, err
	}
	calloutKey := newKey()
	subject := cfg.Prefix + ".filter." + calloutKey + ".*"
	cons, err := sub.js.OrderedConsumer(ctx, cfg.Name, natsjs.OrderedConsumerConfig{
		FilterSubjects: []string{subject},
		DeliverPolicy:  natsjs.DeliverByStartSequencePolicy,
		OptStartSeq:    s.CachedInfo().State.LastSeq + 1,
	})
	if err != nil {
		return nil, err
	}
	// The stream is fresh: sequence i+1 is the i-th message stored.
	recvAt := make([]atomic.Int64, total)
	recvFromStore := make([]atomic.Int64, total)
	var received atomic.Int64
	cc, err := cons.Consume(func(m natsjs.Msg) {
		at, wall := now(), time.Now().UnixNano()
		if meta, err := m.Metadata(); err == nil && meta.Sequence.Stream >= 1 && meta.Sequence.Stream <= uint64(total) {
			recvAt[meta.Sequence.Stream-1].Store(at)
			recvFromStore[meta.Sequence.Stream-1].Store(max(wall-meta.Timestamp.UnixNano(), 0) + 1) // +1: 0 means none
			received.Add(1)
		}
	})
	if err != nil {
		return nil, err
	}
	defer cc.Stop()

	sendAt := make([]atomic.Int64, total)
	ackAt := make([]atomic.Int64, total)
	var failed atomic.Int64
	pace, err := paced(ctx, total, b.cfg.NotifyCallers, b.cfg.NotifyRate, func(int) {
		m := rawMsg(b.addMsg, cfg.Prefix, calloutKey)
		sent := now()
		ack, err := pub.js.PublishMsg(ctx, m)
		at := now()
		if err != nil || ack.Sequence < 1 || ack.Sequence > uint64(total) {
			failed.Add(1)
			return
		}
		sendAt[ack.Sequence-1].Store(sent)
		ackAt[ack.Sequence-1].Store(at)
	})
	if err != nil {
		return nil, err
	}
	waitFor(func() bool { return int(received.Load()) >= total-int(failed.Load()) }, 30*time.Second)
	r := &rawNotifyResult{pace: pace}
	for i := warm; i < total; i++ {
		a, d := ackAt[i].Load(), recvAt[i].Load()
		if a == 0 || d == 0 {
			continue
		}
		l := time.Duration(d - a)
		if l < 0 {
			r.negative++
			l = 0
		}
		r.lat.add(l)
		r.fromStore.add(time.Duration(recvFromStore[i].Load() - 1))
		r.pubLat.add(time.Duration(a - sendAt[i].Load()))
	}
	if r.lat.len() == 0 {
		return nil, fmt.Errorf("raw notify baseline: nothing delivered (%d publishes failed)", failed.Load())
	}
	b.logf("notify: raw baseline: PubAck -> delivery p50 %v p99 %v", r.lat.percentile(50), r.lat.percentile(99))
	return r, nil
}

// paceStats says how well a paced run kept its schedule.
type paceStats struct {
	achieved float64       // calls per second over the whole run
	late     int           // calls started more than 1ms after their slot
	maxLag   time.Duration // the latest start after its slot
	calls    int
}

func (p paceStats) String() string {
	return fmt.Sprintf("%d of %d calls started >1ms late, worst by %v", p.late, p.calls, p.maxLag.Round(time.Microsecond))
}

// paced calls fn(i) for i in [0, total) from callers goroutines, call i
// due at start + i/perSec: an open-loop schedule, so a slow call does not
// slow the offered rate down unless every caller is busy.
func paced(ctx context.Context, total, callers, perSec int, fn func(i int)) (paceStats, error) {
	interval := time.Second / time.Duration(perSec)
	var next atomic.Int64
	var mu sync.Mutex
	st := paceStats{calls: total}
	start := time.Now()
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			late, maxLag := 0, time.Duration(0)
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= total {
					break
				}
				due := start.Add(time.Duration(i) * interval)
				if d := time.Until(due); d > 0 {
					time.Sleep(d)
				} else if -d > time.Millisecond {
					late++
					maxLag = max(maxLag, -d)
				}
				fn(i)
			}
			mu.Lock()
			st.late += late
			st.maxLag = max(st.maxLag, maxLag)
			mu.Unlock()
		}()
	}
	wg.Wait()
	st.achieved = rate(total, time.Since(start))
	return st, ctx.Err()
}

// waitFor polls cond every millisecond until it holds or d passes.
func waitFor(cond func() bool, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}
