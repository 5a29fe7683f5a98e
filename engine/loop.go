package engine

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/jetstream"
	"github.com/wfpnats/wfp/projection"
)

// backoffAfterLoss is the most an engine waits, at random, before trying
// again after losing the fence. Two engines that lose to each other in
// step would otherwise keep colliding; a random pause lets one of them win.
const backoffAfterLoss = 2 * time.Millisecond

// Retries after a failed write whose outcome is unknown (a timeout, a
// lost connection) back off from firstBackoff, doubling up to maxBackoff,
// within the write timeout: a server in trouble is not hammered.
const (
	firstBackoff = 5 * time.Millisecond
	maxBackoff   = 500 * time.Millisecond
)

// pending is one command of a group being written.
type pending struct {
	*request
	done  bool
	evs   []*events.Event // the events of the latest attempt
	first uint64          // the sequence evs[0] was written at (or would be)
	// tries holds every attempt's events by the id of its first one: an
	// attempt whose outcome was unknown may land after a later attempt
	// was made (with fresh event ids, and fresh keys where the request
	// left them empty). Its landing answers the command, and the fence
	// keeps the later attempt from landing too.
	tries map[string][]*events.Event
}

// answer replies once.
func (p *pending) answer(evs []*events.Event, seq uint64, err error) {
	if !p.done {
		p.done = true
		p.reply(evs, seq, err)
	}
}

// loop is the single writer: it folds the tail and writes groups of
// commands. Owning both means a write is always validated against
// everything folded so far, and the fence names exactly that position.
func (e *Engine) loop(ctx context.Context) {
	defer close(e.loopDone)
	inflight := make(map[string]*pending) // event id -> command, while its write is unresolved
	check := time.NewTicker(e.checkEvery())
	defer check.Stop()
	for {
		if e.needRebuild.Load() {
			_ = e.rebuildNow(ctx, inflight, "the tail resumed after a gap longer than the horizon allows")
		}
		select {
		case <-ctx.Done():
			for {
				select {
				case r := <-e.cmds:
					r.reply(nil, 0, errorf(CodeInternal, "%v", errClosed))
				default:
					return
				}
			}
		case m := <-e.tail:
			if !e.needRebuild.Load() {
				e.fold(m, inflight)
			}
		case <-check.C:
			e.checkCaughtUp(ctx, inflight)
		case <-e.wake: // a rebuild was asked for: done at the top
		case r := <-e.cmds:
			group := []*pending{{request: r}}
		more:
			for len(group) < e.cfg.MaxGroup {
				select {
				case r := <-e.cmds:
					group = append(group, &pending{request: r})
				default:
					break more
				}
			}
			if e.needRebuild.Load() {
				// The state may not be the log's: judge nothing on it.
				for _, p := range group {
					p.answer(nil, 0, errorf(CodeTimeout, "the engine is rebuilding its state from the log (it was away for longer than the horizon); try again"))
				}
				continue
			}
			e.commit(ctx, group, inflight)
			clear(inflight)
		}
	}
}

// tailMsg is a log message as the tail's consume callback decoded it.
// Decoding there, not in the loop, lets a rebuild decode on one core and
// fold on the other.
type tailMsg struct {
	gen     uint64 // the tail consumer it came from (see stopTail)
	seq     uint64
	subject string
	stored  time.Time
	ev      *events.Event // nil: not an event this code acts on
	err     error         // why ev is nil
	plain   bool          // a tombstone without a TTL: the janitor's
	last    bool          // the tail had nothing after it when it was delivered
}

