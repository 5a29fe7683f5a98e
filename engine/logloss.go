package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/jetstream"
)

// The log never shrinks unnoticed. A filter's id is the sequence of its
// add, so a log that lost its end (a damaged block, an emptied store, a
// server restored from an old backup) would hand the lost ids to new
// filters, and the agents that had them would hold two filters under one
// id. An engine therefore keeps a high-water mark of what it acknowledged
// (Config.Mark), and on start it compares the log with that mark: if the
// log ends before it, or the last acknowledged event is missing though
// nothing may remove it (the server keeps its own index of the last
// sequence, so a cut block can keep the sequence and lose the message),
// acknowledged events are gone. It then refuses every write, reads still
// work, until an operator restarts it with AcceptLogLoss; it then moves
// the log's sequence past the mark, so no id is ever given twice, and
// writes again. (The stream's consumers cannot tell: the server clamps
// their positions to what the stream still holds.)

// logLoss describes a log that lost acknowledged events.
type logLoss struct {
	last    uint64 // the log's last sequence
	mark    uint64 // the engine's high-water mark
	missing bool   // the message at the mark is gone though nothing may remove it
	where   string // where the mark is kept
}

func (l logLoss) String() string {
	if l.mark <= l.last {
		return fmt.Sprintf("the log ends at sequence %d, but the event acknowledged up to sequence %d (this engine's mark, in %s) is missing from it: the log lost its end",
			l.last, l.mark, l.where)
	}
	return fmt.Sprintf("the log ends at sequence %d, but this engine acknowledged writes up to sequence %d (its mark, in %s): events %d to %d are lost",
		l.last, l.mark, l.where, l.last+1, l.mark)
}

// refusal is what writes get while the loss is not accepted.
func (l logLoss) refusal() *Error {
	return errorf(CodeLogLoss, "%s; writes are refused until an operator accepts the loss (engine serve --accept-log-loss, Config.AcceptLogLoss), so that no lost id is given to a new filter", l)
}

// checkLog compares the log with the mark. It returns nil if nothing is
// lost, or if the engine keeps no mark.
//
// The mark is read first, the log's end after it: a mark is raised only
// once its write is in the log, so a log read later always reaches it
// unless something was lost. Read the other way round, another engine
// sharing the mark (KVMark) may write and raise it in between, and a
// healthy log would look short.
func (e *Engine) checkLog(ctx context.Context) (*logLoss, error) {
	if e.cfg.Mark == nil {
		return nil, nil
	}
	m, err := e.cfg.Mark.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("engine: high-water mark: %w", err)
	}
	info, err := e.stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("engine: stream info: %w", err)
	}
	l := logLoss{last: info.State.LastSeq, mark: m.Seq, where: e.cfg.Mark.String()}
	// A log cut short may keep its last sequence (the server trusts its
	// own index) and lose the messages: the last acknowledged one must be
	// there, unless it is a delete compaction may remove.
	// Asked of the stream's leader: a lagging replica would not have it.
	if !m.Removable && m.Seq > 0 && m.Seq == l.last {
		seq, _, err := jetstream.LeaderGet(ctx, e.js, e.cfg.Stream, m.Seq)
		switch {
		case errors.Is(err, jetstream.ErrNoMessage), err == nil && seq != m.Seq:
			l.missing = true
		case err != nil:
			return nil, fmt.Errorf("engine: reading the last acknowledged event: %w", err)
		}
	}
	if l.mark <= l.last && !l.missing {
		return nil, nil
	}
	return &l, nil
}

// skipPast moves the stream's last sequence to at least seq without
// touching what it still holds: a stream with no message left is purged up
// to seq+1 (its first sequence becomes seq+1); one that holds messages gets
// fillers on the gap subject, which the engine folds as nothing.
func (e *Engine) skipPast(ctx context.Context, seq uint64) error {
	for {
		info, err := e.stream.Info(ctx)
		if err != nil {
			return err
		}
		last := info.State.LastSeq
		if last >= seq {
			return nil
		}
		if info.State.Msgs == 0 {
			if err := e.stream.Purge(ctx, natsjs.WithPurgeSequence(seq+1)); err == nil {
				continue
			}
			// No purge right: fill instead.
		}
		msgs := make([]*nats.Msg, min(seq-last, jetstream.MaxBatch))
		for i := range msgs {
			msgs[i] = nats.NewMsg(e.subj.Gap())
			msgs[i].Header.Set(events.HeaderMsgID, uuid.NewString())
			msgs[i].Header.Set(events.HeaderEvent, events.GapEvent)
		}
		if _, err := jetstream.PublishChain(ctx, e.js, last, msgs); err != nil && !errors.Is(err, jetstream.ErrWrongLastSequence) {
			return fmt.Errorf("engine: writing fillers past the lost sequences: %w", err)
		}
	}
}

// acceptLoss makes the log go on past what was lost, and raises the mark
// to it, so that the loss is reported once.
func (e *Engine) acceptLoss(ctx context.Context, l *logLoss) error {
	e.log.Warn("engine: accepting the loss of acknowledged events; the log goes on past them", "loss", l.String())
	to := l.mark
	if l.missing {
		to = max(to, l.last+1) // a filler, so that the mark moves past the missing event
	}
	if err := e.skipPast(ctx, to); err != nil {
		return err
	}
	if e.cfg.Mark != nil {
		// What is at the mark now, a filler or nothing after a purge,
		// may be absent.
		return e.cfg.Mark.Store(ctx, Position{Seq: to, Removable: true})
	}
	return nil
}

// refuseWrites puts the engine in the state where every write is answered
// with the loss, and says so loudly.
func (e *Engine) refuseWrites(l *logLoss) {
	e.lost.Store(l.refusal())
	e.log.Error("engine: ACKNOWLEDGED EVENTS ARE MISSING FROM THE LOG; refusing writes (reads still work) until an operator accepts the loss with --accept-log-loss",
		"last", l.last, "mark", l.mark, "detail", l.String())
}

// markWritten raises the high-water mark to seq, where last was written,
// before the write is answered. A mark that cannot be stored is logged;
// the write stands.
func (e *Engine) markWritten(seq uint64, last *events.Event) {
	if e.cfg.Mark == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.WriteTimeout)
	defer cancel()
	p := Position{Seq: seq, Removable: last.Type == events.FilterDeleted || last.Type == events.CalloutDeleted}
	if err := e.cfg.Mark.Store(ctx, p); err != nil {
		e.markErrors.Add(1)
		e.warn.error("engine: could not raise the high-water mark; a loss of this write would go unnoticed", "seq", seq, "err", err)
	}
}
