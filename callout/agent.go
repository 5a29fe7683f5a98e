package callout

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/progress"
)

// apiTimeout bounds the JetStream API calls the agent makes on its own,
// outside a caller's context.
const apiTimeout = 10 * time.Second

// durableAckWait is how long the server waits for an ack before it
// redelivers; a handler running longer is kept alive with in-progress acks.
const durableAckWait = 30 * time.Second

// Agent is a registered callout: it reads the filter events naming its
// callout and calls the handler for each. Create it with Register.
type Agent struct {
	id       string
	key      string
	subj     events.Subjects
	subject  string
	h        Handler
	o        options
	log      *slog.Logger
	js       natsjs.JetStream
	nc       *nats.Conn
	src      *reader
	durable  bool
	ann      *announcer
	instance string

	// classifier answers classify calls (nil: the agent serves none);
	// classifying bounds the calls answered at once (classify.go).
	classifier  Classifier
	classifying chan struct{}

	filters table
	n       counters

	ctx    context.Context // given to the handler; cancelled by Close
	cancel context.CancelFunc

	synced    chan struct{}
	syncOnce  sync.Once
	closing   chan struct{}
	closeOnce sync.Once
	closeErr  error // Shutdown's result, written in closeOnce
	done      chan struct{}
	err       error // written before done is closed

	// holdTimeout bounds the wait for the rest of an incomplete
	// transaction (txHoldTimeout when registered).
	holdTimeout time.Duration
	started     time.Time // when Register began, for the synced line

	// lastSeq is the last stream sequence handled (and, durable, acked):
	// a reader makes its consumer anew from the one after. Written by the
	// notify goroutine, read by the reader's pump.
	lastSeq atomic.Uint64

	// Owned by the notify goroutine.
	lastAcked natsjs.Msg // durable: the message of the last ack
	snap      snapshot
	asm       assembler
	seen      uint64  // the highest stream sequence dispatched (live: from registration)
	hz        horizon // how long the log can be trusted to show every delete
	nextCheck time.Time
	// nextHorizon is when the agent next reads its callout's newest event
	// (checkHorizon).
	nextHorizon time.Time
	// A live or replay agent reads its live subscription (live.go)
	// whenever it is not reading a consumer (src nil): src is its snapshot
	// or a catch-up (catchingUp), held the live message that revealed a
	// gap, trustNext takes the next live message without the gap check
	// (live mode, when the starting point could not be read), and recheck
	// asks the next check to catch up.
	live       *live
	reconnects chan nats.Status
	catchingUp bool
	held       *delivery
	trustNext  bool
	recheck    bool
}

