package projection

import (
	"cmp"
	"maps"
	"slices"

	"github.com/wfpnats/wfp/events"
)

// sessions is the part of State that knows dynamic sessions (R8): which are
// open, and which filters and callouts each holds, so that the engine can
// delete them when the session ends. A filter or callout belongs to the
// session its add event names; the index follows the live objects, so a
// delete (or a later add of the key outside the session) takes the object
// out of it.
type sessions struct {
	open     map[string]*events.Session
	filters  map[string]map[string]*events.Filter  // session id -> filter key -> filter
	callouts map[string]map[string]*events.Callout // session id -> callout key -> callout
}

func (ss *sessions) opened(s *events.Session) {
	if ss.open == nil {
		ss.open = make(map[string]*events.Session)
	}
	ss.open[s.ID] = s
}

func (ss *sessions) closed(s *events.Session) bool {
	_, ok := ss.open[s.ID]
	delete(ss.open, s.ID)
	return ok
}

func (ss *sessions) filterIn(f *events.Filter) {
	if f.Session != "" {
		put(&ss.filters, f.Session, f.Key, f)
	}
}

func (ss *sessions) filterOut(f *events.Filter) { drop(ss.filters, f.Session, f.Key) }

// calloutIn indexes c, replacing old (the callout of the same key it
// replaces, or nil).
func (ss *sessions) calloutIn(c, old *events.Callout) {
	if old != nil {
		ss.calloutOut(old)
	}
	if c.Session != "" {
		put(&ss.callouts, c.Session, c.Key, c)
	}
}

func (ss *sessions) calloutOut(c *events.Callout) { drop(ss.callouts, c.Session, c.Key) }

// put sets (*m)[outer][inner] = v, making the maps it needs.
func put[V any](m *map[string]map[string]V, outer, inner string, v V) {
	if *m == nil {
		*m = make(map[string]map[string]V)
	}
	in := (*m)[outer]
	if in == nil {
		in = make(map[string]V)
		(*m)[outer] = in
	}
	in[inner] = v
}

// drop deletes m[outer][inner], and m[outer] once it is empty.
func drop[V any](m map[string]map[string]V, outer, inner string) {
	if in := m[outer]; in != nil {
		delete(in, inner)
		if len(in) == 0 {
			delete(m, outer)
		}
	}
}

// Session returns the open session with id.
func (s *State) Session(id string) (*events.Session, bool) {
	v, ok := s.sess.open[id]
	return v, ok
}

// Sessions returns every open session, ordered by id.
func (s *State) Sessions() []*events.Session {
	out := slices.Collect(maps.Values(s.sess.open))
	slices.SortFunc(out, func(a, b *events.Session) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// SessionObjects returns the live filters (ordered by id) and callouts
// (ordered by key) added in session id. They stay listed after the
// session is closed if nothing deleted them.
func (s *State) SessionObjects(id string) ([]*events.Filter, []*events.Callout) {
	return sortedFilters(maps.Values(s.sess.filters[id])), sortedCallouts(maps.Values(s.sess.callouts[id]))
}

func sortedFilters(seq func(func(*events.Filter) bool)) []*events.Filter {
	out := slices.Collect(seq)
	slices.SortFunc(out, func(a, b *events.Filter) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

func sortedCallouts(seq func(func(*events.Callout) bool)) []*events.Callout {
	out := slices.Collect(seq)
	slices.SortFunc(out, func(a, b *events.Callout) int { return cmp.Compare(a.Key, b.Key) })
	return out
}

// Session returns the open session with id, as the staged events leave it.
func (o *Overlay) Session(id string) (*events.Session, bool) {
	if v, ok := o.sessions[id]; ok {
		return v, v != nil
	}
	return o.base.Session(id)
}

// SessionObjects returns session id's live objects as the staged events
// leave them.
func (o *Overlay) SessionObjects(id string) ([]*events.Filter, []*events.Callout) {
	baseF, baseC := o.base.SessionObjects(id)
	var fs []*events.Filter
	for _, f := range baseF {
		if _, staged := o.filters[f.Key]; !staged {
			fs = append(fs, f)
		}
	}
	for _, f := range o.filters {
		if f != nil && f.Session == id {
			fs = append(fs, f)
		}
	}
	var cs []*events.Callout
	for _, c := range baseC {
		if _, staged := o.callouts[c.Key]; !staged {
			cs = append(cs, c)
		}
	}
	for _, c := range o.callouts {
		if c != nil && c.Session == id {
			cs = append(cs, c)
		}
	}
	return sortedFilters(slices.Values(fs)), sortedCallouts(slices.Values(cs))
}
