package callout

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/wfpnats/wfp/events"
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
//
// The horizon itself is in the stream's configuration, which an agent
// confined to its own callout may not read: it learns it from the events
// it reads (events.HeaderHorizon, on every filter event the engine
// writes), the newest one telling, and at registration from the newest
// event on its subject (or what a durable agent's last run recorded).
type horizon struct {
	h        time.Duration // 0: the stream keeps deletes for ever; nothing to watch
	raw      string        // the header value h was read from
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

// learn takes the horizon from an event's events.HeaderHorizon (absent:
// deletes are kept for ever). A value that does not parse changes
// nothing.
func (h *horizon) learn(v string) {
	if v == h.raw {
		return
	}
	if d, err := events.ParseHorizon(v); err == nil {
		h.h, h.raw = d, v
	}
}

// metadata is what a durable agent records in its consumer: caught and
// the horizon it was judged against.
func (h *horizon) metadata() map[string]string {
	md := map[string]string{events.MetaHorizon: h.raw}
	if !h.caught.IsZero() {
		md[metaCaughtUp] = h.caught.UTC().Format(time.RFC3339Nano)
	}
	return md
}

// checkInterval is how often an agent checks that it is where the log
// is (checkEvery). Tests shorten it.
var checkInterval = 10 * time.Second

// checkEvery is how often the notify goroutine checks: the end of a
// stalled snapshot, what a live subscription dropped, and, more often if
// the horizon is short, the horizon.
func (a *Agent) checkEvery() time.Duration {
	if a.hz.on() {
		return min(checkInterval, a.hz.every())
	}
	return checkInterval
}

// checkHorizon reads the newest message on the callout's subjects: if it
// is one the agent has read, caught moves to now (an idle agent is not
// behind); if not, a live agent on its subscription catches up
// (checkLive). A failed read moves nothing: an agent cut off from the
// server grows stale, as it should.
func (a *Agent) checkHorizon() {
	start := time.Now()
	if a.durable && !a.hz.on() {
		return
	}
	ctx, cancel := context.WithTimeout(a.ctx, apiTimeout)
	defer cancel()
	last, err := lastOn(ctx, a.nc, a.js, a.o.stream, a.subject)
	if err != nil {
		a.log.Debug("check: cannot read the last message of the callout", "err", err)
		a.checkLive(0)
		return
	}
	if last.seq <= a.seen {
		a.hz.learn(last.horizon)
		a.hz.advance(start)
	}
	a.checkLive(last.seq)
	a.recordCaughtUp(false)
}

// learnHorizon reads the horizon from the newest event on the callout's
// subject, at registration, and returns that event's sequence (0: the
// callout has none), or known false when it could not be read. Without
// one it keeps what it has: a durable agent's record, or none until an
// event tells.
func (a *Agent) learnHorizon(ctx context.Context) (newest uint64, known bool, err error) {
	last, err := lastOn(ctx, a.nc, a.js, a.o.stream, a.subject)
	if errors.Is(err, nats.ErrNoResponders) {
		return 0, false, fmt.Errorf("callout: stream %q: %w (no stream answers direct gets for it)", a.o.stream, natsjs.ErrStreamNotFound)
	}
	if err != nil {
		a.log.Warn("cannot read the newest event of the callout to learn the log's horizon", "err", err)
		return 0, false, nil
	}
	if last.seq > 0 {
		a.hz.learn(last.horizon)
	}
	return last.seq, true, nil
}

// recordCaughtUp writes caught into a durable agent's consumer metadata,
// at most every quarter horizon unless force (without a horizon, only
// when forced: at registration and at close). The reader's configuration
// takes it too, so a consumer it recreates keeps it.
func (a *Agent) recordCaughtUp(force bool) {
	if !a.durable || a.hz.caught.IsZero() {
		return
	}
	if !force && (!a.hz.on() || a.hz.caught.Sub(a.hz.recorded) < a.hz.every()) {
		return
	}
	parent := a.ctx
	if parent == nil { // at registration, before the agent's ctx exists
		parent = context.Background()
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), apiTimeout)
	defer cancel()
	if a.src != nil {
		a.src.cfg.Metadata = a.hz.metadata()
	}
	c, err := a.js.Consumer(ctx, a.o.stream, a.o.durable)
	if err != nil {
		a.log.Debug("cannot record the caught-up time: consumer lookup", "err", err)
		return
	}
	cfg := c.CachedInfo().Config
	md := make(map[string]string, len(cfg.Metadata)+2)
	maps.Copy(md, cfg.Metadata)
	maps.Copy(md, a.hz.metadata())
	cfg.Metadata = md
	if _, err := a.js.UpdateConsumer(ctx, a.o.stream, cfg); err != nil {
		a.log.Debug("cannot record the caught-up time", "err", err)
		return
	}
	a.hz.recorded = a.hz.caught
}

// durableCaughtUp reads what a previous run of a durable agent recorded,
// before the consumer is opened (which may recreate it, metadata and
// all): caught, and the horizon it knew. A consumer that does not exist
// yet is created at "now", so there is nothing before now to have
// missed; fresh says so, and that the record is still to be written. One
// without the record (an older agent's) gives the zero time: the agent
// resyncs before it trusts the log.
func (a *Agent) durableCaughtUp(ctx context.Context, now time.Time) (caught time.Time, fresh bool) {
	c, err := a.js.Consumer(ctx, a.o.stream, a.o.durable)
	if errors.Is(err, natsjs.ErrConsumerNotFound) {
		return now, true
	}
	if err != nil {
		return time.Time{}, false
	}
	md := c.CachedInfo().Config.Metadata
	a.hz.learn(md[events.MetaHorizon])
	t, err := time.Parse(time.RFC3339Nano, md[metaCaughtUp])
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