// Register starts an agent for calloutKey. ctx bounds the registration
// only (claiming the agent id, consumer creation); the agent then runs
// until Close or a terminal failure (see Done). Values of ctx reach the
// handler's ctx.
//
// One agent id runs once: Register fails with ErrAgentIDInUse while
// another running instance (in this process or any other) holds it. A
// killed instance's hold ends with its connection, so a restart with the
// same id registers at once.
//
// Once its consumer exists, the agent announces itself to the engines on
// the agent's own connection (js.Conn()), and keeps doing so while it
// runs; see WithAgentID and WithPostCommit.
//
// The stream must exist (the engine creates it); the agent only reads it,
// through a consumer of its own (events.AgentConsumer, or the durable
// name). An agent confined by NATS permissions (`engine permissions`)
// needs a connection made with nats.CustomInboxPrefix set to its
// events.Subjects.AgentInbox; Register logs a warning when the
// connection's inbox prefix is another.
func Register(ctx context.Context, js natsjs.JetStream, calloutKey string, h Handler, opts ...Option) (*Agent, error) {
	key, err := events.ParseKey(calloutKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidCalloutKey, err)
	}
	if h == nil {
		return nil, ErrNilHandler
	}
	if js == nil {
		return nil, fmt.Errorf("%w: nil JetStream", ErrInvalidOption)
	}
	o := defaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if o.durable != "" && o.mode == Replay {
		return nil, fmt.Errorf("%w: a durable consumer is for live mode; replay rebuilds from the log each time", ErrInvalidOption)
	}

	if o.agentID == "" {
		o.agentID = uuid.NewString()
	}

	subj := events.Subjects{Prefix: o.prefix}
	a := &Agent{
		id:          o.agentID,
		instance:    nuid.Next(),
		key:         key,
		subj:        subj,
		subject:     subj.CalloutFilters(key),
		h:           h,
		o:           o,
		js:          js,
		nc:          js.Conn(),
		durable:     o.durable != "",
		synced:      make(chan struct{}),
		closing:     make(chan struct{}),
		done:        make(chan struct{}),
		holdTimeout: txHoldTimeout,
		classifier:  o.classifier,
		started:     time.Now(),
	}
	if c, ok := h.(Classifier); ok && a.classifier == nil {
		a.classifier = c
	}
	a.log = o.log.With("callout", key, "agentId", a.id, "instance", a.instance, "mode", o.mode.String())
	if a.durable {
		a.log = a.log.With("durable", o.durable)
	}
	if want := subj.AgentInbox(key, a.id); a.nc.Opts.InboxPrefix != want {
		a.log.Warn("the connection's inbox prefix is not this agent's: NATS permissions cannot confine the agent "+
			"to its own replies (connect with nats.CustomInboxPrefix)", "inboxPrefix", a.nc.Opts.InboxPrefix, "want", want)
	}
	a.asm = assembler{log: a.log, n: &a.n}

	// Hold the agent id before touching its consumer: the consumer is
	// named after the id, and a second instance must not take it over.
	// claim returns once no running instance holds it; only an instance
	// starting at the same moment could still win it (settle), so a live
	// or replay agent prepares meanwhile: at worst the two replace each
	// other's consumer once, which the winner's reader takes as a reset.
	// A durable agent waits, its durable's position being at stake.
	ann, settle, err := claim(ctx, a.nc, subj, events.Announcement{
		AgentID:    a.id,
		CalloutKey: key,
		Instance:   a.instance,
		Mode:       o.mode.String(),
		Durable:    o.durable,
		PostCommit: o.postCommit,
		Classify:   a.classifier != nil,
		Status:     events.AgentAlive,
	}, a.log)
	if err != nil {
		return nil, err
	}
	a.ann = ann
	if a.durable {
		if err := settle(); err != nil {
			ann.release()
			return nil, err
		}
	}
	if err := a.open(ctx); err != nil {
		if !a.durable {
			_ = settle()
		}
		ann.release()
		return nil, err
	}
	if !a.durable {
		if err := settle(); err != nil {
			// The id is another's: stop, and leave the consumer of its
			// name alone (it may be the winner's by now).
			a.stopSources()
			ann.release()
			return nil, err
		}
	}
	a.ctx, a.cancel = context.WithCancel(context.WithoutCancel(ctx))

	// Announce only now that the consumer exists: an engine that counts
	// on this agent's answer to an add can be sure the agent will see it.
	// Likewise the classify subscription comes first: an engine that reads
	// "classify" in the announcement finds it. A replay agent stays quiet
	// until it has synced (markSynced).
	err = a.serveClassify()
	if err == nil {
		err = ann.start(ctx, a.snap.active)
	}
	if err != nil {
		ann.release()
		a.stopSources()
		rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if a.src != nil {
			a.src.release(rctx, nil)
		}
		a.cancel()
		return nil, err
	}
	if !a.snap.active {
		a.markSynced()
	} else {
		go a.logReplay()
	}
	go a.run()
	return a, nil
}

// logReplay logs how far a long replay is until it has synced.
func (a *Agent) logReplay() {
	stop := progress.Start(a.log, "replaying", a.n.snapSize.Load(), a.o.progressInterval, a.n.snapDone.Load)
	defer stop()
	select {
	case <-a.synced:
	case <-a.done:
	}
}

// ID is the agent's id, as announced to engines.
func (a *Agent) ID() string { return a.id }

// Instance is this registration's own id, fresh at each Register: the
// engines tell instances of one agent id apart by it.
func (a *Agent) Instance() string { return a.instance }

