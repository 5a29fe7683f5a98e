package callout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/events"
)

// Resync, informer style. An agent that may have missed deletes (see
// horizon.go) stops trusting the log's history and compares what it holds
// with the log's current state instead:
//
//  1. it stops its consumer and reads a snapshot: the last message of each
//     of its callout's subjects, as a replay agent does;
//  2. every filter it holds that the snapshot does not show live (deleted,
//     or its key added again since as another filter) gets DeleteFilter,
//     with its Context, once (R6), as if the delete had been read;
//  3. every live filter it lacks that was added after the last message it
//     had read gets AddFilter, marked Initial: those it would have been
//     told about. Filters added before that were offered already (or, for
//     a live agent, existed before it registered: R2);
//  4. it goes on live from the snapshot's end.
//
// A durable agent's new process holds nothing and has read nothing, so a
// resync at its start delivers every live filter: the agent cannot tell
// what it was told before it stopped, nor what was deleted while it was
// away longer than the horizon; its handler reconciles its own records
// against these adds.

// snapEntry is the last message of one filter subject.
type snapEntry struct {
	msg natsjs.Msg
	seq uint64
	d   *delivery
	ev  *events.Event // FilterAdded or FilterDeleted: &d.ev
}

// snapshotIdle is how long a snapshot read waits for a message before it
// asks the server whether any is left (some counted at the start may
// have left the stream since).
const snapshotIdle = 250 * time.Millisecond

// resync runs on the notify goroutine. An error (the server cannot be
// reached) leaves the agent as it was, to try again at the next check.
func (a *Agent) resync(why string) {
	a.n.resyncs.Add(1)
	before := a.seen
	a.log.Warn("resyncing from a snapshot: the log may no longer show every delete", "why", why,
		"caughtUp", a.hz.caught, "horizon", a.hz.h, "lastSeen", before)
	start := time.Now()
	ctx, cancel := context.WithTimeout(a.ctx, 2*apiTimeout)
	defer cancel()
	snap, maxSeq, err := a.readSnapshot(ctx)
	if err != nil {
		a.log.Warn("resync: cannot read the snapshot; trying again later", "err", err)
		return
	}
	// Parts of a transaction held so far are in the snapshot, or gone.
	a.asm.held, a.asm.broken = nil, ""
	a.n.heldTxParts.Store(0)

	// 2: what the agent holds that is gone.
	var gone []*Filter
	for f := range a.filters.all() {
		if e, ok := snap[f.Key]; !ok || e.ev.Type != events.FilterAdded || e.seq != f.ID {
			gone = append(gone, f)
		}
	}
	slices.SortFunc(gone, func(x, y *Filter) int { return cmpUint(x.ID, y.ID) })
	for _, f := range gone {
		if a.isClosing() {
			return
		}
		a.release(f, "resync: no longer in the log (deleted while this agent was not reading)")
	}
	// 3: what it lacks and would have been told about.
	var lacking []snapEntry
	for _, e := range snap {
		if e.ev.Type != events.FilterAdded || e.seq <= before {
			continue
		}
		if _, held := a.filters.get(e.seq); !held {
			lacking = append(lacking, e)
		}
	}
	slices.SortFunc(lacking, func(x, y snapEntry) int { return cmpUint(x.seq, y.seq) })
	for _, e := range lacking {
		if a.isClosing() {
			return
		}
		if ok, _ := a.add(e.d.subject, e.seq, e.d.f, true); !ok {
			return
		}
	}

	// 4: on from the snapshot's end.
	from := max(maxSeq, before) + 1
	a.seen = from - 1
	a.restartSource(from)
	a.hz.set(start)
	a.recordCaughtUp(true)
	if a.snap.active {
		a.snap.active = false
		a.markSynced()
	}
	a.log.Info("resynced", "released", len(gone), "added", len(lacking), "liveFrom", from)
}

