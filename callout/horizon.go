package callout

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
)

// The horizon. The engine compacts the log: a delete replaces its
// filter's add and itself leaves the log after the horizon the stream
// records (jetstream.Horizon). An agent that has read every message of
// its callout up to some moment can trust the log to show it every
// delete after that moment for one horizon; an agent away longer (a
// connection down, a handler far behind, a durable agent stopped) may
// have missed deletes of filters it holds, for good. It then resyncs
// (see resync.go) instead of trusting the log.
//
// The agent keeps caught: a time such that every message on its
// callout's subjects stored before it has been dispatched. Whoever
// stored after caught is still in the log until caught + horizon, so
// while now - caught stays under the horizon (less a quarter, for the
// time the agent takes to read on and for clocks that differ) nothing
// can have been missed. caught moves forward
//
//   - with every message dispatched, to its stored time (the consumer
//     delivers in log order, so everything stored before it came
//     first),
//   - when the agent is idle and the last message stored on its
//     subjects is one it has dispatched (checked every quarter horizon),
//   - when a resync ends, to when its snapshot was taken.
//
// A durable agent records caught in its consumer's metadata
// (metaCaughtUp), so a restarted process knows how long it was away.
type horizon struct {
	h        time.Duration // 0: the stream keeps deletes for ever; nothing to watch
	caught   time.Time     // owned by the notify goroutine; set through set and advance
	recorded time.Time     // durable: the caught last written to the consumer
	shown    atomic.Int64  // caught in Unix ns, for Stats
}

// metaCaughtUp is the durable consumer's metadata key for caught.
const metaCaughtUp = "wfp.caught-up"

func (h *horizon) on() bool { return h.h > 0 }

// limit is how far behind caught may fall before the agent resyncs.
func (h *horizon) limit() time.Duration { return h.h - h.h/4 }

// every is how often an idle agent checks that it is caught up.
func (h *horizon) every() time.Duration { return max(h.h/4, time.Millisecond) }

func (h *horizon) stale(now time.Time) bool { return h.on() && now.Sub(h.caught) > h.limit() }

// advance moves caught to t if that is later.
func (h *horizon) advance(t time.Time) {
	if t.After(h.caught) {
		h.set(t)
	}
}

func (h *horizon) set(t time.Time) {
	h.caught = t
	h.shown.Store(t.UnixNano())
}

// pollFloor is the shortest wait the notify goroutine puts on its
// consumer when it only wants to wake up for a check: nats.go watches a
// pull consumer's heartbeats per call, so calls shorter than two
// heartbeats (5 s by default) would never notice a consumer that is gone.
var pollFloor = 15 * time.Second

// checkEvery is how often an idle agent wakes up to check its snapshot's
// end, or its horizon.
func (a *Agent) checkEvery() time.Duration {
	if a.snap.active || !a.hz.on() {
		return pollFloor
	}
	return max(pollFloor, a.hz.every())
}

// checkHorizon runs when the agent has been idle for a while: it resyncs
// if it has been away too long, and otherwise moves caught to now if the
// newest message on its subjects is one it has seen. A failed read moves
// nothing: an agent cut off from the server grows stale, as it should.
func (a *Agent) checkHorizon() {
	start := time.Now()
	if a.hz.stale(start) {
		a.resync("no message read for longer than the horizon allows")
		return
	}
	ctx, cancel := context.WithTimeout(a.ctx, apiTimeout)
	defer cancel()
	m, err := a.stream.GetLastMsgForSubject(ctx, a.subject)
	switch {
	case errors.Is(err, natsjs.ErrMsgNotFound):
		a.hz.advance(start)
	case err != nil:
		a.log.Debug("horizon check: cannot read the last message of the callout", "err", err)
		return
	case m.Sequence <= a.seen:
		a.hz.advance(start)
	}
	a.recordCaughtUp(false)
}

// recordCaughtUp writes caught into a durable agent's consumer metadata,
// at most every quarter horizon unless force.
func (a *Agent) recordCaughtUp(force bool) {
	if !a.durable || !a.hz.on() || a.hz.caught.IsZero() {
		return
	}
	if !force && a.hz.caught.Sub(a.hz.recorded) < a.hz.every() {
		return
	}
	parent := a.ctx
	if parent == nil { // at registration, before the agent's ctx exists
		parent = context.Background()
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), apiTimeout)
	defer cancel()
	c, err := a.stream.Consumer(ctx, a.o.durable)
	if err != nil {
		a.log.Debug("cannot record the caught-up time: consumer lookup", "err", err)
		return
	}
	cfg := c.CachedInfo().Config
	md := make(map[string]string, len(cfg.Metadata)+1)
	for k, v := range cfg.Metadata {
		md[k] = v
	}
	md[metaCaughtUp] = a.hz.caught.UTC().Format(time.RFC3339Nano)
	cfg.Metadata = md
	if _, err := a.stream.UpdateConsumer(ctx, cfg); err != nil {
		a.log.Debug("cannot record the caught-up time", "err", err)
		return
	}
	a.hz.recorded = a.hz.caught
}

// durableCaughtUp reads what a previous run of a durable agent recorded,
// before the consumer is opened (which may recreate it, metadata and
// all). A consumer that does not exist yet is created at "now", so there
// is nothing before now to have missed; fresh says so, and that the
// record is still to be written. One without the record (an older
// agent's) gives the zero time: the agent resyncs before it trusts the
// log.
func (a *Agent) durableCaughtUp(ctx context.Context, now time.Time) (caught time.Time, fresh bool) {
	c, err := a.stream.Consumer(ctx, a.o.durable)
	if errors.Is(err, natsjs.ErrConsumerNotFound) {
		return now, true
	}
	if err != nil {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, c.CachedInfo().Config.Metadata[metaCaughtUp])
	if err != nil {
		return time.Time{}, false
	}
	return t, false
}

// caughtUp is the horizon's caught for Stats, from any goroutine.
func (a *Agent) caughtUp() time.Time {
	if !a.hz.on() {
		return time.Time{}
	}
	return time.Unix(0, a.hz.shown.Load())
}
