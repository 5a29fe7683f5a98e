package callout

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/events"
)

// Live agents without a consumer. A live or replay agent, once it has
// its starting point, reads its callout's events on a core subscription
// to the live subject the stream republishes them to
// (events.Subjects.LiveFilters), so a fleet of agents costs the server a
// connection and a subscription each, not a consumer each. The server
// keeps no position for a core subscription, so the agent checks that it
// misses nothing:
//
//   - every filter event says which filter event of its callout came
//     before it (events.HeaderPrev); an event whose predecessor is beyond
//     the last one the agent read means the subscription lost something
//     (a slow client, a reconnect);
//   - a reconnect may lose the last messages, with nothing after them to
//     tell, and so may a slow client that drops them: after a reconnect,
//     and when the client reports dropped messages (checked every
//     checkInterval, without asking the server), it catches up as well;
//     and when its horizon check (every quarter horizon) finds the
//     callout's newest event unread with nothing waiting.
//
// It catches up by reading the log from the first event it has not read,
// through a consumer of its pinned name (events.AgentConsumer), until
// that consumer has nothing more, then deletes it and goes back to the
// subscription, which kept everything that came meanwhile. A replay
// agent reads its snapshot the same way (last per subject) and goes live
// once synced. Durable agents keep their durable consumer.
//
// The subscription is made before the snapshot or the starting point is
// taken, so nothing falls between the two; the agent drops what it has
// read already (stream sequence at or below the last one read).

// liveBuffer is how many decoded live messages wait for the notify
// goroutine; beyond that they wait in the subscription (its pending
// limits), and beyond those the client drops them, which the agent
// notices.
const liveBuffer = 256

// live is the agent's live subscription.
type live struct {
	sub   *nats.Subscription
	out   chan *delivery
	floor atomic.Uint64 // messages at or below this sequence are dropped unread
	quit  chan struct{}
	once  sync.Once
	// dropped is sub.Dropped() when last looked at (notify goroutine).
	dropped int
}

// subscribeLive subscribes to the callout's live subject and makes sure
// the server has the subscription before it returns.
func (a *Agent) subscribeLive(ctx context.Context) error {
	l := &live{out: make(chan *delivery, liveBuffer), quit: make(chan struct{})}
	sub, err := a.nc.Subscribe(a.subj.LiveFilters(a.key), func(m *nats.Msg) {
		if seq, err := strconv.ParseUint(m.Header.Get(natsjs.SequenceHeader), 10, 64); err == nil && seq <= l.floor.Load() {
			return // read already, through a consumer
		}
		d := published(m)
		select {
		case l.out <- d:
		case <-l.quit:
		}
	})
	if err != nil {
		return fmt.Errorf("callout: subscribe to %s: %w", a.subj.LiveFilters(a.key), err)
	}
	l.sub = sub
	fctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	if err := a.nc.FlushWithContext(fctx); err != nil {
		_ = sub.Unsubscribe()
		return fmt.Errorf("callout: subscribe to %s: %w", a.subj.LiveFilters(a.key), err)
	}
	a.live = l
	a.reconnects = a.nc.StatusChanged(nats.CONNECTED, nats.CLOSED)
	return nil
}

func (l *live) stop() {
	l.once.Do(func() {
		close(l.quit)
		_ = l.sub.Unsubscribe()
	})
}

// fromLive takes a message of the live subscription.
func (a *Agent) fromLive(d *delivery) {
	if d.err == nil && d.seq <= a.seen {
		d.recycle()
		return // read already
	}
	if d.err == nil && d.hasPrev && d.prev > a.seen && !a.trustNext {
		// The one before it never came: read the log up to it.
		d.kept = true
		a.held = d
		a.catchUp(fmt.Sprintf("message %d follows %d, but the last one read is %d", d.seq, d.prev, a.seen))
		return
	}
	a.trustNext = false
	a.dispatch(d)
	d.recycle()
}