// decodeTail runs in the consume callback of tail consumer gen. Messages
// the loop has already folded (the engine's own writes, folded when
// acked) are dropped unread. Each message tells how far the engine has
// read the log (caught, see stale.go), and first whether it had fallen
// too far behind before it.
func (e *Engine) decodeTail(gen uint64, m natsjs.Msg) {
	meta, err := m.Metadata()
	if err != nil {
		e.log.Warn("engine: tail message without metadata", "subject", m.Subject(), "err", err)
		return
	}
	now := time.Now()
	if e.stale(now) {
		e.needRebuild.Store(true)
	}
	e.caughtUpTo(meta.Timestamp)
	if meta.NumPending == 0 {
		e.caughtUpTo(now)
	}
	seq := meta.Sequence.Stream
	if seq <= e.folded.Load() {
		return
	}
	t := tailMsg{gen: gen, seq: seq, subject: m.Subject(), stored: meta.Timestamp, last: meta.NumPending == 0}
	e.tail <- e.decodeLogMsg(t, m.Headers(), m.Data())
}

// decodeLogMsg decodes the event of one log message for fold; t says
// where the message came from. A gap filler only moves the position.
func (e *Engine) decodeLogMsg(t tailMsg, h nats.Header, data []byte) tailMsg {
	if t.subject == e.subj.Gap() {
		return t
	}
	t.ev, t.err = events.Decode(data)
	if t.err == nil && !t.ev.Known() {
		t.err = fmt.Errorf("unknown event type %q or schema %d", t.ev.Type, t.ev.Schema)
	}
	if t.err != nil {
		t.ev = nil
	} else if events.IsTombstone(t.ev.Type) {
		t.plain = h.Get(events.HeaderTTL) == ""
	}
	return t
}

// fold applies tail messages: m, then whatever else is already buffered,
// under one lock. A message carrying the id of an event we tried to write
// answers that command: its write landed even if we never got the ack.
// It returns how many messages it took from the tail, and whether the
// last of them had nothing after it when it was delivered.
func (e *Engine) fold(m tailMsg, inflight map[string]*pending) (taken int, last bool) {
	batch := make([]tailMsg, 0, 64)
	gen := e.tailGen.Load()
	add := func(m tailMsg) {
		if m.gen != gen {
			return // from a tail since replaced
		}
		taken++
		last = m.last
		if m.seq <= e.state.Seq() || (len(batch) > 0 && m.seq <= batch[len(batch)-1].seq) {
			return // folded already: our own write, or read directly (readBack)
		}
		if m.err != nil {
			e.skipped.Add(1)
			e.warn.warn("engine: skipping log message", "seq", m.seq, "subject", m.subject, "err", m.err)
		}
		batch = append(batch, m)
	}
	add(m)
drain:
	for len(batch) < cap(batch) {
		select {
		case m := <-e.tail:
			add(m)
		default:
			break drain
		}
	}
	e.mu.Lock()
	for _, d := range batch {
		e.state.Apply(d.seq, d.ev)
	}
	e.folded.Store(e.state.Seq())
	e.mu.Unlock()
	e.progress.signal()
	for _, d := range batch {
		if d.ev == nil {
			continue
		}
		if d.plain && e.comp.ttl > 0 {
			e.janitor.schedule(d.subject, d.seq, d.stored.Add(e.comp.ttl))
		}
		// A command's first event landing means all of it landed: a
		// transaction is one atomic batch, other commands one event.
		p := inflight[d.ev.ID]
		switch {
		case p == nil || p.done:
		case len(p.evs) <= 1:
			p.answer([]*events.Event{d.ev}, d.seq, nil)
		default:
			if evs, ok := p.tries[d.ev.ID]; ok {
				p.answer(evs, d.seq, nil)
			}
		}
	}
	return taken, last
}

// drainTail folds whatever the tail has already delivered, without waiting.
func (e *Engine) drainTail(inflight map[string]*pending) {
	for {
		select {
		case m := <-e.tail:
			e.fold(m, inflight)
		default:
			return
		}
	}
}

