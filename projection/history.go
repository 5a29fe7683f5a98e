package projection

import (
	"cmp"
	"errors"
	"fmt"
	"iter"
	"slices"

	"github.com/wfpnats/wfp/events"
)

// Reads as of an earlier position. A paged listing must show one state on
// every page, while the state moves on between pages (and another engine,
// at another position, may serve the next page). So the state keeps what
// it removed, marked with the sequence that removed it, for a while: a
// filter was live as of seq s if it was added at or before s (its id is its
// add's sequence) and not removed at or before s. The owner decides how
// long removed entries are kept (Forget); until it enables that (Keep),
// nothing is kept and only the current position can be read.

// ErrForgotten is returned for a read as of a position whose removed
// entries the state no longer keeps.
var ErrForgotten = errors.New("projection: that log position is no longer kept")

// version is one filter as it was between its add and its removal.
type version struct {
	f       *events.Filter
	removed uint64 // sequence of the event that removed it; 0 while live
}

// calloutVersion is a callout object as it was between two sequences.
type calloutVersion struct {
	c              *events.Callout
	added, removed uint64
}

// history is the part of State that serves reads as of a position.
type history struct {
	order    []version         // every kept filter version, by id
	dead     int               // versions in order that are removed
	oldest   uint64            // the lowest removal sequence among them
	callouts []calloutVersion  // removed callout versions
	addedAt  map[string]uint64 // callout key -> sequence of its live version's add
	keep     bool
	forgot   uint64 // removals at or before this are no longer kept
}

// Keep starts keeping removed filters and callouts, until Forget drops
// them, so that reads as of earlier positions (FiltersAt, CalloutsAt)
// work. Before, each removal is forgotten at once.
func (s *State) Keep() { s.h.keep = true }

// Forgotten is the position at or before which removals are no longer
// kept: reads as of an earlier position fail with ErrForgotten.
func (s *State) Forgotten() uint64 { return s.h.forgot }

// Kept is the number of removed filter versions the state keeps.
func (s *State) Kept() int { return s.h.dead }

// Forget drops the removed filters and callouts whose removal is at or
// before seq: reads as of positions before seq are no longer possible.
func (s *State) Forget(seq uint64) {
	seq = min(seq, s.seq)
	if seq <= s.h.forgot {
		return
	}
	s.h.forgot = seq
	if s.h.dead > 0 && s.h.oldest <= seq {
		s.compact()
	}
	s.h.callouts = slices.DeleteFunc(s.h.callouts, func(v calloutVersion) bool { return v.removed <= seq })
}

// compact drops the versions removed at or before the forgotten position.
func (s *State) compact() {
	h := &s.h
	h.dead, h.oldest = 0, 0
	h.order = slices.DeleteFunc(h.order, func(v version) bool {
		if v.removed == 0 {
			return false
		}
		if v.removed <= h.forgot {
			return true
		}
		h.dead++
		if h.oldest == 0 || v.removed < h.oldest {
			h.oldest = v.removed
		}
		return false
	})
}

// added records a filter just folded in. Ids grow with the log, so this
// is an append but for a fold out of order.
func (s *State) added(f *events.Filter) {
	h := &s.h
	if n := len(h.order); n == 0 || h.order[n-1].f.ID < f.ID {
		h.order = append(h.order, version{f: f})
		return
	}
	i, _ := slices.BinarySearchFunc(h.order, f.ID, func(v version, id uint64) int { return cmp.Compare(v.f.ID, id) })
	h.order = slices.Insert(h.order, i, version{f: f})
}

// removed marks filter f removed at the current position.
func (s *State) removed(f *events.Filter) {
	h := &s.h
	i, ok := slices.BinarySearchFunc(h.order, f.ID, func(v version, id uint64) int { return cmp.Compare(v.f.ID, id) })
	if !ok || h.order[i].f != f {
		return
	}
	h.order[i].removed = s.seq
	if h.dead == 0 {
		h.oldest = s.seq
	}
	h.dead++
	if !h.keep {
		h.forgot = s.seq
		// Compact when half is dead: amortised, the order costs O(1) per
		// removal.
		if h.dead > len(h.order)/2 {
			s.compact()
		}
	}
}

// calloutAdded records the add of callout c at the current position,
// keeping the version it replaces.
func (s *State) calloutAdded(c *events.Callout, old *events.Callout) {
	if old != nil {
		s.calloutRemoved(old)
	}
	if s.h.addedAt == nil {
		s.h.addedAt = make(map[string]uint64)
	}
	s.h.addedAt[c.Key] = s.seq
}

