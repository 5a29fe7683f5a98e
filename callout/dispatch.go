package callout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/jetstream"
)

// dispatch takes one message, decoded by its feed, and delivers what it
// completes: the pipeline is the redelivery check, then snapshot or
// transaction assembly, then the handler.
func (a *Agent) dispatch(d *delivery) {
	if errors.Is(d.err, errNoMetadata) {
		a.skip(d, 0, "message without JetStream metadata", d.err)
		return
	}
	seq := d.seq
	if seq > a.seen {
		a.hz.learn(d.header.Get(events.HeaderHorizon)) // the newest event tells
	}
	if a.hz.on() {
		if a.hz.stale(time.Now()) {
			// Messages before this one may have left the log unread: the
			// snapshot the resync takes covers this one too.
			a.resync("the agent fell further behind the log than its horizon")
			return
		}
		a.hz.advance(d.stored)
		defer a.recordCaughtUp(false)
	}
	a.seen = max(a.seen, seq)
	if a.durable && seq <= a.lastSeq.Load() {
		// A redelivery of a message handled and acked already (ack lost or
		// late). Acking it again acks nothing new.
		a.n.duplicates.Add(1)
		a.ack(d)
		return
	}
	it := item{d: d, seq: seq, initial: a.snap.contains(seq, d.gen, a.lastOnSubject, a.log), last: d.msg != nil && d.pending == 0}
	// The common cases, without the assembler's slices: a snapshot item,
	// and a message outside any transaction with none held.
	if it.initial {
		if id, _, _, ok := a.txHeaders(d, seq, false); ok {
			a.snap.lastTx = id
		}
		a.deliverOne(it)
		return
	}
	if !a.asm.holding() {
		if _, _, _, tx := a.txHeaders(d, seq, true); !tx {
			a.deliverOne(it)
			return
		}
	}
	for _, u := range a.units(it) {
		if !a.deliver(u) {
			return // closing
		}
	}
}

// units turns one live message into the units it completes. (A snapshot
// item is a unit of its own: the snapshot is committed state, the last
// message of each filter, and a transaction's other parts may have been
// superseded since, so there is nothing to wait for.)
func (a *Agent) units(it item) []unit {
	id, i, n, ok := a.txHeaders(it.d, it.seq, true)
	return a.asm.push(it, id, i, n, ok)
}

// deliverOne is deliver of a unit of one message outside any
// transaction.
func (a *Agent) deliverOne(it item) bool {
	ok := !a.isClosing()
	if ok {
		var stop func()
		if a.durable {
			stop = a.keepAlive(it.d.msg)
		}
		ok, _ = a.process(it)
		if stop != nil {
			stop()
		}
	}
	if !ok {
		a.log.Info("closed in the middle of a delivery; it is not acknowledged", "seq", it.seq)
		return false
	}
	a.handled(it)
	a.counted(it)
	return true
}

// handled records the last item of a unit the handler is done with: a
// durable agent acks it (and with it the unit), and the snapshot counts
// it.
func (a *Agent) handled(last item) {
	a.lastSeq.Store(last.seq)
	a.n.position.Store(max(a.n.position.Load(), last.seq))
	if a.durable {
		a.ack(last.d)
		a.lastAcked = last.d.msg
	}
}

// counted counts a snapshot item handled; the last one syncs the agent,
// and a live or replay agent goes on with its live subscription.
func (a *Agent) counted(it item) {
	if !it.initial {
		return
	}
	a.n.snapDone.Add(1)
	if !a.snap.advance(it.seq, it.last) {
		return
	}
	a.asm.broken = a.snap.lastTx
	// Now the snapshot's messages are known for what they are: filters
	// held, and tombstones of filters deleted before.
	a.log.Info("synced", "filters", a.filters.len(), "tombstones", a.n.tombstones.Load(),
		"refused", a.n.refused.Load(), "skipped", a.n.skipped.Load(), "took", time.Since(a.started).Round(time.Millisecond))
	a.markSynced()
	if !a.durable {
		a.goLive()
	}
}

// deliver hands a unit to the handler, in log order, with post-commit
// notifications after a transaction's for agents that asked. A durable
// agent acks the unit's last message once the handler is done with all of
// it (the consumer acks all before it), so a unit cut short comes again
// whole. It reports false when Close interrupted the unit.
func (a *Agent) deliver(u unit) bool {
	var msgs []natsjs.Msg
	if a.durable {
		msgs = make([]natsjs.Msg, len(u.items))
		for i, it := range u.items {
			msgs[i] = it.d.msg
		}
	}
	stop := a.keepAlive(msgs...)
	var added []uint64
	done := true
	for _, it := range u.items {
		if a.isClosing() {
			done = false
			break
		}
		ok, id := a.process(it)
		if !ok {
			done = false
			break
		}
		if id != 0 {
			added = append(added, id)
		}
	}
	if done && u.tx && a.o.postCommit {
		a.postCommit(added)
	}
	stop()
	if !done {
		a.log.Info("closed in the middle of a delivery; it is not acknowledged",
			"firstSeq", u.items[0].seq, "lastSeq", u.items[len(u.items)-1].seq)
		return false
	}
	a.handled(u.items[len(u.items)-1])
	if u.tx {
		a.n.transactions.Add(1)
	}
	for _, it := range u.items {
		a.counted(it)
	}
	return true
}

