package engine

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/projection"
)

// Reads. Every read is linearizable: before answering, the engine asks the
// stream for its last sequence and waits until its state has folded up to
// it (a read barrier, as etcd's ReadIndex), so an answer reflects every
// write acknowledged before the request was sent, by this engine or any
// other. Listings are paged: each page fits well within the server's max
// payload, and every page of one listing shows the state as of the
// sequence of its first page (the cursor names it; see projection's reads
// as of a position).

// maxPageItems caps the entries a page collects before it is sized.
const maxPageItems = 10_000

// listingTTL is how long the engine keeps what it removed, so that the
// pages of a listing can still be read as of its first page's sequence.
// A listing slower than this is refused with FWP_E_INVALID_ENUMERATOR and
// the Go client starts it again.
const listingTTL = time.Minute

// maxKept bounds the removed filters kept for listings: under heavy churn
// the engine forgets them early (listings in progress start again) rather
// than hold a minute of history in memory.
const maxKept = 1 << 18

// read adapts a read into a handler. The read runs in its own goroutine
// (a read barrier may wait for the tail, and must not hold up the next
// request on the endpoint) and answers straight to the reply subject.
func (e *Engine) read(fn func(ctx context.Context, data []byte) (any, error)) micro.HandlerFunc {
	return func(req micro.Request) {
		e.taken.add()
		data, reply := req.Data(), req.Reply()
		go func() {
			defer e.taken.done()
			ctx, cancel := context.WithTimeout(context.Background(), e.cfg.WriteTimeout)
			defer cancel()
			v, err := fn(ctx, data)
			if err != nil {
				e.publishReply(reply, errorMsg(err))
				return
			}
			e.publishReply(reply, jsonMsg(v))
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
	last, err := e.lastSeq(ctx)
	if err != nil {
		return errorf(CodeTimeout, "read barrier: cannot learn the log's last sequence: %v", err)
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
			if empty, err := e.nothingStored(ctx, at+1, seq); err == nil && empty {
				return nil
			}
			probe.Reset(gapProbe)
		case <-ctx.Done():
			return errorf(CodeTimeout, "the engine's state is at log sequence %d, behind the log's %d: %v", at, seq, ctx.Err())
		}
	}
}

// nothingStored reports whether the stream holds no message from
// sequence from through to.
func (e *Engine) nothingStored(ctx context.Context, from, to uint64) (bool, error) {
	m, err := e.stream.GetMsg(ctx, from, natsjs.WithGetMsgSubject(">"))
	switch {
	case errors.Is(err, natsjs.ErrMsgNotFound):
		return true, nil
	case err != nil:
		return false, err
	}
	return m.Sequence > to, nil
}

// keepForListings makes the state keep what it removes for listingTTL, so
// that a listing's later pages see the state of its first. It runs until
// the engine closes.
func (e *Engine) keepForListings() {
	e.mu.Lock()
	e.state.Keep()
	e.mu.Unlock()
	type mark struct {
		at  time.Time
		seq uint64
	}
	var marks []mark
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			marks = append(marks, mark{now, e.Seq()})
			forget := uint64(0)
			for len(marks) > 0 && now.Sub(marks[0].at) >= listingTTL {
				forget, marks = marks[0].seq, marks[1:]
			}
			e.mu.Lock()
			if e.state.Kept() > maxKept {
				forget = e.state.Seq()
			}
			if forget > 0 {
				e.state.Forget(forget)
			}
			e.mu.Unlock()
		case <-e.loopDone:
			return
		}
	}
}

// cursor is where the next page of a listing starts: the sequence the
// listing is as of, and the last id (filters) or key (callouts) given.
// On the wire it is opaque: "<seq>.<after>".
type cursor struct {
	seq   uint64
	after string
}

func (c cursor) String() string { return strconv.FormatUint(c.seq, 10) + "." + c.after }

func parseCursor(s string) (cursor, error) {
	if s == "" {
		return cursor{}, nil
	}
	seq, after, ok := strings.Cut(s, ".")
	n, err := strconv.ParseUint(seq, 10, 64)
	if !ok || err != nil || n == 0 {
		return cursor{}, errorf(CodeInvalidParameter, "cursor: %q is not a cursor an engine gave", s)
	}
	return cursor{seq: n, after: after}, nil
}

// at brings the state to where a listing reads: for a first page, past
// every acknowledged write (the read barrier); for a later one, to the
// listing's sequence.
func (e *Engine) at(ctx context.Context, c cursor) error {
	if c.seq == 0 {
		return e.readBarrier(ctx)
	}
	return e.waitFolded(ctx, c.seq)
}

// forgotten turns a read as of a position the state no longer keeps into
// the enumerator error callers restart on.
func forgotten(err error, c cursor) error {
	if errors.Is(err, projection.ErrForgotten) {
		return errorf(CodeInvalidEnumerator, "the listing as of log sequence %d is no longer available (engines keep removed entries for %v): list again", c.seq, listingTTL)
	}
	return errorf(CodeInternal, "%v", err)
}

// pageBudget is the most bytes of entries one page carries: half the
// server's max payload, so that a page and its envelope always fit.
func (e *Engine) pageBudget() int {
	mp := int(e.nc.MaxPayload())
	if mp <= 0 {
		mp = 1 << 20
	}
	return mp / 2
}

// page is a listing page as it goes on the wire: entries already encoded.
type page struct {
	entries []json.RawMessage
	size    int
}