func cmpUint(x, y uint64) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// release takes f off the table and hands its Context back with a
// DeleteFilter the agent makes up: the real delete is no longer in the
// log, or was replaced before the agent read it.
func (a *Agent) release(f *Filter, reason string) {
	held, ok := a.filters.take(f.ID)
	if !ok {
		return
	}
	d := &Filter{Filter: *held.Filter.Clone(), Context: held.Context, Reason: reason}
	if err := a.call(DeleteFilter, d); err != nil {
		a.n.handlerErrors.Add(1)
		a.log.Warn("DeleteFilter failed; the filter is deleted anyway", "filterKey", d.Key, "filterId", d.ID, "err", err)
	}
	a.n.deletes.Add(1)
}

// readSnapshot reads the last message of each of the callout's filter
// subjects: by key, the newest filter event, and the highest sequence
// read. It reads through a consumer of the agent's own name
// (events.AgentConsumer), so an agent confined by its permissions may make
// it; a live or replay agent reading a consumer of that name (a snapshot,
// a catch-up) lets it go first. A durable agent's durable has another
// name.
func (a *Agent) readSnapshot(ctx context.Context) (map[string]snapEntry, uint64, error) {
	if !a.durable && a.src != nil {
		a.releaseReader(a.src)
		a.src, a.catchingUp = nil, false
	}
	name := events.AgentConsumer(a.key, a.id)
	if err := a.js.DeleteConsumer(ctx, a.o.stream, name); err != nil && !errors.Is(err, natsjs.ErrConsumerNotFound) {
		return nil, 0, fmt.Errorf("snapshot consumer: replace %q: %w", name, err)
	}
	cons, err := a.js.CreateConsumer(ctx, a.o.stream, agentConfig(name, a.subject, a.key, a.id, natsjs.DeliverLastPerSubjectPolicy))
	if err != nil {
		return nil, 0, fmt.Errorf("snapshot consumer: %w", err)
	}
	info := cons.CachedInfo()
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), apiTimeout)
		defer cancel()
		_ = a.js.DeleteConsumer(dctx, a.o.stream, name)
	}()
	it, err := cons.Messages(messagesOpts...)
	if err != nil {
		return nil, 0, err
	}
	defer it.Stop()
	snap := make(map[string]snapEntry, info.NumPending)
	var maxSeq uint64
	for left := info.NumPending; left > 0; {
		if a.isClosing() {
			return nil, 0, errStopped
		}
		m, err := it.Next(natsjs.NextMaxWait(snapshotIdle))
		if errors.Is(err, nats.ErrTimeout) {
			if ctx.Err() != nil {
				return nil, 0, ctx.Err()
			}
			ci, err := cons.Info(ctx)
			if errors.Is(err, natsjs.ErrConsumerNotFound) {
				return nil, 0, err // taken away mid-read: the next check tries again
			}
			if err == nil && ci.NumPending == 0 {
				break // the rest left the stream before it was read
			}
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		left--
		d := consumed(m, 0)
		if errors.Is(d.err, errNoMetadata) {
			continue
		}
		maxSeq = max(maxSeq, d.seq)
		if d.pending == 0 {
			left = 0
		}
		ev := &d.ev
		if d.err != nil || !ev.Known() || (ev.Type != events.FilterAdded && ev.Type != events.FilterDeleted) || d.f == nil || ev.Filter.CalloutKey != a.key {
			a.n.skipped.Add(1)
			continue
		}
		if ev.Type == events.FilterAdded {
			ev.Filter.ID = d.seq
		}
		if e, ok := snap[ev.Filter.Key]; !ok || e.seq < d.seq {
			snap[ev.Filter.Key] = snapEntry{seq: d.seq, d: d, ev: ev}
		}
		if ctx.Err() != nil {
			return nil, 0, ctx.Err()
		}
	}
	return snap, maxSeq, nil
}

// restartSource goes on from stream sequence from: a durable agent makes
// its consumer anew there (its reader starts from the first message not
// handled); a live or replay agent reads its live subscription from there.
func (a *Agent) restartSource(from uint64) {
	a.lastSeq.Store(max(a.lastSeq.Load(), from-1))
	if a.durable {
		a.src.suspend()
		return
	}
	a.goLive()
}