// catchUp folds the tail until the state reaches seq. It gives up when the
// tail delivers nothing for the write timeout: a long rebuild is fine as
// long as it moves. When the tail stops short, it asks the server whether
// anything is stored up to seq at all: the log's last sequences may hold
// no message (purged past a loss, removed by a roll-up or a TTL), and then
// the state moves to seq without them. The fence names the stream's last
// sequence whether or not that message is still stored.
//
// An engine that may have missed deletes (stale.go) does not catch up
// through the log's history but rebuilds from a snapshot.
func (e *Engine) catchUp(ctx context.Context, seq uint64, inflight map[string]*pending) error {
	if e.needRebuild.Load() || (e.state.Seq() < seq && e.stale(time.Now())) {
		return e.rebuildNow(ctx, inflight, "catching up after a gap longer than the horizon allows")
	}
	if e.state.Seq() >= seq {
		return nil
	}
	e.catchingUp.Store(true)
	defer e.catchingUp.Store(false)
	idle := time.NewTimer(e.cfg.WriteTimeout)
	defer idle.Stop()
	probe := time.NewTimer(gapProbe)
	defer probe.Stop()
	for e.state.Seq() < seq {
		select {
		case m := <-e.tail:
			e.fold(m, inflight)
			if e.needRebuild.Load() {
				return e.rebuildNow(ctx, inflight, "the tail resumed after a gap longer than the horizon allows")
			}
			idle.Reset(e.cfg.WriteTimeout)
			probe.Reset(gapProbe)
			if m.last && len(e.tail) == 0 {
				// The tail had nothing after it: the rest, if any, is
				// gone. Ask at once rather than after a pause.
				probe.Reset(0)
			}
		case <-probe.C:
			if empty, err := e.nothingStored(ctx, e.state.Seq()+1, seq); err == nil && empty {
				e.mu.Lock()
				e.state.Skip(seq)
				e.folded.Store(e.state.Seq())
				e.mu.Unlock()
				e.progress.signal()
				return nil
			}
			probe.Reset(gapProbe)
		case <-idle.C:
			return fmt.Errorf("at %d of %d, nothing new for %v", e.state.Seq(), seq, e.cfg.WriteTimeout)
		case <-ctx.Done():
			return fmt.Errorf("at %d of %d: %w", e.state.Seq(), seq, ctx.Err())
		}
	}
	return nil
}

// commit writes a group of commands: runs of ordinary commands as fenced
// chains, each transaction as its own atomic batch.
func (e *Engine) commit(ctx context.Context, group []*pending, inflight map[string]*pending) {
	for len(group) > 0 {
		n := 1
		_, isAtomic := group[0].cmd.(batched)
		if !isAtomic {
			for n < len(group) {
				if _, ok := group[n].cmd.(batched); ok {
					break
				}
				n++
			}
		}
		e.commitRun(ctx, group[:n], isAtomic, inflight)
		group = group[n:]
	}
}

