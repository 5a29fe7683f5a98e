package engine

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nats-io/nats.go/micro"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/jetstream"
	"github.com/wfpnats/wfp/projection"
)

// Reads. Every read is linearizable: before answering, the engine asks the
// stream for its last sequence and waits until its state has folded up to
// it (a read barrier, as etcd's ReadIndex), so an answer reflects every
// write acknowledged before the request was sent, by this engine or any
// other. Listings are paged (pages.go).

// read adapts a read into a handler. The read runs in its own goroutine
// (a read barrier may wait for the tail, and must not hold up the next
// request on the endpoint) and answers straight to the reply subject.
func (e *Engine) read(fn func(ctx context.Context, data []byte) (any, error)) micro.HandlerFunc {
	return func(req micro.Request) {
		e.taken.add()
		data := req.Data()
		go func() {
			defer e.taken.done()
			ctx, cancel := context.WithTimeout(context.Background(), e.cfg.WriteTimeout)
			defer cancel()
			v, err := fn(ctx, data)
			if err != nil {
				respondMsg(req, errorMsg(err))
				return
			}
			respondMsg(req, jsonMsg(v))
		}()
	}
}

// progress wakes whoever waits for the state to move.
type progress struct {
	mu sync.Mutex
	ch chan struct{}
}

func newProgress() *progress { return &progress{ch: make(chan struct{})} }

// moved returns a channel closed the next time the state moves.
func (p *progress) moved() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ch
}

func (p *progress) signal() {
	p.mu.Lock()
	close(p.ch)
	p.ch = make(chan struct{})
	p.mu.Unlock()
}

// gapProbe is how long a wait for the state sees no progress before it
// asks the server whether anything is left to fold at all.
const gapProbe = 200 * time.Millisecond

// readBarrier returns once the state reflects every message the stream
// held when it was called.
func (e *Engine) readBarrier(ctx context.Context) error {
	if e.cfg.StaleReads {
		return nil
	}
	asked := time.Now()
	last, err := e.lastSeq(ctx)
	if err != nil {
		return errorf(CodeTimeout, "read barrier: cannot learn the log's last sequence: %v", err)
	}
	if last <= e.Seq() {
		e.caughtUpTo(asked)
	}
	return e.waitFolded(ctx, last)
}

// waitFolded returns once the state has folded the log up to seq. The
// tail delivers only stored messages, so when it stops short it asks the
// server whether anything is stored between the state and seq at all (the
// last messages may have been removed, or skipped over by a purge).
func (e *Engine) waitFolded(ctx context.Context, seq uint64) error {
	if e.Seq() >= seq {
		return nil
	}
	e.readsWaiting.Add(1)
	defer e.readsWaiting.Add(-1)
	probe := time.NewTimer(gapProbe)
	defer probe.Stop()
	for {
		moved := e.progress.moved()
		at := e.Seq()
		if at >= seq {
			return nil
		}
		select {
		case <-moved:
		case <-probe.C:
			if e.stale(time.Now()) {
				// What is missing may be deletes that expired unread: the
				// state is rebuilt, not taken past them.
				e.askRebuild()
			} else if empty, err := e.nothingStored(ctx, at+1, seq); err == nil && empty {
				return nil
			}
			probe.Reset(gapProbe)
		case <-ctx.Done():
			return errorf(CodeTimeout, "the engine's state is at log sequence %d, behind the log's %d: %v", at, seq, ctx.Err())
		}
	}
}

// nothingStored reports whether the stream holds no message from
// sequence from through to. The stream's leader answers, and only an
// answer from a node that has the log up to to counts: a replica that
// lags behind, or a leader cut off by a partition that has not stepped
// down yet, would report messages it has not received as missing, and
// the state would skip them for good. On a replicated stream two such
// answers, a probe apart, are needed.
func (e *Engine) nothingStored(ctx context.Context, from, to uint64) (bool, error) {
	for i := range e.confirmations() {
		if i > 0 {
			select {
			case <-time.After(gapProbe):
			case <-ctx.Done():
				return false, ctx.Err()
			}
		}
		last, err := e.lastSeq(ctx)
		if err != nil {
			return false, err
		}
		if last < to {
			return false, nil // this answer comes from a node behind the log
		}
		seq, _, err := jetstream.LeaderGet(ctx, e.js, e.cfg.Stream, from)
		switch {
		case errors.Is(err, jetstream.ErrNoMessage):
		case err != nil:
			return false, err
		case seq <= to:
			return false, nil
		}
	}
	return true, nil
}

// confirmations is how many consistent answers nothingStored needs.
func (e *Engine) confirmations() int {
	if e.replicated {
		return 2
	}
	return 1
}

func (e *Engine) getFilter(ctx context.Context, data []byte) (any, error) {
	var ref FilterRef
	if err := decode(data, &ref); err != nil {
		return nil, err
	}
	if err := e.readBarrier(ctx); err != nil {
		return nil, err
	}
	var resp FilterResponse
	var err error
	e.View(func(s *projection.State) {
		resp.Seq = s.Seq()
		resp.Filter, err = lookupFilter(s, ref)
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (e *Engine) getCallout(ctx context.Context, data []byte) (any, error) {
	var ref CalloutRef
	if err := decode(data, &ref); err != nil {
		return nil, err
	}
	if ref.CalloutKey == "" {
		return nil, errorf(CodeInvalidParameter, "calloutKey is required")
	}
	key, err := parseKey("calloutKey", ref.CalloutKey)
	if err != nil {
		return nil, err
	}
	if err := e.readBarrier(ctx); err != nil {
		return nil, err
	}
	var resp CalloutInfoResponse
	var found bool
	e.View(func(s *projection.State) {
		resp.Seq = s.Seq()
		var c *events.Callout
		if c, found = s.Callout(key); found {
			resp.Callout = CalloutInfo{Callout: *c, FilterCount: s.FiltersNaming(key)}
		}
	})
	if !found {
		return nil, errorf(CodeCalloutNotFound, "calloutKey: no callout %s", key)
	}
	resp.Callout.Agents = e.agents.forCallout(key)
	if resp.Callout.Agents == nil {
		resp.Callout.Agents = []AgentInfo{}
	}
	resp.Callout.Registered = len(resp.Callout.Agents) > 0
	return resp, nil
}

// publishReply answers a request on its reply subject. An answer the
// server would refuse (larger than its max payload) or that cannot be
// sent is logged and replaced by an error the caller can read, instead of
// leaving the caller to time out: then it calls failed before it sends
// the error, and reports false.
func (e *Engine) publishReply(subject string, m *nats.Msg, failed func()) bool {
	if subject == "" {
		return true // a publish without a reply subject asked for no answer
	}
	m.Subject = subject
	err := e.nc.PublishMsg(m) // nats.ErrMaxPayload for an answer the server would refuse
	if err == nil {
		return true
	}
	e.log.Error("engine: an answer could not be sent; answering with an error instead", "subject", subject, "err", err)
	failed()
	fail := errorMsg(errorf(CodeInternal, "the engine could not send its answer (%v); a write was carried out even so: list to see its outcome", err))
	fail.Subject = subject
	if err := e.nc.PublishMsg(fail); err != nil {
		e.log.Error("engine: the error answer could not be sent either", "subject", subject, "err", err)
	}
	return false
}