// lastOnSubject is the stream sequence of the newest message on the
// callout's filter subject, or seq if it cannot be read.
func (a *Agent) lastOnSubject(seq uint64) uint64 {
	ctx, cancel := context.WithTimeout(a.ctx, apiTimeout)
	defer cancel()
	last, err := lastSeqOn(ctx, a.nc, a.js, a.o.stream, a.subject)
	if err != nil {
		a.log.Warn("cannot read the last sequence; ending the snapshot here", "err", err)
		return seq
	}
	return max(last, seq)
}

// lastSeqOn is the stream sequence of the newest message on subject (0
// when there is none).
func lastSeqOn(ctx context.Context, nc *nats.Conn, js natsjs.JetStream, stream, subject string) (uint64, error) {
	m, err := lastOn(ctx, nc, js, stream, subject)
	return m.seq, err
}

// newest is what lastOn reads of the newest message on a subject.
type newest struct {
	seq     uint64 // 0: there is none
	horizon string // its events.HeaderHorizon
}

// lastOn reads the newest message on subject. It asks with a direct get
// whose API subject names the filter subject (not a stream info or a
// request body), so that an agent's permissions can allow it for its own
// callout only.
func lastOn(ctx context.Context, nc *nats.Conn, js natsjs.JetStream, stream, subject string) (newest, error) {
	m, err := nc.RequestWithContext(ctx, jetstream.APISubject(js, "DIRECT.GET."+stream+"."+subject), nil)
	if err != nil {
		return newest{}, err
	}
	if m.Header.Get("Status") == "404" {
		return newest{}, nil
	}
	last, err := strconv.ParseUint(m.Header.Get(natsjs.SequenceHeader), 10, 64)
	if err != nil {
		return newest{}, fmt.Errorf("direct get of %s: no message: %s %s", subject, m.Header.Get("Status"), m.Header.Get("Description"))
	}
	return newest{seq: last, horizon: m.Header.Get(events.HeaderHorizon)}, nil
}

// process calls the handler for the event its feed decoded. ok is false
// only when Close interrupted an AddFilter; added is the filter id when
// the event is an add of a filter the agent now holds.
func (a *Agent) process(it item) (ok bool, added uint64) {
	d, seq := it.d, it.seq
	ev := &d.ev
	switch {
	case d.err != nil:
		a.skip(d, seq, "undecodable payload", d.err)
		return true, 0
	case !ev.Known():
		a.skip(d, seq, "unknown event type or schema", nil, "type", ev.Type, "schema", ev.Schema)
		return true, 0
	case ev.Type != events.FilterAdded && ev.Type != events.FilterDeleted || d.f == nil:
		a.skip(d, seq, "not a filter event", nil, "type", ev.Type)
		return true, 0
	case ev.Filter.CalloutKey != a.key:
		a.skip(d, seq, "filter names another callout", nil, "filterCallout", ev.Filter.CalloutKey)
		return true, 0
	}
	if ev.Type == events.FilterAdded {
		return a.add(d.subject, seq, d.f, it.initial)
	}
	a.remove(seq, d.f, ev.Reason, it.initial)
	return true, 0
}

// add calls AddFilter once. The stream sequence of the add is the filter
// id, whatever the payload says. Success: the agent holds the filter. An
// error: the callout refuses it (R7), the agent does not hold it and, for
// a live add, the engine is told and takes it back. Either way a live add
// is answered with a NotifyResult. f was decoded for this call alone: the
// agent holds it as it is.
func (a *Agent) add(subject string, seq uint64, f *Filter, initial bool) (bool, uint64) {
	if f.ID != seq {
		if f.ID != 0 {
			a.log.Warn("filter id in payload differs from stream sequence; using the sequence",
				"subject", subject, "seq", seq, "payloadId", f.ID)
		}
		f.ID = seq
	}
	if _, held := a.filters.get(seq); held {
		a.n.duplicates.Add(1)
		return true, seq
	}
	if old, ok := a.filters.getKey(f.Key); ok && old.ID < seq {
		// The key was deleted and added again, and the delete is no
		// longer in the log (this add's own delete rolled it up).
		a.release(old, superseded)
	}
	f.Initial = initial
	err := a.call(AddFilter, f)
	if err != nil && a.isClosing() {
		// Most likely the handler gave up because Close cancelled its ctx:
		// that is no answer about the filter. A durable agent's next run
		// gets the message again.
		a.log.Info("closed before AddFilter finished", "filterKey", f.Key, "filterId", f.ID, "err", err)
		return false, 0
	}
	if !initial {
		a.publishResult(f, err)
	}
	if err != nil {
		// f, and the Context the call may have set, are dropped.
		a.n.handlerErrors.Add(1)
		a.n.refused.Add(1)
		a.log.Warn("AddFilter failed: the filter is refused and not held", "filterKey", f.Key, "filterId", f.ID,
			"seq", seq, "initial", initial, "err", err)
		return true, 0
	}
	a.filters.put(f)
	a.n.adds.Add(1)
	return true, seq
}

