package classify

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/wfpnats/wfp/events"
)

// DefaultSubLayerWeight is the weight of a sublayer the caller gave no
// weight for, except FWPM_SUBLAYER_INSPECTION, documented as the lowest
// weighted sublayer, whose default weight is 0.
const DefaultSubLayerWeight = 0x8000

// Option configures Compile.
type Option func(*Layer)

// WithSubLayerWeights gives sublayers (by key) their weights; WFP walks
// sublayers from the highest weight to the lowest. Keys are GUIDs in any
// case.
func WithSubLayerWeights(w map[string]uint16) Option {
	return func(l *Layer) {
		for k, v := range w {
			l.subWeights[strings.ToLower(k)] = v
		}
	}
}

// Layer is one layer's filters compiled for classify: in evaluation order,
// every condition value parsed once, the conditions of a filter grouped by
// field. A Layer is immutable; Classify may be called concurrently.
type Layer struct {
	name       string
	filters    []compiled
	conds      []cond
	slots      []string       // the known input fields the conditions read, by slot (at most one per known field)
	slotOf     map[string]int // canonical field name -> slot
	subWeights map[string]uint16
	invalid    []error
}

// compiled is one filter: its conditions are conds[from:to], sorted by slot
// so that each field's conditions are adjacent.
type compiled struct {
	f         *events.Filter
	subLayer  string
	subWeight uint16
	never     bool // a condition names an unknown field: its group can never hold
	from, to  int32
}

// Compile selects the filters of layer (names compared in their canonical
// form, see events.CanonicalLayer) and compiles them. It never fails: a
// condition that does not compile never matches, and is reported by
// Invalid. The Layer keeps the filters (results point to them): do not
// change them afterwards.
func Compile(layer string, filters []*events.Filter, opts ...Option) *Layer {
	l := &Layer{name: canonicalLayer(layer), slotOf: map[string]int{}, subWeights: map[string]uint16{}}
	for _, o := range opts {
		o(l)
	}
	for _, f := range filters {
		if f == nil || canonicalLayer(f.Layer) != l.name {
			continue
		}
		sub := subLayerOf(f)
		l.filters = append(l.filters, compiled{f: f, subLayer: sub, subWeight: l.subLayerWeight(sub)})
	}
	slices.SortFunc(l.filters, evalOrder)
	for i := range l.filters {
		l.compileConds(&l.filters[i])
	}
	return l
}

func canonicalLayer(name string) string {
	c, _ := events.CanonicalLayer(name)
	return c
}

// subLayerOf is the filter's sublayer key: FWPM_SUBLAYER_UNIVERSAL when it
// names none, as WFP puts such a filter there.
func subLayerOf(f *events.Filter) string {
	if f.SubLayerKey == "" {
		return events.SubLayerUniversal
	}
	return strings.ToLower(f.SubLayerKey)
}

func (l *Layer) subLayerWeight(key string) uint16 {
	if w, ok := l.subWeights[key]; ok {
		return w
	}
	if key == events.SubLayerInspection {
		return 0
	}
	return DefaultSubLayerWeight
}

// evalOrder is WFP's order: sublayers by weight, highest first (ties by
// key), then filters by weight, highest first, then by filter id and key
// so that the order never depends on the input's.
func evalOrder(a, b compiled) int {
	return cmp.Or(
		cmp.Compare(b.subWeight, a.subWeight),
		strings.Compare(a.subLayer, b.subLayer),
		cmp.Compare(b.f.Weight, a.f.Weight),
		cmp.Compare(a.f.ID, b.f.ID),
		strings.Compare(a.f.Key, b.f.Key),
	)
}

func (l *Layer) compileConds(c *compiled) {
	c.from = int32(len(l.conds))
	for i, ec := range c.f.Conditions {
		field, k, err := compileCond(ec)
		if err != nil {
			l.invalid = append(l.invalid, fmt.Errorf("filter %d (%s) conditions[%d]: %w", c.f.ID, c.f.Key, i, err))
		}
		if errors.Is(err, ErrUnknownField) {
			// Its field is no input slot: the group of that field has
			// nothing that can match, so neither has the filter.
			c.never = true
			continue
		}
		k.slot = uint16(l.slot(field))
		l.conds = append(l.conds, k)
	}
	c.to = int32(len(l.conds))
	slices.SortStableFunc(l.conds[c.from:c.to], func(a, b cond) int { return cmp.Compare(a.slot, b.slot) })
}

func (l *Layer) slot(field string) int {
	if i, ok := l.slotOf[field]; ok {
		return i
	}
	l.slotOf[field] = len(l.slots)
	l.slots = append(l.slots, field)
	return len(l.slots) - 1
}

// Name is the layer's canonical name.
func (l *Layer) Name() string { return l.name }

// Len is the number of filters compiled.
func (l *Layer) Len() int { return len(l.filters) }

// Invalid lists the conditions that did not compile (and so never match),
// each naming its filter and field.
func (l *Layer) Invalid() []error { return slices.Clone(l.invalid) }

// matches reports whether filter c's conditions hold for vals: conditions
// on the same field are OR-ed, groups of different fields AND-ed, and a
// filter without conditions matches everything.
func (l *Layer) matches(c *compiled, vals []input) bool {
	if c.never {
		return false
	}
	conds := l.conds[c.from:c.to]
	for i := 0; i < len(conds); {
		slot, hit := conds[i].slot, false
		for ; i < len(conds) && conds[i].slot == slot; i++ {
			if hit {
				continue
			}
			k, v := &conds[i], &vals[slot]
			if k.op == opEq { // the common case, tested inline: match does not inline
				hit = v.ok && v.fam == k.fam && v.n == k.a
			} else {
				hit = k.match(v)
			}
		}
		if !hit {
			return false
		}
	}
	return true
}
