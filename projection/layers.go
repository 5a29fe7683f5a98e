package projection

import (
	"github.com/wfpnats/wfp/events"
)

// layerVersions tells a reader that caches something per layer (the
// engine's compiled classify layers) when to rebuild it: a layer's version
// changes whenever a filter joins or leaves it. Layers are keyed by their
// canonical name (events.CanonicalLayer), so "FWPM_LAYER_X" and "X" are one
// layer.
type layerVersions struct {
	gen uint64
	of  map[string]uint64
}

func (lv *layerVersions) touch(layer string) {
	if lv.of == nil {
		lv.of = make(map[string]uint64)
	}
	c, _ := events.CanonicalLayer(layer)
	lv.gen++
	lv.of[c] = lv.gen
}

// LayerVersion returns a number that changes whenever the set of live
// filters in layer (any spelling of it) changes; 0 if it never had one.
func (s *State) LayerVersion(layer string) uint64 {
	c, _ := events.CanonicalLayer(layer)
	return s.layers.of[c]
}

// LayerFilters returns the live filters of layer, compared in canonical
// form, in no particular order. The pointers are the state's own (see
// Filter).
func (s *State) LayerFilters(layer string) []*events.Filter {
	want, _ := events.CanonicalLayer(layer)
	var out []*events.Filter
	for name, m := range s.byLayer {
		if c, _ := events.CanonicalLayer(name); c != want {
			continue
		}
		for _, f := range m {
			out = append(out, f)
		}
	}
	return out
}
