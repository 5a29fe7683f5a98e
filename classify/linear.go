package classify

import (
	"context"
	"slices"

	"github.com/wfpnats/wfp/events"
)

// LinearScan classifies the plain way, for comparison (tests and
// benchmarks hold the compiled Layer to it): every call walks
// the filters as given, parses each condition and input value on the fly,
// groups conditions by field in a map, then sorts the matches into WFP's
// order. It shares the per-value parsing and the arbitration with the
// compiled path, so the two differ only in what Compile does up front.
func LinearScan(ctx context.Context, layer string, in Values, filters []*events.Filter, reg Registry, opts ...Option) (*Result, error) {
	weigher := &Layer{subWeights: map[string]uint16{}}
	for _, o := range opts {
		o(weigher)
	}
	layer = canonicalLayer(layer)
	var matched []*compiled
	for _, f := range filters {
		if canonicalLayer(f.Layer) != layer || !linearMatch(f, in) {
			continue
		}
		sub := subLayerOf(f)
		matched = append(matched, &compiled{f: f, subLayer: sub, subWeight: weigher.subLayerWeight(sub)})
	}
	slices.SortFunc(matched, func(a, b *compiled) int { return evalOrder(*a, *b) })
	return arbitrate(ctx, layer, matched, in, reg)
}

func linearMatch(f *events.Filter, in Values) bool {
	held := map[string]bool{} // field -> one of its conditions held
	for _, ec := range f.Conditions {
		field, k, err := compileCond(ec)
		if _, ok := held[field]; !ok {
			held[field] = false
		}
		text, given := in[field]
		if err != nil || !given {
			continue
		}
		_, t, _ := events.CanonicalField(field)
		v, err := parseInput(field, t, text)
		if err == nil && k.match(&v) {
			held[field] = true
		}
	}
	for _, ok := range held {
		if !ok {
			return false
		}
	}
	return true
}
