package callout

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/jetstream"
)

// dispatch takes one message from the consumer and delivers what it
// completes: the pipeline is metadata, then redelivery check, then
// snapshot or transaction assembly, then the handler.
func (a *Agent) dispatch(msg natsjs.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		a.skip(msg, 0, "message without JetStream metadata", err)
		return
	}
	seq := meta.Sequence.Stream
	if a.durable && seq <= a.lastSeq {
		// A redelivery of a message handled and acked already (ack lost or
		// late). Acking it again acks nothing new.
		a.n.duplicates.Add(1)
		a.ack(msg)
		return
	}
	for _, u := range a.units(item{msg: msg, seq: seq, initial: a.snap.contains(meta, a.src.gen, a.lastOnSubject, a.log)}) {
		if !a.deliver(u) {
			return // closing
		}
	}
}

// units turns one message into the units it completes. The snapshot is
// committed state, the last message of each filter: a transaction's other
// parts may have been superseded since, so there is nothing to wait for.
func (a *Agent) units(it item) []unit {
	if it.initial {
		if id, _, _, ok := a.txHeaders(it.msg, it.seq, false); ok {
			a.snap.lastTx = id
		}
		return []unit{single(it)}
	}
	id, i, n, ok := a.txHeaders(it.msg, it.seq, true)
	return a.asm.push(it, id, i, n, ok)
}

// deliver hands a unit to the handler, in log order, with post-commit
// notifications after a transaction's for agents that asked. A durable
// agent acks the unit's last message once the handler is done with all of
// it (the consumer acks all before it), so a unit cut short comes again
// whole. It reports false when Close interrupted the unit.
func (a *Agent) deliver(u unit) bool {
	msgs := make([]natsjs.Msg, len(u.items))
	for i, it := range u.items {
		msgs[i] = it.msg
	}
	stop := a.keepAlive(msgs)
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
	last := u.items[len(u.items)-1]
	a.lastSeq = last.seq
	a.n.position.Store(max(a.n.position.Load(), last.seq))
	if a.durable {
		a.ack(last.msg)
		a.lastAcked = last.msg
	}
	if u.tx {
		a.n.transactions.Add(1)
	}
	for _, it := range u.items {
		if !it.initial {
			continue
		}
		a.n.snapDone.Add(1)
		if a.snap.advance(it.seq) {
			a.asm.broken = a.snap.lastTx
			// Now the snapshot's messages are known for what they are:
			// filters held, and tombstones of filters deleted before.
			a.log.Info("synced", "filters", a.filters.len(), "tombstones", a.n.tombstones.Load(),
				"refused", a.n.refused.Load(), "skipped", a.n.skipped.Load(), "took", time.Since(a.started).Round(time.Millisecond))
			a.markSynced()
		}
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
// when there is none). It asks with a direct get whose API subject names
// the filter subject (not a stream info or a request body), so that an
// agent's permissions can allow it for its own callout only.
func lastSeqOn(ctx context.Context, nc *nats.Conn, js natsjs.JetStream, stream, subject string) (uint64, error) {
	m, err := nc.RequestWithContext(ctx, jetstream.APISubject(js, "DIRECT.GET."+stream+"."+subject), nil)
	if err != nil {
		return 0, err
	}
	if m.Header.Get("Status") == "404" {
		return 0, nil
	}
	last, err := strconv.ParseUint(m.Header.Get(natsjs.SequenceHeader), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("direct get of %s: no message: %s %s", subject, m.Header.Get("Status"), m.Header.Get("Description"))
	}
	return last, nil
}

// process decodes the event and calls the handler. ok is false only when
// Close interrupted an AddFilter; added is the filter id when the event
// is an add of a filter the agent now holds.
func (a *Agent) process(it item) (ok bool, added uint64) {
	msg, seq := it.msg, it.seq
	ev, err := events.Decode(msg.Data())
	switch {
	case err != nil:
		a.skip(msg, seq, "undecodable payload", err)
		return true, 0
	case !ev.Known():
		a.skip(msg, seq, "unknown event type or schema", nil, "type", ev.Type, "schema", ev.Schema)
		return true, 0
	case ev.Type != events.FilterAdded && ev.Type != events.FilterDeleted:
		a.skip(msg, seq, "not a filter event", nil, "type", ev.Type)
		return true, 0
	case ev.Filter.CalloutKey != a.key:
		a.skip(msg, seq, "filter names another callout", nil, "filterCallout", ev.Filter.CalloutKey)
		return true, 0
	}
	if ev.Type == events.FilterAdded {
		return a.add(msg, seq, ev.Filter, it.initial)
	}
	a.remove(seq, ev.Filter, ev.Reason, it.initial)
	return true, 0
}

// add calls AddFilter once. The stream sequence of the add is the filter
// id, whatever the payload says. Success: the agent holds the filter. An
// error: the callout refuses it (R7), the agent does not hold it and, for
// a live add, the engine is told and takes it back. Either way a live add
// is answered with a NotifyResult.
func (a *Agent) add(msg natsjs.Msg, seq uint64, ef *events.Filter, initial bool) (bool, uint64) {
	if ef.ID != seq {
		if ef.ID != 0 {
			a.log.Warn("filter id in payload differs from stream sequence; using the sequence",
				"subject", msg.Subject(), "seq", seq, "payloadId", ef.ID)
		}
		ef.ID = seq
	}
	if _, held := a.filters.get(seq); held {
		a.n.duplicates.Add(1)
		return true, seq
	}
	// ef was decoded for this call alone: the Filter takes it over, no copy.
	f := &Filter{Filter: *ef, Initial: initial}
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

// remove hands the filter's Context back with DeleteFilter, once. In the
// replay snapshot a delete of a filter never held is a tombstone of a
// filter deleted before we looked: nothing to tell. Live, it is a filter
// added before we registered, or one we refused, told with a nil Context
// (R4).
func (a *Agent) remove(seq uint64, ef *events.Filter, reason string, initial bool) {
	var held *Filter
	var ok bool
	if ef.ID != 0 {
		held, ok = a.filters.take(ef.ID)
	} else {
		held, ok = a.filters.takeKey(ef.Key)
	}
	if initial && !ok {
		a.n.tombstones.Add(1)
		return
	}
	f := &Filter{Filter: *ef.Clone(), Initial: initial, Reason: reason}
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
func (a *Agent) skip(msg natsjs.Msg, seq uint64, why string, err error, attrs ...any) {
	a.n.skipped.Add(1)
	attrs = append(attrs, "subject", msg.Subject(), "seq", seq)
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	a.log.Warn("skipping event: "+why, attrs...)
}

// ack acknowledges msg and, the durable consumer's ack policy being
// AckAll, every message before it.
func (a *Agent) ack(msg natsjs.Msg) {
	if !a.durable {
		return
	}
	if err := msg.Ack(); err != nil {
		a.log.Warn("ack failed", "subject", msg.Subject(), "err", err)
	}
}

// keepAlive tells the server, while the handler works through a unit,
// that its messages are still being worked on, so none is redelivered
// meanwhile.
func (a *Agent) keepAlive(msgs []natsjs.Msg) (stop func()) {
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