// commitRun validates the commands against the state and writes what
// passes as one fenced unit: a chain (see jetstream.PublishChain) or, for a
// transaction, an atomic batch. After losing the fence to another writer,
// or an ambiguous failure, it folds the log and tries again what did not
// land, until the write timeout.
func (e *Engine) commitRun(ctx context.Context, run []*pending, isAtomic bool, inflight map[string]*pending) {
	deadline := time.Now().Add(e.cfg.WriteTimeout)
	backoff := firstBackoff
	// pause waits before the next attempt after one whose outcome is
	// unknown, doubling up to maxBackoff, never past the deadline.
	pause := func() {
		time.Sleep(min(backoff, max(time.Until(deadline), 0)))
		backoff = min(2*backoff, maxBackoff)
	}
	// A refusal that depends on the state (no such callout, already
	// exists, in use) is held until the engine has made sure its state is
	// the log's: another engine may have written what makes the command
	// valid, and acknowledged it before this one was sent.
	held := map[*pending]error{}
	fresh := false
	for attempt := 1; ; attempt++ {
		e.drainTail(inflight)
		var live []*pending
		for _, p := range run {
			if !p.done {
				live = append(live, p)
			}
		}
		if len(live) == 0 {
			return
		}
		if attempt > 1 && time.Now().After(deadline) {
			for _, p := range live {
				p.answer(nil, 0, errorf(CodeTimeout, "write not confirmed within %v (%d attempts); list to see whether it was applied",
					e.cfg.WriteTimeout, attempt-1))
			}
			return
		}

		clear(held) // validated again below
		base := e.state.Seq()
		ov := projection.NewOverlay(e.state)
		var (
			msgs   []*nats.Msg
			evs    []*events.Event
			owners []*pending
		)
		for _, p := range live {
			seq := base + uint64(len(msgs)) + 1
			pevs, err := p.cmd.events(ov, seq)
			var pmsgs []*nats.Msg
			if err == nil {
				pmsgs, err = e.messages(pevs)
			}
			if err != nil {
				if !fresh && dependsOnState(err) {
					held[p] = err
					continue
				}
				p.answer(nil, 0, err)
				continue
			}
			if isAtomic {
				stampTx(pmsgs, pevs)
			}
			for i, ev := range pevs {
				ov.Apply(seq+uint64(i), ev)
			}
			p.evs, p.first = pevs, seq
			if p.tries == nil {
				p.tries = make(map[string][]*events.Event, 1)
			}
			p.tries[pevs[0].ID] = pevs
			msgs, evs = append(msgs, pmsgs...), append(evs, pevs...)
			owners = append(owners, p)
			inflight[pevs[0].ID] = p
		}
		if len(msgs) == 0 {
			if e.settleHeld(ctx, held, &fresh, inflight) {
				continue
			}
			return
		}
		// A replicated stream takes a group as one atomic batch, never as
		// a chain: see Engine.replicated. In a batch a subject may be
		// rolled up only by its first message (compact sees to that).
		batch := isAtomic || (e.replicated && len(msgs) > 1)
		plain := e.compact(ctx, msgs, evs, base, batch)

		wctx, cancel := attemptCtx(ctx, deadline)
		var n int
		var err error
		if batch {
			if _, err = jetstream.PublishFenced(wctx, e.js, base, msgs); err == nil {
				n = len(msgs)
			}
		} else {
			// No retry inside nats.go when no stream answers: this loop
			// retries, with its own backoff and within the write timeout.
			n, err = jetstream.PublishChain(wctx, e.js, base, msgs, natsjs.WithRetryAttempts(0))
		}
		cancel()
		// A chain stores a prefix: fold and answer it whatever came after.
		if n > 0 {
			e.mu.Lock()
			for i, ev := range evs[:n] {
				e.state.Apply(base+uint64(i)+1, ev)
			}
			e.folded.Store(e.state.Seq())
			e.mu.Unlock()
			e.progress.signal()
			e.written.Add(uint64(n))
			e.markWritten(base+uint64(n), evs[n-1])
			if e.comp.ttl > 0 {
				for _, i := range plain {
					if i < n {
						e.janitor.schedule(msgs[i].Subject, base+uint64(i)+1, time.Now().Add(e.comp.ttl))
					}
				}
			}
			for _, p := range owners {
				if last := p.first + uint64(len(p.evs)) - 1; last <= base+uint64(n) {
					p.answer(p.evs, p.first, nil)
				}
			}
		}
		if err == nil {
			if e.settleHeld(ctx, held, &fresh, inflight) {
				continue
			}
			return
		}
		// The server refused to store it: nothing was written, and trying
		// again would only be refused again. Say so at once.
		if refusal := refused(err); refusal != nil {
			e.refused.Add(1)
			e.warn.warn("engine: the server refused to store a write; nothing was written", "err", err)
			for _, p := range owners {
				if !p.done {
					p.answer(nil, 0, refusal)
				}
			}
			return
		}

		// Lost the fence, or the outcome is unknown: fold the log up to its
		// end. Commands whose events show up there are answered by fold;
		// the rest are validated again against the newer state.
		target := uint64(0)
		var fe *jetstream.FenceError
		lost := errors.As(err, &fe) || errors.Is(err, jetstream.ErrChainBroken)
		if lost {
			e.fenced.Add(1)
			if fe != nil {
				target = fe.Actual
			}
		} else {
			e.retried.Add(1)
			e.warn.warn("engine: write failed, checking the log for it", "err", err, "attempt", attempt)
		}
		if target == 0 {
			lctx, cancel := attemptCtx(ctx, deadline)
			var lerr error
			target, lerr = e.lastSeq(lctx)
			cancel()
			if lerr != nil && time.Now().After(deadline) {
				for _, p := range owners {
					if !p.done {
						p.answer(nil, 0, errorf(CodeTimeout, "write outcome unknown (%v, then %v); list to see whether it was applied", err, lerr))
					}
				}
				return
			}
			if lerr != nil {
				// No answer yet (the stream may be electing a leader): try
				// the write again, fenced on the same position.
				pause()
				continue
			}
		}
		if target < base && e.replicated {
			// A replicated stream's answer can come from a replica that
			// has not caught up, or a leader cut off by a partition that
			// has not stepped down yet: not proof that the log shrank.
			// Try again; the fence keeps every attempt from landing at a
			// sequence this engine has folded. (A restart still checks
			// the log against the high-water mark.)
			e.warn.warn("engine: the stream reports a shorter log than this engine has folded (a replica behind, or a partition); trying again",
				"streamLast", target, "folded", base)
			pause()
			continue
		}
		if target < base {
			// The log is shorter than what this engine has folded: it
			// lost its end under a running engine (a server restarted on
			// a damaged or older store).
			l := &logLoss{last: target, mark: base, where: "this engine's state"}
			e.refuseWrites(l)
			for _, p := range owners {
				if !p.done {
					p.answer(nil, 0, l.refusal())
				}
			}
			return
		}
		if err := e.catchUpAfterWrite(ctx, target, deadline, inflight); err != nil {
			e.warn.warn("engine: catching up after a failed write", "err", err)
		}
		if lost {
			time.Sleep(rand.N(backoffAfterLoss))
		} else {
			pause()
		}
	}
}