// open creates what the mode reads: a durable agent its durable
// consumer; a live or replay agent its live subscription, then, replay,
// the consumer of its snapshot, or, live, its starting point: the
// callout's newest event. ctx is the registration's.
func (a *Agent) open(ctx context.Context) error {
	a.ctx = ctx // until Register sets the agent's own
	now := time.Now()
	fresh := false
	if a.durable {
		// Before the consumer is opened: opening may recreate it,
		// metadata and all.
		var caught time.Time
		caught, fresh = a.durableCaughtUp(ctx, now)
		a.hz.set(caught)
		a.hz.recorded = caught
	} else {
		a.hz.set(now) // the snapshot, or "now", is taken after this
		if err := a.subscribeLive(ctx); err != nil {
			return err
		}
	}
	// The newest event: a live agent's starting point, and where any
	// other learns the horizon before its first message. A replay agent
	// learns it from its snapshot, and spares the server the search
	// (a direct get of the last message matching a wildcard looks at
	// every subject of the callout).
	var newest uint64
	known := true
	if a.o.mode != Replay {
		var err error
		if newest, known, err = a.learnHorizon(ctx); err != nil {
			if a.live != nil {
				a.live.stop()
			}
			return err
		}
	}
	switch {
	case a.durable:
		d := a.newReader(durableConfig(a.o.durable, a.subject, a.key))
		d.cfg.Metadata = a.hz.metadata()
		d.pastEnd = func(n uint64) { a.n.logLoss.Store(n) }
		first, _, err := d.start(ctx)
		if err != nil {
			return err
		}
		d.resume = func() uint64 { return max(first, a.lastSeq.Load()+1) }
		a.src = d
		a.n.position.Store(first - 1)
		a.log.Info("registered", "subject", a.subject, "consumer", d.name(), "resumeAt", first, "horizon", a.hz.h)
	case a.o.mode == Replay:
		d := a.newReader(agentConfig(events.AgentConsumer(a.key, a.id), a.subject, a.key, a.id, natsjs.DeliverLastPerSubjectPolicy))
		first, info, err := d.start(ctx)
		if err != nil {
			a.live.stop()
			return err
		}
		d.resume = func() uint64 { return max(first, a.lastSeq.Load()+1) }
		// NumPending at creation is the snapshot: the last message of
		// each filter subject of the callout, a filter's add or the
		// tombstone of its delete. Which is which is known once they are
		// read (synced).
		a.snap = snapshot{active: info.NumPending > 0, left: info.NumPending, gen: d.gen}
		a.n.snapSize.Store(info.NumPending)
		a.n.position.Store(first - 1)
		a.filters.reserve(int(min(info.NumPending, 1<<24)))
		a.src = d
		a.log.Info("registered", "subject", a.subject, "consumer", d.name(), "snapshotMessages", info.NumPending, "horizon", a.hz.h)
		if !a.snap.active {
			a.goLive()
		}
	default:
		// "Now" is the callout's newest event: nothing before it is told
		// (R2), everything after it comes on the subscription.
		a.seen = newest
		a.trustNext = !known
		a.live.floor.Store(newest)
		a.n.position.Store(newest)
		a.log.Info("registered", "subject", a.subject, "live", a.subj.LiveFilters(a.key), "after", newest, "horizon", a.hz.h)
	}
	if a.src != nil {
		go a.src.pump()
	}
	// Registration read the log's newest event (or the snapshot): the
	// first horizon check is due a quarter horizon on.
	a.nextHorizon = now.Add(a.hz.every())
	if fresh {
		// A kill before the first record must not look like a long
		// absence to the next run.
		a.recordCaughtUp(true)
	}
	return nil
}

// stopSources stops the consumer and the live subscription, so that
// their goroutines end.
func (a *Agent) stopSources() {
	if a.src != nil {
		a.src.stop()
	}
	if a.live != nil {
		a.live.stop()
		if a.reconnects != nil {
			a.nc.RemoveStatusListener(a.reconnects)
		}
	}
}

// Synced is closed once the initial state is delivered: at once in live
// mode, after the snapshot in replay mode. An agent that fails first never
// closes it, so wait on Done as well.
func (a *Agent) Synced() <-chan struct{} { return a.synced }

// Lookup returns the filter held under filterID and the Context its
// AddFilter left, for the classify path. It is safe for any number of
// concurrent callers, beside the handler; the returned Filter must not be
// modified.
func (a *Agent) Lookup(filterID uint64) (*Filter, bool) { return a.filters.get(filterID) }

// LookupKey is Lookup by filter key (the canonical lower-case UUID, as
// events.ParseKey gives it).
func (a *Agent) LookupKey(filterKey string) (*Filter, bool) { return a.filters.getKey(filterKey) }

// Filters yields the filters the agent holds now, in no particular order,
// each with the Context its AddFilter left. It is safe beside the handler:
// a filter added or deleted while the loop runs may or may not be seen,
// any other is seen once. The Filters must not be modified.
func (a *Agent) Filters() iter.Seq[*Filter] { return a.filters.all() }