// calloutRemoved keeps the removed version of callout c.
func (s *State) calloutRemoved(c *events.Callout) {
	added := s.h.addedAt[c.Key]
	delete(s.h.addedAt, c.Key)
	if !s.h.keep {
		s.h.forgot = s.seq
		return
	}
	s.h.callouts = append(s.h.callouts, calloutVersion{c: c, added: added, removed: s.seq})
}

// checkAt refuses reads as of a position the state cannot show.
func (s *State) checkAt(seq uint64) error {
	switch {
	case seq > s.seq:
		return fmt.Errorf("projection: position %d is ahead of the state (at %d)", seq, s.seq)
	case seq < s.h.forgot:
		return fmt.Errorf("%w: reads as of %d, removals up to %d are forgotten", ErrForgotten, seq, s.h.forgot)
	}
	return nil
}

// FiltersAt yields the filters matching t that were live as of position
// seq and have an id above after, in id order: one page of a listing at
// a time, whatever was folded since seq. Filters are never changed once
// folded, so the caller may keep the pointers without cloning them.
func (s *State) FiltersAt(t Template, seq, after uint64) (iter.Seq[*events.Filter], error) {
	if err := s.checkAt(seq); err != nil {
		return nil, err
	}
	if seq == s.seq {
		// The current position: walk the narrowest index, as Filters does.
		if src := s.indexFor(t); src != nil {
			out := make([]*events.Filter, 0, len(src))
			for _, f := range src {
				if f.ID > after && t.Matches(f) {
					out = append(out, f)
				}
			}
			slices.SortFunc(out, func(a, b *events.Filter) int { return cmp.Compare(a.ID, b.ID) })
			return slices.Values(out), nil
		}
	}
	order := s.h.order
	i, _ := slices.BinarySearchFunc(order, after+1, func(v version, id uint64) int { return cmp.Compare(v.f.ID, id) })
	return func(yield func(*events.Filter) bool) {
		for _, v := range order[i:] {
			if v.f.ID > seq {
				return
			}
			if (v.removed == 0 || v.removed > seq) && t.Matches(v.f) && !yield(v.f) {
				return
			}
		}
	}, nil
}

// CalloutAt is one callout object as of a position, with the number of
// filters that named it then.
type CalloutAt struct {
	*events.Callout
	Filters int
}

// CalloutsAt returns up to limit callout objects (0: all) live as of
// position seq whose key sorts after after, in key order, each with the
// number of filters naming it then; more reports whether there are others
// after them.
func (s *State) CalloutsAt(seq uint64, after string, limit int) (out []CalloutAt, more bool, err error) {
	if err := s.checkAt(seq); err != nil {
		return nil, false, err
	}
	for k, c := range s.callouts {
		if k > after && s.h.addedAt[k] <= seq {
			out = append(out, CalloutAt{Callout: c})
		}
	}
	for _, v := range s.h.callouts {
		if v.c.Key > after && v.added <= seq && v.removed > seq {
			out = append(out, CalloutAt{Callout: v.c})
		}
	}
	slices.SortFunc(out, func(a, b CalloutAt) int { return cmp.Compare(a.Key, b.Key) })
	if limit > 0 && len(out) > limit {
		out, more = out[:limit], true
	}
	if seq == s.seq {
		for i := range out {
			out[i].Filters = s.FiltersNaming(out[i].Key)
		}
		return out, more, nil
	}
	counts := make(map[string]int, len(out))
	for _, c := range out {
		counts[c.Key] = 0
	}
	for _, v := range s.h.order {
		if v.f.ID > seq {
			break
		}
		if n, ok := counts[v.f.CalloutKey]; ok && (v.removed == 0 || v.removed > seq) {
			counts[v.f.CalloutKey] = n + 1
		}
	}
	for i := range out {
		out[i].Filters = counts[out[i].Key]
	}
	return out, more, nil
}

// indexFor returns the index map the template selects on, or nil when it
// selects on nothing (every filter).
func (s *State) indexFor(t Template) map[string]*events.Filter {
	switch {
	case t.CalloutKey != "":
		return nonNil(s.byCallout[t.CalloutKey])
	case t.Layer != "":
		return nonNil(s.byLayer[t.Layer])
	case t.ProviderKey != "":
		return nonNil(s.byProvider[t.ProviderKey])
	}
	return nil
}

func nonNil(m map[string]*events.Filter) map[string]*events.Filter {
	if m == nil {
		return map[string]*events.Filter{}
	}
	return m
}