// tailGrace is how long a catch-up after a failed write waits for the
// tail before it reads the missing messages itself.
const tailGrace = 200 * time.Millisecond

// catchUpAfterWrite folds the log up to target after a write that failed,
// so that fold answers the commands whose events landed and the rest are
// validated again. The tail usually has the messages already. When it has
// not (its consumer may have sat on the server that just died, and nats.go
// takes up to tens of seconds to place a new one while the cluster elects
// a meta leader), the engine reads them itself (readBack), and waits for
// the tail only for what it could not read.
func (e *Engine) catchUpAfterWrite(ctx context.Context, target uint64, deadline time.Time, inflight map[string]*pending) error {
	cctx, cancel := context.WithTimeout(ctx, tailGrace)
	err := e.catchUp(cctx, target, inflight)
	cancel()
	if err == nil {
		return nil
	}
	e.readBack(ctx, target, deadline, inflight)
	if e.state.Seq() >= target {
		return nil
	}
	cctx, cancel = context.WithDeadline(ctx, later(deadline, time.Now().Add(attemptTimeout)))
	defer cancel()
	return e.catchUp(cctx, target, inflight)
}

// readBack reads the messages after the state's position up to target one
// by one (a direct get, which any replica may answer) and folds them. It
// stops at the first it cannot read (a replica lagging behind, the
// deadline); the tail delivers the rest.
func (e *Engine) readBack(ctx context.Context, target uint64, deadline time.Time, inflight map[string]*pending) {
	for seq := e.state.Seq() + 1; seq <= target; seq++ {
		gctx, cancel := attemptCtx(ctx, deadline)
		m, err := e.stream.GetMsg(gctx, seq)
		cancel()
		if err != nil {
			return
		}
		t := tailMsg{gen: e.tailGen.Load(), seq: seq, subject: m.Subject, stored: m.Time}
		e.fold(e.decodeLogMsg(t, m.Header, m.Data), inflight)
	}
}

// attemptTimeout bounds one attempt inside a write: a publish, or asking
// the stream where it is. Short, so that a write that meets a stream with
// no leader (after the leader's death the others elect one in 4-9 s) is
// tried again soon after there is one, rather than once the whole write
// timeout has passed. Trying again is safe: every attempt is fenced on the
// position the engine has folded, so a copy can never land twice.
const attemptTimeout = time.Second