// Stats returns the agent's counters.
func (a *Agent) Stats() Stats {
	return Stats{
		Adds:           a.n.adds.Load(),
		Deletes:        a.n.deletes.Load(),
		Refused:        a.n.refused.Load(),
		PostCommits:    a.n.postCommits.Load(),
		Transactions:   a.n.transactions.Load(),
		Skipped:        a.n.skipped.Load(),
		Duplicates:     a.n.duplicates.Load(),
		Tombstones:     a.n.tombstones.Load(),
		HandlerErrors:  a.n.handlerErrors.Load(),
		Resyncs:        a.n.resyncs.Load(),
		CatchUps:       a.n.catchUps.Load(),
		CaughtUp:       a.caughtUp(),
		Classifies:     a.n.classifies.Load(),
		ClassifyErrors: a.n.classifyErrors.Load(),
		LogLoss:        a.n.logLoss.Load(),
		Held:           a.filters.len(),
		HeldTxParts:    int(a.n.heldTxParts.Load()),
		Position:       a.n.position.Load(),
		SnapshotDone:   a.n.snapDone.Load(),
		SnapshotSize:   a.n.snapSize.Load(),
	}
}

// closeGrace bounds what Close waits for: the bye and the last ack
// reaching the server.
const closeGrace = 2 * time.Second

// Shutdown stops the agent gracefully, as http.Server.Shutdown does: it
// says bye to the engines (so they stop counting on this agent at once),
// stops reading, lets the handler call in flight finish with its ctx
// intact, makes sure the server has the durable consumer's acks, and
// releases the consumer. If ctx ends first, the handler's ctx is
// cancelled and Shutdown returns once the handler has returned.
//
// It reports what it could not do: a bye the server did not confirm (the
// engines then forget the agent only after events.AgentTTL), acks not
// confirmed (a durable agent's next run may get its last unit again), a
// handler cut short by ctx. The agent is stopped either way.
//
// The agent stops between two notifications: a transaction cut short is
// not acknowledged, so a durable agent's next run gets it whole again. It
// is idempotent (later calls return the first call's error) and safe from
// any goroutine but the handler's own. Filters stay held: Lookup keeps
// answering.
func (a *Agent) Shutdown(ctx context.Context) error {
	a.closeOnce.Do(func() { a.closeErr = a.shutdown(ctx, false) })
	<-a.done
	return a.closeErr
}

// Close stops the agent at once: like Shutdown, but the handler's ctx is
// cancelled right away, and the bye and the acks are waited for briefly.
// An AddFilter that fails because Close cancelled it counts as
// interrupted, not refused, and no result is sent for it.
func (a *Agent) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), closeGrace)
	defer cancel()
	a.closeOnce.Do(func() { a.closeErr = a.shutdown(ctx, true) })
	<-a.done
	return a.closeErr
}

// shutdown stops the agent; now cancels the handler's ctx at once.
func (a *Agent) shutdown(ctx context.Context, now bool) error {
	var errs []error
	if err := a.ann.stop(ctx); err != nil {
		errs = append(errs, err)
	}
	// closing before cancel: a handler that fails because its ctx ended
	// must find the agent closing, or its error would count as a refusal.
	close(a.closing)
	if now {
		a.cancel()
	}
	// The notify goroutine stops its consumer and subscription as it
	// ends: it may be replacing one with the other.
	select {
	case <-a.done:
	case <-ctx.Done():
		a.cancel()
		<-a.done
		errs = append(errs, fmt.Errorf("callout: handler cut short: %w", ctx.Err()))
	}
	a.cancel()
	// Acks get a moment of their own when ctx is spent: they decide where
	// a durable agent's next run starts.
	rctx := ctx
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), closeGrace)
		defer cancel()
	}
	if a.src != nil {
		if err := a.src.release(rctx, a.lastAcked); err != nil {
			errs = append(errs, err)
		}
	}
	a.recordCaughtUp(true)
	return errors.Join(errs...)
}

// Done is closed when the agent has stopped, after Close or a terminal
// failure; Err tells which.
func (a *Agent) Done() <-chan struct{} { return a.done }

// Err returns the terminal failure that stopped the agent, or nil while it
// runs and after a plain Close.
func (a *Agent) Err() error {
	select {
	case <-a.done:
		return a.err
	default:
		return nil
	}
}

func (a *Agent) markSynced() {
	a.syncOnce.Do(func() {
		close(a.synced)
		if a.ann != nil {
			a.ann.activate()
		}
	})
}

func (a *Agent) isClosing() bool {
	select {
	case <-a.closing:
		return true
	default:
		return false
	}
}

// sleep waits d unless the agent closes first; it reports whether it
// waited the whole time.
func (a *Agent) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-a.closing:
		return false
	}
}

// pause logs a consumer error and backs off; false means the agent is
// closing.
func (a *Agent) pause(err error, b *backoff) bool {
	d := b.wait()
	a.log.Warn("consumer error; retrying", "err", err, "in", d)
	return a.sleep(d)
}