// catchUp reads the log from the first message not read, through a
// consumer of the agent's pinned name, until it has nothing more; then
// the agent goes live again (goLive). A consumer that cannot be made is
// tried again at the next check.
func (a *Agent) catchUp(why string) {
	if a.src != nil {
		return // reading a consumer already
	}
	from := a.seen + 1
	a.n.catchUps.Add(1)
	a.log.Info("catching up through a consumer", "why", why, "from", from)
	a.lastSeq.Store(a.seen)
	ctx, cancel := context.WithTimeout(a.ctx, apiTimeout)
	defer cancel()
	cfg := agentConfig(events.AgentConsumer(a.key, a.id), a.subject, a.key, a.id, natsjs.DeliverByStartSequencePolicy)
	cfg.OptStartSeq = from
	r := a.newReader(cfg)
	first, info, err := r.start(ctx)
	if err != nil {
		a.log.Warn("cannot catch up now; trying again at the next check", "err", err)
		a.recheck = true
		return
	}
	r.resume = func() uint64 { return max(first, a.lastSeq.Load()+1) }
	if info.NumPending == 0 {
		a.releaseReader(r)
		a.goLive()
		return
	}
	a.src, a.catchingUp = r, true
	go r.pump()
}

// newReader is a reader of a consumer of the agent's, with its pump's
// channels.
func (a *Agent) newReader(cfg natsjs.ConsumerConfig) *reader {
	return &reader{
		js:      a.js,
		stream:  a.o.stream,
		cfg:     cfg,
		durable: a.durable,
		conn:    a.nc,
		log:     a.log,
		pause:   a.pause,
		bo:      a.o.newBackoff(),
		out:     make(chan *delivery, liveBuffer),
		errs:    make(chan error, 1),
		quit:    make(chan struct{}),
	}
}

// releaseReader stops a non-durable reader and deletes its consumer.
func (a *Agent) releaseReader(r *reader) {
	r.stop()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(a.ctx), apiTimeout)
	defer cancel()
	_ = r.release(ctx, nil)
}

// goLive ends a consumer phase of a live or replay agent (the snapshot,
// a catch-up): the consumer goes, and the live subscription is read from
// the last message read on.
//
// A message of the subscription held back when it revealed a gap was
// stored before it was published, so a catch-up that read the log to
// its end has read it too. One that ended before it read a stream
// behind its leader (a replica the consumer sat on, just back from a
// partition; a mirror): what lies between is not known yet, so the
// agent keeps the message and catches up again at the next check (or
// the next message) rather than skip it.
func (a *Agent) goLive() {
	if a.src != nil {
		a.releaseReader(a.src)
		a.src, a.catchingUp = nil, false
	}
	a.live.floor.Store(a.seen)
	if h := a.held; h != nil {
		if h.seq > a.seen {
			a.recheck = true
			a.log.Info("the catch-up ended before the message that revealed the gap; catching up again", "lastRead", a.seen, "held", h.seq)
			return
		}
		a.held = nil
	}
}

// checkDropped runs at each check of a live agent on its subscription:
// messages the client dropped (the agent fell behind its pending limits)
// may have been the last ones, with nothing after them to reveal the gap,
// so it catches up. (The other way to lose the end, a reconnect, is
// watched on its own.)
func (a *Agent) checkDropped() {
	if a.src != nil || a.live == nil {
		return
	}
	if n, err := a.live.sub.Dropped(); err == nil && n > a.live.dropped {
		a.live.dropped = n
		a.catchUp(fmt.Sprintf("the subscription dropped messages (%d so far): the agent fell behind", n))
	}
}

// checkLive runs at each check of a live agent on its subscription: it
// catches up when the callout's newest event is one the agent has not
// read and nothing is waiting (nothing came after the ones lost to
// tell), or when a catch-up could not be made. newest is that event (0:
// not known).
func (a *Agent) checkLive(newest uint64) {
	if a.src != nil || a.live == nil {
		return
	}
	if a.recheck || (newest > a.seen && len(a.live.out) == 0) {
		a.recheck = false
		a.catchUp(fmt.Sprintf("the callout's newest event is %d, the last one read %d", newest, a.seen))
	}
}
