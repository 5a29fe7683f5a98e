package callout

import (
	"context"
	"fmt"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/wfpnats/wfp/events"
)

// snapshot tracks the replay snapshot: the first left messages delivered
// by the consumer created at registration.
type snapshot struct {
	active   bool
	left     uint64 // snapshot messages still to come (count mode)
	consumer string // the server consumer that delivers the snapshot
	// until is set when the ordered consumer reset mid-snapshot: the new
	// consumer restarts from a stream sequence and delivers history as
	// well, so counting no longer finds the end. The snapshot then ends at
	// the last message on our subject when the reset was seen.
	until uint64
}

// dispatch handles one message: decides whether it belongs to the
// snapshot, hands it to the handler and acks it (durable).
func (a *Agent) dispatch(msg natsjs.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		a.skip(msg, 0, "message without JetStream metadata", err)
		a.ack(msg)
		return
	}
	seq := meta.Sequence.Stream
	if a.durable && seq <= a.lastSeq {
		// A redelivery of a message handled already (ack lost or late).
		a.n.duplicates.Add(1)
		a.ack(msg)
		return
	}
	initial := a.inSnapshot(meta)

	stop := a.keepAlive(msg)
	done := a.process(msg, seq, initial)
	stop()

	if a.durable {
		if !done {
			a.unfinished = msg // Close naks it (see durable.release)
			return
		}
		a.ack(msg)
		a.lastSeq = seq
	}
	a.advanceSnapshot(seq)
}

func (a *Agent) inSnapshot(meta *natsjs.MsgMetadata) bool {
	s := &a.snap
	if !s.active {
		return false
	}
	if s.until == 0 && meta.Consumer != s.consumer {
		s.until = a.lastOnSubject(meta.Sequence.Stream)
		a.log.Warn("consumer reset during the snapshot; it now ends at a stream sequence",
			"left", s.left, "until", s.until)
	}
	return true
}

func (a *Agent) advanceSnapshot(seq uint64) {
	s := &a.snap
	if !s.active {
		return
	}
	if s.until != 0 {
		s.active = seq < s.until
	} else {
		s.left--
		s.active = s.left > 0
	}
	if !s.active {
		a.log.Info("synced")
		a.markSynced()
	}
}

// lastOnSubject is the stream sequence of the newest message on the
// callout's filter subject, or seq if it cannot be read.
func (a *Agent) lastOnSubject(seq uint64) uint64 {
	ctx, cancel := context.WithTimeout(a.ctx, apiTimeout)
	defer cancel()
	m, err := a.stream.GetLastMsgForSubject(ctx, a.subject)
	if err != nil {
		a.log.Warn("cannot read the last sequence; ending the snapshot here", "err", err)
		return seq
	}
	return max(m.Sequence, seq)
}

// process decodes the event and calls the handler. It reports false only
// when Close interrupted an AddFilter that had not succeeded.
func (a *Agent) process(msg natsjs.Msg, seq uint64, initial bool) bool {
	ev, err := events.Decode(msg.Data())
	switch {
	case err != nil:
		a.skip(msg, seq, "undecodable payload", err)
		return true
	case !ev.Known():
		a.skip(msg, seq, "unknown event type or schema", nil, "type", ev.Type, "schema", ev.Schema)
		return true
	case ev.Type != events.FilterAdded && ev.Type != events.FilterDeleted:
		a.skip(msg, seq, "not a filter event", nil, "type", ev.Type)
		return true
	case ev.Filter.CalloutKey != a.key:
		a.skip(msg, seq, "filter names another callout", nil, "filterCallout", ev.Filter.CalloutKey)
		return true
	}
	if ev.Type == events.FilterAdded {
		return a.add(msg, seq, ev.Filter, initial)
	}
	a.remove(seq, ev.Filter, initial)
	return true
}

// add calls AddFilter until it succeeds or the agent closes. The stream
// sequence of the add is the filter id, whatever the payload says.
func (a *Agent) add(msg natsjs.Msg, seq uint64, ef *events.Filter, initial bool) bool {
	if ef.ID != seq {
		if ef.ID != 0 {
			a.log.Warn("filter id in payload differs from stream sequence; using the sequence",
				"subject", msg.Subject(), "seq", seq, "payloadId", ef.ID)
		}
		ef.ID = seq
	}
	if _, held := a.filters.get(seq); held {
		a.n.duplicates.Add(1)
		return true
	}
	b := a.o.newBackoff()
	for {
		// A fresh Filter per attempt: a failed attempt's Context is not ours
		// to keep.
		f := &Filter{Filter: *ef.Clone(), Initial: initial}
		err := a.call(AddFilter, f)
		if err == nil {
			a.filters.put(f)
			a.n.adds.Add(1)
			return true
		}
		a.n.handlerErrors.Add(1)
		d := b.wait()
		a.log.Warn("AddFilter failed; retrying", "filterKey", f.Key, "filterId", f.ID, "seq", seq, "err", err, "in", d)
		if !a.sleep(d) {
			a.log.Info("closed before AddFilter succeeded", "filterKey", f.Key, "filterId", f.ID)
			return false
		}
		a.n.retries.Add(1)
	}
}

// remove hands the filter's Context back with DeleteFilter, once. In the
// replay snapshot a delete of a filter never held is a tombstone of a
// filter deleted before we looked: nothing to tell. Live, it is a filter
// added before we registered, told with a nil Context (R4).
func (a *Agent) remove(seq uint64, ef *events.Filter, initial bool) {
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
	f := &Filter{Filter: *ef.Clone(), Initial: initial}
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

func (a *Agent) ack(msg natsjs.Msg) {
	if !a.durable {
		return
	}
	if err := msg.Ack(); err != nil {
		a.log.Warn("ack failed", "subject", msg.Subject(), "err", err)
	}
}

// keepAlive tells the server, while the handler runs long, that the
// message is still being worked on, so it is not redelivered meanwhile.
func (a *Agent) keepAlive(msg natsjs.Msg) (stop func()) {
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
				if err := msg.InProgress(); err != nil {
					a.log.Debug("in-progress ack failed", "err", err)
				}
			case <-quit:
				return
			}
		}
	}()
	return func() { close(quit); <-exited }
}