// run is the notify goroutine: the only caller of the handler. It takes
// what its consumer's pump decoded, or, when it reads no consumer, what
// the live subscription decoded; it gives up on an incomplete
// transaction when the rest does not come in time (holdTimeout); and it
// checks, every so often, that it is still where the log is (the end of
// a stalled snapshot, the horizon, messages a live subscription lost).
func (a *Agent) run() {
	defer close(a.done)
	defer a.stopSources()
	var holdUntil time.Time // when the transaction held now stops waiting
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if a.asm.holding() {
			if holdUntil.IsZero() {
				holdUntil = time.Now().Add(a.holdTimeout)
			}
		} else {
			holdUntil = time.Time{}
		}
		if a.nextCheck.IsZero() {
			a.nextCheck = time.Now().Add(a.checkEvery())
		}
		wake := a.nextCheck
		if !holdUntil.IsZero() && holdUntil.Before(wake) {
			wake = holdUntil
		}
		timer.Reset(max(time.Until(wake), time.Millisecond))

		var fromSrc <-chan *delivery
		var srcErr <-chan error
		var fromLive <-chan *delivery
		if a.src != nil {
			fromSrc, srcErr = a.src.out, a.src.errs
		} else if a.live != nil {
			fromLive = a.live.out
		}
		select {
		case d := <-fromSrc:
			a.fromSource(d)
			// Take what else is waiting before the timers are set again.
			for n := 0; n < drainBatch && a.src != nil && !a.isClosing(); n++ {
				select {
				case d := <-a.src.out:
					a.fromSource(d)
					continue
				default:
				}
				break
			}
		case d := <-fromLive:
			a.fromLive(d)
			for n := 0; n < drainBatch && a.src == nil && !a.isClosing(); n++ {
				select {
				case d := <-a.live.out:
					a.fromLive(d)
					continue
				default:
				}
				break
			}
		case st := <-a.reconnects:
			if st == nats.CLOSED {
				a.fail(nats.ErrConnectionClosed)
				return
			}
			if a.src == nil {
				a.catchUp("reconnected: the subscription may have lost messages meanwhile")
			}
		case err := <-srcErr:
			if a.isClosing() {
				return
			}
			a.fail(err)
			return
		case now := <-timer.C:
			if a.asm.holding() && !now.Before(holdUntil) {
				holdUntil = time.Time{}
				for _, u := range a.asm.flush(fmt.Sprintf("the rest did not arrive within %v", a.holdTimeout)) {
					if !a.deliver(u) {
						break
					}
				}
			}
			if !now.Before(a.nextCheck) {
				a.nextCheck = now.Add(a.checkEvery())
				a.check()
			}
		case <-a.closing:
			return
		}
		if a.isClosing() {
			return
		}
	}
}

// drainBatch bounds how many waiting messages the notify goroutine takes
// in one go before it looks at its timers again.
const drainBatch = 256

// fromSource takes a message of the consumer being read.
func (a *Agent) fromSource(d *delivery) {
	a.dispatch(d)
	if a.catchingUp && d.pending == 0 && a.src != nil && !a.isClosing() {
		a.goLive() // the consumer had nothing more: back to the subscription
	}
	d.recycle()
}

// fail stops the agent for err: it can no longer read.
func (a *Agent) fail(err error) {
	a.err = fmt.Errorf("callout: agent for %s stopped: %w", a.key, err)
	a.log.Error("agent stopped", "err", err)
	a.cancel()
	// No longer serving: leave the engines' lists (if the connection
	// still lets us say so).
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	a.ann.stop(ctx)
	cancel()
}

// check runs every checkEvery on the notify goroutine: the end of a
// snapshot whose rest left the stream before it was read, the horizon,
// and what a live subscription may have lost.
func (a *Agent) check() {
	if a.snap.active && a.snapshotDrained() {
		a.snap.active = false
		a.log.Info("synced (the rest of the snapshot left the stream before it was read)")
		a.markSynced()
		if !a.durable {
			a.goLive()
		}
	}
	if a.asm.holding() || a.snap.active {
		return
	}
	a.checkDropped()
	now := time.Now()
	if a.hz.stale(now) {
		a.resync("no message read for longer than the horizon allows")
		return
	}
	// Reading the callout's newest event costs the server a search of
	// the callout's subjects (and keeps its blocks cached): a fleet of
	// agents asks only as often as the horizon needs, or when a catch-up
	// could not be made.
	if a.recheck || (a.hz.on() && !now.Before(a.nextHorizon)) {
		a.nextHorizon = now.Add(a.hz.every())
		a.checkHorizon()
	}
}
