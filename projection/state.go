// Package projection folds the event log into the current filters and
// callouts, with the indexes the management API and the agents query. It is
// a pure function of the events it is given: no I/O, no clocks.
//
// The fold is written so that folding the whole log and folding only the
// last event of each subject give the same state: a later add of a key
// replaces an earlier one, and a delete of something absent is a no-op. That
// is what lets a replay agent rebuild from a last-per-subject snapshot.
package projection

import (
	"cmp"
	"maps"
	"slices"

	"github.com/wfpnats/wfp/events"
)

// State is the folded log. It is not safe for concurrent use; its owner
// serialises access.
type State struct {
	seq      uint64
	callouts map[string]*events.Callout
	filters  map[string]*events.Filter // by filter key
	byID     map[uint64]*events.Filter
	// Secondary indexes: index key -> filter key -> filter.
	byCallout  index
	byLayer    index
	byProvider index
	sess       sessions // dynamic sessions (session.go)
	// lastOn is, per callout key ("" for filters naming none), the
	// sequence of the newest filter event naming it: the previous event
	// an agent of that callout has read when the next one is written.
	lastOn map[string]uint64
	layers layerVersions // per-layer change counters (layers.go)
	// h keeps removed entries for reads as of earlier positions
	// (history.go).
	h history
}

type index map[string]map[string]*events.Filter

// add indexes f under k. The empty key is not indexed: a template with an
// empty field does not select on it, so nothing looks it up, and most
// filters have no provider.
func (ix index) add(k string, f *events.Filter) {
	if k == "" {
		return
	}
	m := ix[k]
	if m == nil {
		m = make(map[string]*events.Filter)
		ix[k] = m
	}
	m[f.Key] = f
}

func (ix index) remove(k string, f *events.Filter) {
	if m := ix[k]; k != "" && m != nil {
		delete(m, f.Key)
		if len(m) == 0 {
			delete(ix, k)
		}
	}
}

// New returns an empty state at log position 0.
func New() *State { return NewSized(0) }

// NewSized is New with room for about filters filters, so that folding a
// log of known size does not grow the maps step by step (a rebuild knows
// the stream's message count).
func NewSized(filters int) *State {
	return &State{
		callouts:   make(map[string]*events.Callout),
		lastOn:     make(map[string]uint64),
		filters:    make(map[string]*events.Filter, filters),
		byID:       make(map[uint64]*events.Filter, filters),
		byCallout:  make(index),
		byLayer:    make(index),
		byProvider: make(index),
	}
}

// Seq is the stream sequence of the last message folded in.
func (s *State) Seq() uint64 { return s.seq }

// Skip moves the position past a message that is not an event this code
// acts on (garbage, unknown type): the position counts every message so a
// fenced writer can name it.
func (s *State) Skip(seq uint64) {
	if seq > s.seq {
		s.seq = seq
	}
}

// Apply folds the event stored at stream sequence seq. A FilterAdded's
// filter gets ID = seq: the filter id is the sequence of its add event. The
// state takes ownership of the event's filter or callout. Events it does not
// know (R5) only move the position. It reports whether the state changed.
func (s *State) Apply(seq uint64, ev *events.Event) bool {
	s.Skip(seq)
	if ev == nil || !ev.Known() {
		return false
	}
	if ev.Filter != nil && (ev.Type == events.FilterAdded || ev.Type == events.FilterDeleted) {
		s.lastOn[ev.Filter.CalloutKey] = seq
	}
	switch ev.Type {
	case events.FilterAdded:
		f := ev.Filter
		f.ID = seq
		s.removeFilter(f.Key)
		s.filters[f.Key] = f
		s.byID[f.ID] = f
		s.byCallout.add(f.CalloutKey, f)
		s.byLayer.add(f.Layer, f)
		s.byProvider.add(f.ProviderKey, f)
		s.sess.filterIn(f)
		s.layers.touch(f.Layer)
		s.added(f)
		return true
	case events.FilterDeleted:
		return s.removeFilter(ev.Filter.Key)
	case events.CalloutAdded:
		s.sess.calloutIn(ev.Callout, s.callouts[ev.Callout.Key])
		s.calloutAdded(ev.Callout, s.callouts[ev.Callout.Key])
		s.callouts[ev.Callout.Key] = ev.Callout
		return true
	case events.CalloutDeleted:
		c, ok := s.callouts[ev.Callout.Key]
		if ok {
			s.sess.calloutOut(c)
			s.calloutRemoved(c)
		}
		delete(s.callouts, ev.Callout.Key)
		return ok
	case events.SessionOpened:
		s.sess.opened(ev.Session)
		return true
	case events.SessionClosed:
		return s.sess.closed(ev.Session)
	}
	return false
}

