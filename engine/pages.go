package engine

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/projection"
)

// Paged listings. A listing larger than one reply comes in pages, each
// well within the server's max payload, and every page shows the state
// as of the sequence of the first: the cursor names that sequence and the
// last id (or key) given, and any engine answers it from what its state
// keeps of what it removed since (projection's reads as of a position).

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

// fill encodes items into a page, in order, until the next one would take
// the page past budget bytes; the first always goes in, so a page always
// makes progress. It returns the encoded entries, how many items they are.
func fill[T any](items []T, budget int, entry func(T) any) ([]json.RawMessage, int, error) {
	out := []json.RawMessage{}
	size := 0
	for _, it := range items {
		b, err := json.Marshal(entry(it))
		if err != nil {
			return nil, 0, errorf(CodeInternal, "%v", err)
		}
		if len(out) > 0 && size+len(b)+1 > budget {
			break
		}
		out, size = append(out, b), size+len(b)+1
	}
	return out, len(out), nil
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
	entries, n, err := fill(fs[:min(len(fs), limit)], e.pageBudget(), func(f *events.Filter) any { return f })
	if err != nil {
		return nil, err
	}
	out := filtersPage{Seq: c.seq, Filters: entries}
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
	entries, n, err := fill(cs, e.pageBudget(), func(co projection.CalloutAt) any {
		agents := e.agents.forCallout(co.Key)
		if agents == nil {
			agents = []AgentInfo{}
		}
		return CalloutInfo{Callout: *co.Callout, FilterCount: co.Filters, Agents: agents, Registered: len(agents) > 0}
	})
	if err != nil {
		return nil, err
	}
	out := calloutsPage{Seq: c.seq, Callouts: entries}
	if n < len(cs) || more {
		out.Next = cursor{seq: c.seq, after: cs[n-1].Key}.String()
	}
	return out, nil
}