// add encodes v into the page unless it would pass budget; the first
// entry always goes in, so a page always makes progress.
func (p *page) add(v any, budget int) (bool, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return false, err
	}
	if len(p.entries) > 0 && p.size+len(b)+1 > budget {
		return false, nil
	}
	p.entries, p.size = append(p.entries, b), p.size+len(b)+1
	return true, nil
}

// limit is the number of entries a request may have in a page.
func pageLimit(n int) (int, error) {
	switch {
	case n < 0:
		return 0, errorf(CodeInvalidParameter, "limit: %d is negative", n)
	case n == 0 || n > maxPageItems:
		return maxPageItems, nil
	}
	return n, nil
}

// filtersPage is ListFiltersResponse with its filters encoded.
type filtersPage struct {
	Seq     uint64            `json:"seq"`
	Filters []json.RawMessage `json:"filters"`
	Next    string            `json:"next,omitempty"`
}

func (e *Engine) listFilters(ctx context.Context, data []byte) (any, error) {
	var r ListFiltersRequest
	if len(data) > 0 {
		if err := decode(data, &r); err != nil {
			return nil, err
		}
	}
	t, err := r.normalised()
	if err != nil {
		return nil, err
	}
	c, err := parseCursor(r.Cursor)
	if err != nil {
		return nil, err
	}
	var after uint64
	if c.after != "" {
		if after, err = strconv.ParseUint(c.after, 10, 64); err != nil {
			return nil, errorf(CodeInvalidParameter, "cursor: %q is not a filter listing's cursor", r.Cursor)
		}
	}
	limit, err := pageLimit(r.Limit)
	if err != nil {
		return nil, err
	}
	if err := e.at(ctx, c); err != nil {
		return nil, err
	}
	// Collect under the lock, encode outside it: folded filters are never
	// changed, only replaced.
	var fs []*events.Filter
	e.View(func(s *projection.State) {
		if c.seq == 0 {
			c.seq = s.Seq()
		}
		var it func(func(*events.Filter) bool)
		if it, err = s.FiltersAt(t, c.seq, after); err != nil {
			return
		}
		for f := range it {
			if fs = append(fs, f); len(fs) > limit {
				break
			}
		}
	})
	if err != nil {
		return nil, forgotten(err, c)
	}
	out := filtersPage{Seq: c.seq, Filters: []json.RawMessage{}}
	var p page
	budget := e.pageBudget()
	n := 0
	for _, f := range fs[:min(len(fs), limit)] {
		ok, err := p.add(f, budget)
		if err != nil {
			return nil, errorf(CodeInternal, "%v", err)
		}
		if !ok {
			break
		}
		n++
	}
	out.Filters = append(out.Filters, p.entries...)
	if n < len(fs) {
		out.Next = cursor{seq: c.seq, after: strconv.FormatUint(fs[n-1].ID, 10)}.String()
	}
	return out, nil
}

// calloutsPage is ListCalloutsResponse with its callouts encoded.
type calloutsPage struct {
	Seq      uint64            `json:"seq"`
	Callouts []json.RawMessage `json:"callouts"`
	Next     string            `json:"next,omitempty"`
}

func (e *Engine) listCallouts(ctx context.Context, data []byte) (any, error) {
	var r ListCalloutsRequest
	if len(data) > 0 {
		if err := decode(data, &r); err != nil {
			return nil, err
		}
	}
	c, err := parseCursor(r.Cursor)
	if err != nil {
		return nil, err
	}
	limit, err := pageLimit(r.Limit)
	if err != nil {
		return nil, err
	}
	if err := e.at(ctx, c); err != nil {
		return nil, err
	}
	var cs []projection.CalloutAt
	var more bool
	e.View(func(s *projection.State) {
		if c.seq == 0 {
			c.seq = s.Seq()
		}
		cs, more, err = s.CalloutsAt(c.seq, c.after, limit)
	})
	if err != nil {
		return nil, forgotten(err, c)
	}
	out := calloutsPage{Seq: c.seq, Callouts: []json.RawMessage{}}
	var p page
	budget := e.pageBudget()
	n := 0
	for _, co := range cs {
		agents := e.agents.forCallout(co.Key)
		if agents == nil {
			agents = []AgentInfo{}
		}
		ok, err := p.add(CalloutInfo{Callout: *co.Callout, FilterCount: co.Filters, Agents: agents}, budget)
		if err != nil {
			return nil, errorf(CodeInternal, "%v", err)
		}
		if !ok {
			break
		}
		n++
	}
	out.Callouts = append(out.Callouts, p.entries...)
	if n < len(cs) || more {
		out.Next = cursor{seq: c.seq, after: cs[n-1].Key}.String()
	}
	return out, nil
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

// publishReply answers a request on its reply subject. An answer the
// server would refuse (larger than its max payload) or that cannot be
// sent is logged and replaced by an error the caller can read, instead of
// leaving the caller to time out.
func (e *Engine) publishReply(subject string, m *nats.Msg) {
	if subject == "" {
		return // a publish without a reply subject asked for no answer
	}
	m.Subject = subject
	err := e.nc.PublishMsg(m) // nats.ErrMaxPayload for an answer the server would refuse
	if err == nil {
		return
	}
	e.log.Error("engine: an answer could not be sent; answering with an error instead", "subject", subject, "err", err)
	fail := errorMsg(errorf(CodeInternal, "the engine could not send its answer (%v); a write was carried out even so: list to see its outcome", err))
	fail.Subject = subject
	if err := e.nc.PublishMsg(fail); err != nil {
		e.log.Error("engine: the error answer could not be sent either", "subject", subject, "err", err)
	}
}