func (s *State) removeFilter(key string) bool {
	f, ok := s.filters[key]
	if !ok {
		return false
	}
	delete(s.filters, key)
	delete(s.byID, f.ID)
	s.byCallout.remove(f.CalloutKey, f)
	s.byLayer.remove(f.Layer, f)
	s.byProvider.remove(f.ProviderKey, f)
	s.sess.filterOut(f)
	s.layers.touch(f.Layer)
	s.removed(f)
	return true
}

// LastOnCallout is the stream sequence of the newest filter event naming
// callout key ("" for filters naming none) that the state has folded; 0
// if none. On a compacted log that event may be gone (a delete that
// expired): this is the newest the state has seen.
func (s *State) LastOnCallout(key string) uint64 { return s.lastOn[key] }

// Filter returns the live filter with key. The pointer is the state's own:
// callers that keep it past their lock must Clone it.
func (s *State) Filter(key string) (*events.Filter, bool) {
	f, ok := s.filters[key]
	return f, ok
}

// FilterByID returns the live filter with runtime id.
func (s *State) FilterByID(id uint64) (*events.Filter, bool) {
	f, ok := s.byID[id]
	return f, ok
}

// Callout returns the callout object with key.
func (s *State) Callout(key string) (*events.Callout, bool) {
	c, ok := s.callouts[key]
	return c, ok
}

// FiltersNaming counts the live filters whose action names callout key
// (0 for the empty key).
func (s *State) FiltersNaming(key string) int { return len(s.byCallout[key]) }

// Len returns the number of live filters and callouts.
func (s *State) Len() (filters, callouts int) { return len(s.filters), len(s.callouts) }

// Callouts returns every callout object, ordered by key.
func (s *State) Callouts() []*events.Callout {
	out := slices.Collect(maps.Values(s.callouts))
	slices.SortFunc(out, func(a, b *events.Callout) int { return cmp.Compare(a.Key, b.Key) })
	return out
}

// Template selects filters, as FWPM_FILTER_ENUM_TEMPLATE does: every
// non-empty field must match.
type Template struct {
	CalloutKey  string `json:"calloutKey,omitempty"`
	Layer       string `json:"layer,omitempty"`
	ProviderKey string `json:"providerKey,omitempty"`
}

// Filters returns the live filters matching t, ordered by id. It walks the
// narrowest index the template names.
func (s *State) Filters(t Template) []*events.Filter {
	var src map[string]*events.Filter
	switch {
	case t.CalloutKey != "":
		src = s.byCallout[t.CalloutKey]
	case t.Layer != "":
		src = s.byLayer[t.Layer]
	case t.ProviderKey != "":
		src = s.byProvider[t.ProviderKey]
	default:
		src = s.filters
	}
	out := make([]*events.Filter, 0, len(src))
	for _, f := range src {
		if t.Matches(f) {
			out = append(out, f)
		}
	}
	slices.SortFunc(out, func(a, b *events.Filter) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Matches reports whether f satisfies every non-empty field of t.
func (t Template) Matches(f *events.Filter) bool {
	return (t.CalloutKey == "" || f.CalloutKey == t.CalloutKey) &&
		(t.Layer == "" || f.Layer == t.Layer) &&
		(t.ProviderKey == "" || f.ProviderKey == t.ProviderKey)
}
