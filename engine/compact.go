package engine

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/jetstream"
)

// Compaction. Every delete the engine writes replaces its subject's
// history and leaves after the horizon, so the log holds the live state
// plus the recent deletes and every reader's cost follows the state, not
// the history:
//
//   - a tombstone carries Nats-Rollup: sub (the server drops the add
//     before it) and Nats-TTL = the horizon;
//   - except when it cannot: a second message on one subject in an atomic
//     batch may not roll it up (a filter added and deleted in one
//     transaction), and with an archive a roll-up waits until the archive
//     has what it drops. Such a plain tombstone carries no TTL either (the
//     add behind it would be the subject's last message again once it
//     left); the janitor purges the subject, add and tombstone, once the
//     horizon has passed, as the TTL would have.

// compaction is what the writer needs to decide, per tombstone.
type compaction struct {
	ttl      time.Duration // 0: tombstones stay for ever
	archive  string        // "" for none
	archived uint64        // the archive's position when last read
}

// mark sets the compaction headers on the tombstones among msgs (the
// messages of evs, in order, to be written from sequence base+1; atomic:
// one batch) and returns the indexes of the tombstones left plain, for the
// janitor once they are written.
func (e *Engine) mark(ctx context.Context, msgs []*nats.Msg, evs []*events.Event, base uint64, atomic bool) (plain []int) {
	var seen map[string]bool
	if atomic {
		seen = make(map[string]bool, len(msgs))
	}
	for i, ev := range evs {
		subject := msgs[i].Subject
		first := !seen[subject]
		if atomic {
			seen[subject] = true
		}
		if ev.Type != events.FilterDeleted && ev.Type != events.CalloutDeleted {
			continue
		}
		// The newest message the roll-up would drop: a live filter's
		// subject ends with its add (the filter id); a callout's add is
		// not indexed, so a callout waits for the whole log so far.
		drops := base
		if ev.Type == events.FilterDeleted && ev.Filter.ID != 0 {
			drops = ev.Filter.ID
		}
		if first && e.archivedThrough(ctx, drops) {
			events.Message{Header: msgs[i].Header}.Compact(e.comp.ttl)
		} else {
			plain = append(plain, i)
		}
	}
	return plain
}

// archivedThrough reports whether the archive, if any, has sourced the log
// up to seq, reading its position again only when the last one read is
// short of it. An archive that cannot be read holds the roll-up back: the
// tombstone stays plain and the janitor deals with it later.
func (e *Engine) archivedThrough(ctx context.Context, seq uint64) bool {
	c := &e.comp
	if c.archive == "" || c.archived >= seq {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.WriteTimeout)
	defer cancel()
	n, err := jetstream.ArchivedThrough(ctx, e.js, c.archive)
	if err != nil {
		e.log.Warn("engine: cannot read the archive's position; this delete does not roll up", "archive", c.archive, "err", err)
		return false
	}
	c.archived = max(c.archived, n)
	return c.archived >= seq
}
