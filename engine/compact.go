package engine

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

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
//     transaction); and a roll-up must not drop an add that a reader who
//     keeps everything has not yet consumed: the archive, which sources
//     the log after the fact, and durable agents. The server counts a
//     pending message that a roll-up removes as acknowledged, and (the
//     durable consumer acknowledging all before it) with it every message
//     before it, so a durable agent killed with the add still unacked
//     would, restarted, never get the messages before it again.
//     Such a plain tombstone carries no TTL either (the add behind it
//     would be the subject's last message again once it left); the
//     janitor purges the subject, add and tombstone, once the horizon has
//     passed, as the TTL would have.

// compaction is what the writer needs to decide, per tombstone.
type compaction struct {
	ttl      time.Duration // 0: tombstones stay for ever
	archive  string        // "" for none
	archived uint64        // the archive's position when last read
	// floors is, per callout token, the lowest ack floor among the
	// durable consumers reading that callout's filters, as last read
	// (floors only rise); a callout without durables has none.
	floors   map[string]uint64
	floorsAt time.Time
	// floorsSeq is the state's position when the floors were read: a
	// durable consumer created since starts after it (at the log's end),
	// so a callout without durables then may have one now, which a
	// roll-up of an add after floorsSeq could cost messages.
	floorsSeq uint64
}

// floorsEvery is the least time between two reads of the durable
// consumers' floors: a delete that needs a newer one in between stays
// plain.
// (A variable, so that a test can hold a read for as long as it needs.)
var floorsEvery = 200 * time.Millisecond

// lookTimeout bounds a look at the durable consumers or the archive. The
// writer waits for it, so every write waits with it: when the cluster
// cannot answer (a leader lost) the delete stays plain rather than hold
// the log up. (A variable for a test that must see a slow answer.)
var lookTimeout = time.Second

// compact sets the readers' headers on the filter events among msgs (the
// messages of evs, in order, to be written from sequence base+1; atomic:
// one batch) and the compaction headers on the tombstones, and returns the
// indexes of the tombstones left plain, for the janitor once they are
// written.
//
// The readers' headers: the horizon (readers of one callout's filters may
// not read the stream's configuration) and the previous filter event of
// the same callout (events.HeaderPrev), from the state, which holds the
// log up to base (the fence makes sure), and from the messages before
// this one.
func (e *Engine) compact(ctx context.Context, msgs []*nats.Msg, evs []*events.Event, base uint64, atomic bool) (plain []int) {
	var seen map[string]bool
	if atomic {
		seen = make(map[string]bool, len(msgs))
	}
	var prev map[string]uint64 // callout key -> previous filter event, within msgs
	for i, ev := range evs {
		subject := msgs[i].Subject
		first := !seen[subject]
		if atomic {
			seen[subject] = true
		}
		if ev.Filter != nil {
			if e.comp.ttl > 0 {
				msgs[i].Header.Set(events.HeaderHorizon, events.FormatTTL(e.comp.ttl))
			}
			ck := ev.Filter.CalloutKey
			p, ok := prev[ck]
			if !ok {
				p = e.state.LastOnCallout(ck)
			}
			msgs[i].Header.Set(events.HeaderPrev, strconv.FormatUint(p, 10))
			if prev == nil {
				prev = make(map[string]uint64, 4)
			}
			prev[ck] = base + uint64(i) + 1
		}
		if !events.IsTombstone(ev.Type) {
			continue
		}
		// The newest message the roll-up would drop: a live filter's
		// subject ends with its add (the filter id); a callout's or a
		// session's opening is not indexed, so it waits for the whole log
		// so far.
		drops := base
		durableOK := true
		if ev.Type == events.FilterDeleted {
			if ev.Filter.ID != 0 {
				drops = ev.Filter.ID
			}
			durableOK = e.consumedByDurables(ctx, ev.Filter.CalloutKey, drops)
		}
		if first && durableOK && e.archivedThrough(ctx, drops) {
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
	ctx, cancel := context.WithTimeout(ctx, min(e.cfg.WriteTimeout, lookTimeout))
	defer cancel()
	n, err := jetstream.ArchivedThrough(ctx, e.js, c.archive)
	if err != nil {
		e.log.Warn("engine: cannot read the archive's position; this delete does not roll up", "archive", c.archive, "err", err)
		return false
	}
	c.archived = max(c.archived, n)
	return c.archived >= seq
}

// consumedByDurables reports whether every durable consumer reading
// calloutKey's filters has acknowledged the log up to seq, reading their
// floors again (at most every floorsEvery) when the last read is short.
// A consumer created since the last read starts at the log's end then,
// so the read vouches for a callout without durables only up to that
// point (floorsSeq): a later add may have a durable reader the read did
// not see.
func (e *Engine) consumedByDurables(ctx context.Context, calloutKey string, seq uint64) bool {
	if calloutKey == "" {
		return true
	}
	c := &e.comp
	tok := events.CalloutToken(calloutKey)
	if floor, ok := c.floors[tok]; c.floors != nil && ((!ok && seq <= c.floorsSeq) || (ok && floor >= seq)) {
		return true
	}
	if time.Since(c.floorsAt) < floorsEvery {
		return false
	}
	at := e.state.Seq() // before the read: a consumer it misses starts after this
	floors, err := e.durableFloors(ctx)
	if err != nil {
		e.log.Warn("engine: cannot read the durable consumers' positions; this delete does not roll up", "err", err)
		return false
	}
	c.floors, c.floorsAt, c.floorsSeq = floors, time.Now(), at
	floor, ok := floors[tok]
	return (!ok && seq <= at) || (ok && floor >= seq)
}

// durableFloors lists the stream's consumers and returns, per callout
// token, the lowest ack floor among the durable ones that read exactly
// one callout's filter subject.
//
// On a cluster the list holds only the consumers whose leaders answered
// in time (a node restarting, a partition): the others are left out
// (the server names them as missing, which nats.go does not pass on),
// and a durable left out would look like none. So the list is checked
// against the consumers' names, which the meta layer knows whole: one
// without its information fails the read, and the delete stays plain.
func (e *Engine) durableFloors(ctx context.Context) (map[string]uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, min(e.cfg.WriteTimeout, lookTimeout))
	defer cancel()
	s, err := e.js.Stream(ctx, e.cfg.Stream)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	nl := s.ConsumerNames(ctx)
	for name := range nl.Name() {
		names[name] = true
	}
	if err := nl.Err(); err != nil {
		return nil, err
	}
	floors := map[string]uint64{}
	l := s.ListConsumers(ctx)
	for info := range l.Info() {
		delete(names, info.Name)
		cfg := info.Config
		if cfg.Durable == "" || cfg.AckPolicy == natsjs.AckNonePolicy {
			continue
		}
		subject := cfg.FilterSubject
		if subject == "" && len(cfg.FilterSubjects) == 1 {
			subject = cfg.FilterSubjects[0]
		}
		tok, ok := e.subj.CalloutOfFilters(subject)
		if !ok {
			continue
		}
		if f, seen := floors[tok]; !seen || info.AckFloor.Stream < f {
			floors[tok] = info.AckFloor.Stream
		}
	}
	if err := l.Err(); err != nil {
		return nil, err
	}
	for name := range names {
		return nil, fmt.Errorf("consumer %s did not answer", name)
	}
	return floors, nil
}
