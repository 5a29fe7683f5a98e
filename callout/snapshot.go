package callout

import (
	"context"
	"log/slog"
)

// snapshot tracks the replay snapshot: the first left messages delivered
// by the consumer created at registration.
type snapshot struct {
	active bool
	left   uint64 // snapshot messages still to come (count mode)
	gen    uint64 // the reader's consumer that delivers the snapshot
	// until is set when the consumer was recreated mid-snapshot: the new
	// consumer restarts from a stream sequence and delivers history as
	// well, so counting no longer finds the end. The snapshot then ends at
	// the last message on our subject when the reset was seen.
	until uint64
	// lastTx is the last transaction seen in the snapshot: one being
	// written as the snapshot was taken may have its first parts in it and
	// the rest live.
	lastTx string
}

// contains reports whether a message belongs to the snapshot. On the first
// message from another consumer (gen: the reader recreated it) it asks
// lastOnSubject where the snapshot ends.
func (s *snapshot) contains(seq, gen uint64, lastOnSubject func(seq uint64) uint64, log *slog.Logger) bool {
	if !s.active {
		return false
	}
	if s.until == 0 && gen != s.gen {
		s.until = lastOnSubject(seq)
		log.Warn("consumer reset during the snapshot; it now ends at a stream sequence", "left", s.left, "until", s.until)
	}
	return true
}

// advance counts a snapshot message handled; it reports whether that
// ended the snapshot. last (the server had nothing after it) ends it in
// any case: messages counted at the start can leave the stream before
// they are read (a delete rolls up an add, a tombstone's horizon passes),
// so the count alone may never be reached.
func (s *snapshot) advance(seq uint64, last bool) (ended bool) {
	if !s.active {
		return false
	}
	if last {
		s.active = false
		return true
	}
	if s.until != 0 {
		s.active = seq < s.until
	} else {
		s.left--
		s.active = s.left > 0
	}
	return !s.active
}

// drained reports whether the snapshot's consumer has nothing left to
// deliver: the messages still counted left the stream before they were
// read. Asked when the snapshot stalls.
//
// Nothing pending on the server is not enough: it has handed over what
// it delivered, which may still wait in the client's buffers, unread by
// the handler (a busy process, a slow handler). The snapshot has ended
// only once the agent has handled the last message delivered.
func (a *Agent) snapshotDrained() bool {
	ctx, cancel := context.WithTimeout(a.ctx, apiTimeout)
	defer cancel()
	c, err := a.js.Consumer(ctx, a.o.stream, a.src.name())
	if err != nil {
		return false
	}
	ci := c.CachedInfo()
	return ci.NumPending == 0 && ci.Delivered.Stream <= a.seen
}