// retryPause spaces out attempts that fail at once (no responders while a
// server restarts), so they do not spin.
const retryPause = 50 * time.Millisecond

// attemptCtx bounds one attempt by attemptTimeout and by the write's
// deadline, whichever comes first (but gives it at least retryPause).
func attemptCtx(ctx context.Context, deadline time.Time) (context.Context, context.CancelFunc) {
	return context.WithDeadline(ctx, later(time.Now().Add(retryPause), earlier(deadline, time.Now().Add(attemptTimeout))))
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// messages turns events into messages ready to publish.
func (e *Engine) messages(evs []*events.Event) ([]*nats.Msg, error) {
	out := make([]*nats.Msg, len(evs))
	for i, ev := range evs {
		m, err := e.subj.Message(ev)
		if err != nil {
			return nil, errorf(CodeInternal, "%v", err)
		}
		out[i] = nats.NewMsg(m.Subject)
		out[i].Data, out[i].Header = m.Data, nats.Header(m.Header)
	}
	return out, nil
}

// lastSeq asks the server for the stream's last sequence.
func (e *Engine) lastSeq(ctx context.Context) (uint64, error) {
	s, err := e.js.Stream(ctx, e.cfg.Stream)
	if err != nil {
		return 0, err
	}
	return s.CachedInfo().State.LastSeq, nil
}

// storageRefusals are the JetStream errors that say a write was refused,
// not lost, and would be refused again: the store or the account is full,
// the message is larger than the stream takes, the stream no longer takes
// writes. Nothing was written. (Other answers, such as an atomic batch
// that arrived incomplete, are worth another try.)
var storageRefusals = map[natsjs.ErrorCode]bool{
	10109: true, // invalid operation on sealed stream
	10174: true, // atomic publish is disabled
	10199: true, // atomic publish batch is too large
	10023: true, // insufficient resources (the server's max_file_store / max_memory_store)
	10002: true, // resource limits exceeded for account
	10047: true, // insufficient storage resources available
	10028: true, // insufficient memory resources available
	10077: true, // store failed: maximum bytes / messages exceeded, message too large
	10054: true, // message size exceeds maximum allowed
	10097: true, // header size exceeds maximum allowed
}

// refused returns the answer for a write the server refused outright, or
// nil when err leaves the outcome open or is a fence to retry.
func refused(err error) *Error {
	var apiErr *natsjs.APIError
	switch {
	case errors.As(err, &apiErr) && storageRefusals[apiErr.ErrorCode]:
		return errorf(CodeStorage, "the server refused to store the write: %s (JetStream error %d); nothing was written",
			apiErr.Description, apiErr.ErrorCode)
	case errors.Is(err, nats.ErrMaxPayload):
		return errorf(CodeStorage, "the write is larger than the server's max payload; nothing was written")
	}
	return nil
}

// dependsOnState reports a refusal that a newer state might not make: the
// callout or filter may exist there, or no longer.
func dependsOnState(err error) bool {
	var we *Error
	if !errors.As(err, &we) {
		return false
	}
	switch we.Code {
	case CodeAlreadyExists, CodeFilterNotFound, CodeCalloutNotFound, CodeInUse, CodeIncompatibleLayer:
		return true
	}
	return false
}

// settleHeld deals with the refusals commitRun held: if the log has moved
// past the state, it folds up to the log's end and reports true, to
// validate them again; otherwise (or once that was done) it answers them
// with their refusals. Either way the state a refusal is judged on
// includes every write acknowledged before the command arrived.
func (e *Engine) settleHeld(ctx context.Context, held map[*pending]error, fresh *bool, inflight map[string]*pending) bool {
	if len(held) == 0 {
		return false
	}
	if !*fresh {
		*fresh = true
		if last, err := e.lastSeq(ctx); err == nil && last > e.state.Seq() {
			if err := e.catchUp(ctx, last, inflight); err == nil {
				clear(held)
				return true
			}
		}
	}
	for p, err := range held {
		p.answer(nil, 0, err)
	}
	clear(held)
	return false
}
