package classify

import (
	"context"
	"fmt"

	"github.com/wfpnats/wfp/events"
)

// Values is the classify input: condition field name (with or without its
// FWPM_CONDITION_ prefix) -> value text, written as in conditions but always
// a single value (no mask, no range).
type Values map[string]string

// Verdict is what a filter or a callout says about the traffic.
type Verdict uint8

const (
	None     Verdict = iota // not evaluated
	Continue                // no decision: evaluation goes on
	Permit
	Block
)

var verdictNames = [...]string{None: "none", Continue: "continue", Permit: "permit", Block: "block"}

func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return fmt.Sprintf("verdict(%d)", v)
}

// MarshalText writes the verdict's name, so JSON output reads "permit".
func (v Verdict) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

// Callout is the classify side of a callout (its classifyFn): it is asked
// about traffic that matched filter f, whose action names it.
type Callout interface {
	Classify(ctx context.Context, f *events.Filter, in Values) (Verdict, error)
}

// CalloutFunc adapts a function to Callout.
type CalloutFunc func(ctx context.Context, f *events.Filter, in Values) (Verdict, error)

// Classify calls fn.
func (fn CalloutFunc) Classify(ctx context.Context, f *events.Filter, in Values) (Verdict, error) {
	return fn(ctx, f, in)
}

// Registry tells classify which callouts are registered (have code behind
// them) and reaches that code. A callout it does not know is unregistered
// (R8).
type Registry interface {
	Lookup(calloutKey string) (Callout, bool)
}

// Callouts is a Registry backed by a map of callout key to code.
type Callouts map[string]Callout

// Lookup returns the callout registered for key.
func (m Callouts) Lookup(key string) (Callout, bool) {
	c, ok := m[key]
	return c, ok
}

// Result is the outcome of one classify: the decision and every matched
// filter in evaluation order, so a CLI can print why.
type Result struct {
	Layer    string  `json:"layer"`
	Decision Verdict `json:"decision"` // Permit or Block
	// DecidedBy is the filter whose verdict stands; nil when no filter
	// decided and the default applied.
	DecidedBy *events.Filter `json:"decidedBy,omitempty"`
	Reason    string         `json:"reason"`
	Steps     []Step         `json:"steps"`
}

// Step is one matched filter.
type Step struct {
	Filter    *events.Filter `json:"filter"`
	SubLayer  string         `json:"subLayer"`
	Evaluated bool           `json:"evaluated"`
	Verdict   Verdict        `json:"verdict"` // what the filter (or its callout) said; None when not evaluated
	Reason    string         `json:"reason"`
	Err       error          `json:"-"` // the callout's error, if it returned one
}

// Classify compiles the filters of layer and classifies in against them;
// for more than one classify on the same filters, Compile once and call
// (*Layer).Classify.
func Classify(ctx context.Context, layer string, in Values, filters []*events.Filter, reg Registry) (*Result, error) {
	return Compile(layer, filters).Classify(ctx, in, reg)
}

// inline is how many input slots Classify keeps on the stack.
const inline = 16

// Classify matches in against the layer's filters and arbitrates the
// matches (see the package documentation). It fails only on bad input (an
// unknown field, a value that does not parse: a *FieldError) or when ctx
// ends before a callout is asked.
func (l *Layer) Classify(ctx context.Context, in Values, reg Registry) (*Result, error) {
	var buf [inline]input
	vals := buf[:0]
	if len(l.slots) > inline {
		vals = make([]input, len(l.slots))
	}
	vals = vals[:len(l.slots)]
	if err := l.parseValues(in, vals); err != nil {
		return nil, err
	}
	var matched []*compiled
	for i := range l.filters {
		if l.matches(&l.filters[i], vals) {
			matched = append(matched, &l.filters[i])
		}
	}
	return arbitrate(ctx, l.name, matched, in, reg)
}

// Match returns the filters that match in, in evaluation order, without
// arbitration or callouts.
func (l *Layer) Match(in Values) ([]*events.Filter, error) {
	vals := make([]input, len(l.slots))
	if err := l.parseValues(in, vals); err != nil {
		return nil, err
	}
	var out []*events.Filter
	for i := range l.filters {
		if l.matches(&l.filters[i], vals) {
			out = append(out, l.filters[i].f)
		}
	}
	return out, nil
}

// parseValues checks every input value, also those of fields no filter of
// the layer tests, and stores the ones the layer reads in their slots.
func (l *Layer) parseValues(in Values, vals []input) error {
	for name, text := range in {
		field, t, ok := events.CanonicalField(name)
		if !ok {
			return fieldErr(name, ErrUnknownField, "not a known condition field")
		}
		v, err := parseInput(field, t, text)
		if err != nil {
			return err
		}
		if i, ok := l.slotOf[field]; ok {
			if vals[i].ok {
				return fieldErr(field, ErrValue, "given twice")
			}
			vals[i] = v
		}
	}
	return nil
}

// UnmarshalText reads a verdict's name, so JSON that MarshalText wrote
// reads back.
func (v *Verdict) UnmarshalText(b []byte) error {
	for i, n := range verdictNames {
		if n == string(b) {
			*v = Verdict(i)
			return nil
		}
	}
	return fmt.Errorf("classify: %q is not a verdict (none, continue, permit, block)", b)
}
