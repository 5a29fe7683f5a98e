package projection

import "github.com/wfpnats/wfp/events"

// View is the read side that command validation needs. Both State and
// Overlay implement it.
type View interface {
	Filter(key string) (*events.Filter, bool)
	FilterByID(id uint64) (*events.Filter, bool)
	Callout(key string) (*events.Callout, bool)
	FiltersNaming(calloutKey string) int
	// Session returns an open dynamic session; SessionObjects the live
	// filters (by id) and callouts (by key) added in it.
	Session(id string) (*events.Session, bool)
	SessionObjects(id string) ([]*events.Filter, []*events.Callout)
}

var (
	_ View = (*State)(nil)
	_ View = (*Overlay)(nil)
)

// Overlay stages events on top of a State without changing it, so a batch
// of commands can be validated in order (the second add of one key in a
// batch sees the first) before anything is written. Discard it, or Reset
// it, if the write fails; fold the same events into the State if it lands.
type Overlay struct {
	base     View
	filters  map[string]*events.Filter // nil value: deleted in the overlay
	byID     map[uint64]*events.Filter // nil value: deleted in the overlay
	callouts map[string]*events.Callout
	naming   map[string]int             // callout key -> change in filters naming it
	sessions map[string]*events.Session // nil value: closed in the overlay
}

// NewOverlay returns an empty overlay on base. The base may itself be an
// overlay: a transaction validates its operations on top of its group's.
func NewOverlay(base View) *Overlay {
	o := &Overlay{base: base}
	o.Reset()
	return o
}

// Reset drops everything staged.
func (o *Overlay) Reset() {
	o.filters = make(map[string]*events.Filter)
	o.byID = make(map[uint64]*events.Filter)
	o.callouts = make(map[string]*events.Callout)
	o.naming = make(map[string]int)
	o.sessions = make(map[string]*events.Session)
}

// Apply stages ev as if stored at seq, with State.Apply's semantics.
func (o *Overlay) Apply(seq uint64, ev *events.Event) {
	if ev == nil || !ev.Known() {
		return
	}
	switch ev.Type {
	case events.FilterAdded:
		o.removeFilter(ev.Filter.Key)
		f := ev.Filter.Clone()
		f.ID = seq
		o.filters[f.Key] = f
		o.byID[seq] = f
		o.naming[f.CalloutKey]++
	case events.FilterDeleted:
		o.removeFilter(ev.Filter.Key)
	case events.CalloutAdded:
		o.callouts[ev.Callout.Key] = ev.Callout
	case events.CalloutDeleted:
		o.callouts[ev.Callout.Key] = nil
	case events.SessionOpened:
		o.sessions[ev.Session.ID] = ev.Session
	case events.SessionClosed:
		o.sessions[ev.Session.ID] = nil
	}
}

func (o *Overlay) removeFilter(key string) {
	if f, ok := o.Filter(key); ok {
		o.filters[key] = nil
		o.byID[f.ID] = nil
		o.naming[f.CalloutKey]--
	}
}

func (o *Overlay) Filter(key string) (*events.Filter, bool) {
	if f, ok := o.filters[key]; ok {
		return f, f != nil
	}
	return o.base.Filter(key)
}

func (o *Overlay) FilterByID(id uint64) (*events.Filter, bool) {
	if f, ok := o.byID[id]; ok {
		return f, f != nil
	}
	return o.base.FilterByID(id)
}

func (o *Overlay) Callout(key string) (*events.Callout, bool) {
	if c, ok := o.callouts[key]; ok {
		return c, c != nil
	}
	return o.base.Callout(key)
}

func (o *Overlay) FiltersNaming(key string) int {
	if key == "" {
		return 0 // as State: filters naming no callout are not counted
	}
	return o.base.FiltersNaming(key) + o.naming[key]
}