// publishResult answers a live AddFilter to the engines (R7).
func (a *Agent) publishResult(f *Filter, herr error) {
	r := events.NotifyResult{AgentID: a.id, CalloutKey: a.key, Instance: a.instance, FilterKey: f.Key, FilterID: f.ID}
	if herr != nil {
		r.Error = herr.Error()
	}
	data, err := json.Marshal(r)
	if err == nil {
		err = a.nc.Publish(a.subj.Result(a.key, a.id), data)
	}
	if err != nil {
		a.log.Warn("could not send the AddFilter result to the engine", "filterKey", f.Key, "filterId", f.ID, "err", err)
	}
}

// postCommit tells the handler, after a transaction's notifications, of
// each filter the transaction added that the agent holds now: refused
// ones and ones the transaction deleted again are not held.
func (a *Agent) postCommit(ids []uint64) {
	for _, id := range ids {
		if a.isClosing() {
			return
		}
		held, ok := a.filters.get(id)
		if !ok {
			continue
		}
		f := &Filter{Filter: *held.Filter.Clone(), Context: held.Context}
		a.n.postCommits.Add(1)
		if err := a.call(AddFilterPostCommit, f); err != nil {
			a.n.handlerErrors.Add(1)
			a.log.Warn("AddFilterPostCommit failed", "filterKey", f.Key, "filterId", f.ID, "err", err)
		}
	}
}

// superseded is the Reason of a DeleteFilter the agent makes up for a
// filter whose key a later event names with a newer filter id: the filter
// was deleted (a key is live once at most), and that delete was rolled up
// before the agent read it.
const superseded = "deleted: a newer filter of the same key followed, and the delete in between is no longer in the log"

// remove hands the filter's Context back with DeleteFilter, once. In the
// replay snapshot a delete of a filter never held is a tombstone of a
// filter deleted before we looked: nothing to tell. Live, it is a filter
// added before we registered, or one we refused, told with a nil Context
// (R4).
func (a *Agent) remove(seq uint64, f *Filter, reason string, initial bool) {
	ef := &f.Filter
	var held *Filter
	var ok bool
	if ef.ID != 0 {
		held, ok = a.filters.take(ef.ID)
		if old, found := a.filters.getKey(ef.Key); !ok && found && old.ID < ef.ID {
			// An older filter of the same key, whose own delete a later
			// roll-up of the subject took out of the log unread.
			a.release(old, superseded)
		}
	} else {
		held, ok = a.filters.takeKey(ef.Key)
	}
	if initial && !ok {
		a.n.tombstones.Add(1)
		return
	}
	// f was decoded for this call alone: it is handed over as it is.
	f.Initial, f.Reason = initial, reason
	if ok {
		f.Context = held.Context
		f.ID = held.ID
	}
	if err := a.call(DeleteFilter, f); err != nil {
		a.n.handlerErrors.Add(1)
		a.log.Warn("DeleteFilter failed; the filter is deleted anyway", "filterKey", f.Key, "filterId", f.ID, "seq", seq, "err", err)
	}
	a.n.deletes.Add(1)
}

// call runs the handler; a panic becomes an error so one bad filter cannot
// take the agent down.
func (a *Agent) call(t NotifyType, f *Filter) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrHandlerPanic, r)
		}
	}()
	return a.h.Notify(a.ctx, t, f)
}

// skip logs and counts an event the agent does not act on (R5).
func (a *Agent) skip(d *delivery, seq uint64, why string, err error, attrs ...any) {
	a.n.skipped.Add(1)
	attrs = append(attrs, "subject", d.subject, "seq", seq)
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	a.log.Warn("skipping event: "+why, attrs...)
}

// ack acknowledges msg and, the durable consumer's ack policy being
// AckAll, every message before it.
func (a *Agent) ack(d *delivery) {
	if !a.durable || d.msg == nil {
		return
	}
	if err := d.msg.Ack(); err != nil {
		a.log.Warn("ack failed", "subject", d.subject, "err", err)
	}
}

// keepAlive tells the server, while the handler works through a unit,
// that its messages are still being worked on, so none is redelivered
// meanwhile.
func (a *Agent) keepAlive(msgs ...natsjs.Msg) (stop func()) {
	if !a.durable {
		return func() {}
	}
	quit, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(durableAckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				for _, m := range msgs {
					if err := m.InProgress(); err != nil {
						a.log.Debug("in-progress ack failed", "err", err)
					}
				}
			case <-quit:
				return
			}
		}
	}()
	return func() { close(quit); <-exited }
}
