package engine

import (
	"context"
	"fmt"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/projection"
)

// An engine away from the log for longer than the horizon. Its state is
// a fold of the log, and the log forgets: a delete leaves after the
// horizon, and the roll-up took its filter's add before that. An engine
// cut off from the server (or paused) while another engine deleted a
// filter, for longer than the horizon, would never read that delete: its
// tail resumes where it stopped and the delete is no longer there, so
// the filter would stay in its state for good. (A restarted engine is
// safe: it folds the log from the start, as it is.)
//
// So the engine keeps caught, as agents do (see the callout package): a
// time such that every message stored before it has been folded. Its
// tail moves it, to each message's stored time (the tail delivers in log
// order) and to the time of delivery when the tail had nothing more; a
// write moves it (the fence proved the log ended where the state does);
// so does a check of the log's last sequence, every quarter horizon and
// at each read barrier. A delete stored after caught is in the log until
// caught + horizon: while now - caught stays under three quarters of the
// horizon (a margin for clocks and for the time a fold takes), nothing
// can have been missed. Past that, the engine does not trust the log's
// history any more and rebuilds: it folds a snapshot of the log (the last
// message of every subject, which is the state) into a fresh state and
// goes on from there.

// horizonLimit is how far behind caught may fall before the engine
// rebuilds; 0 when deletes are kept for ever.
func (e *Engine) horizonLimit() time.Duration {
	h := e.comp.ttl
	return h - h/4
}

// caughtUpTo moves caught to t if that is later. Any goroutine.
func (e *Engine) caughtUpTo(t time.Time) {
	n := t.UnixNano()
	for {
		c := e.caught.Load()
		if n <= c || e.caught.CompareAndSwap(c, n) {
			return
		}
	}
}

// stale reports whether the engine may have missed deletes: its state
// may no longer be the log's.
func (e *Engine) stale(now time.Time) bool {
	limit := e.horizonLimit()
	return limit > 0 && now.Sub(time.Unix(0, e.caught.Load())) > limit
}

// askRebuild makes the writer loop rebuild at its next turn.
func (e *Engine) askRebuild() {
	e.needRebuild.Store(true)
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// checkEvery is how often the writer loop checks, when idle, that it has
// folded the log's end.
func (e *Engine) checkEvery() time.Duration {
	if e.comp.ttl == 0 {
		return time.Hour // nothing to watch; the timer still needs a period
	}
	return max(e.comp.ttl/4, 100*time.Millisecond)
}

// checkCaughtUp runs on the writer loop every checkEvery: if the state
// has folded the log's end, caught moves to now; if the engine is stale,
// it rebuilds. A failed read moves nothing: an engine cut off from the
// server grows stale, as it should.
func (e *Engine) checkCaughtUp(ctx context.Context, inflight map[string]*pending) {
	t := time.Now()
	last, err := e.lastSeq(ctx)
	if err != nil {
		return
	}
	if last <= e.state.Seq() {
		e.caughtUpTo(t)
		return
	}
	if e.stale(time.Now()) {
		_ = e.rebuildNow(ctx, inflight, "the log moved on while this engine was not reading it, for longer than the horizon allows")
	}
}

// rebuildNow rebuilds, logging why. On failure the state is partial, so
// the engine judges no write until a rebuild succeeds (needRebuild).
func (e *Engine) rebuildNow(ctx context.Context, inflight map[string]*pending, why string) error {
	e.log.Warn("engine: rebuilding the state from a snapshot of the log: deletes may have left the log unread",
		"why", why, "seq", e.state.Seq(), "caughtUp", time.Unix(0, e.caught.Load()), "horizon", e.comp.ttl)
	if err := e.rebuild(ctx, inflight); err != nil {
		e.needRebuild.Store(true)
		e.warn.warn("engine: rebuilding from a snapshot failed; trying again", "err", err)
		return fmt.Errorf("engine: rebuilding from a snapshot: %w", err)
	}
	f, c := e.state.Len()
	e.log.Info("engine: rebuilt from a snapshot of the log", "seq", e.state.Seq(), "filters", f, "callouts", c)
	return nil
}

// rebuild replaces the state with a fold of the log's last message per
// subject, and the tail with one that goes on after it. It runs on the
// writer loop (or before it starts).
//
// The snapshot is the state: a compacted log holds, per subject, the add
// of a live filter or the delete that ended it (or nothing, once that
// expired); a plain delete's add behind it is no longer its subject's
// last. Folded in log order into a fresh state, it gives the state the
// whole history would have given, without the deletes that expired.
func (e *Engine) rebuild(ctx context.Context, inflight map[string]*pending) error {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.WriteTimeout)
	defer cancel()
	started := time.Now()
	info, err := e.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream info: %w", err)
	}
	e.stopTail()
	e.needRebuild.Store(false)
	e.caught.Store(started.UnixNano()) // the snapshot is taken after this
	fresh := projection.NewSized(int(min(info.State.Msgs, 1<<24)))
	fresh.Keep()
	e.mu.Lock()
	e.state = fresh
	e.folded.Store(0)
	e.mu.Unlock()
	e.classifiers.reset()
	cons, err := e.openTail(ctx, natsjs.OrderedConsumerConfig{
		FilterSubjects: e.subj.Stream(),
		DeliverPolicy:  natsjs.DeliverLastPerSubjectPolicy,
	})
	if err != nil {
		return err
	}
	// The snapshot is what the consumer counted at its creation; it ends
	// sooner if some of that left the stream before it was read.
	left := cons.CachedInfo().NumPending
	idle := time.NewTimer(e.cfg.WriteTimeout)
	defer idle.Stop()
	probe := time.NewTimer(gapProbe)
	defer probe.Stop()
	for left > 0 {
		select {
		case m := <-e.tail:
			if m.gen != e.tailGen.Load() {
				continue
			}
			n, last := e.fold(m, inflight) // drains what is buffered as well
			left -= min(left, uint64(n))
			if last {
				left = 0
			}
			idle.Reset(e.cfg.WriteTimeout)
			probe.Reset(gapProbe)
		case <-probe.C:
			ci, err := cons.Info(ctx)
			if err == nil && ci.NumPending == 0 && len(e.tail) == 0 && ci.Delivered.Stream <= e.state.Seq() {
				left = 0
			}
			probe.Reset(gapProbe)
		case <-idle.C:
			return fmt.Errorf("snapshot: nothing for %v at %d", e.cfg.WriteTimeout, e.state.Seq())
		case <-ctx.Done():
			return fmt.Errorf("snapshot: %w", ctx.Err())
		}
	}
	// Everything stored when the snapshot was taken is folded or gone: the
	// position is the log's last sequence then.
	e.mu.Lock()
	e.state.Skip(info.State.LastSeq)
	e.state.Forget(e.state.Seq()) // listings as of earlier positions list again
	e.folded.Store(e.state.Seq())
	e.mu.Unlock()
	e.progress.signal()
	e.rebuilds.Add(1)
	return nil
}
