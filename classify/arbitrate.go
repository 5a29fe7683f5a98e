package classify

import (
	"context"
	"fmt"

	"github.com/wfpnats/wfp/events"
)

// outcome is what evaluating one matched filter gave.
type outcome struct {
	evaluated bool
	verdict   Verdict // Continue, Permit or Block; None when skipped
	hard      bool    // the verdict cannot be overridden by a later sublayer
	veto      bool    // a callout's block, which overrides even a hard permit
	reason    string
	err       error
}

// decides reports whether the outcome ends its sublayer's arbitration.
func (o outcome) decides() bool { return o.verdict == Permit || o.verdict == Block }

// arbitrate walks the matched filters in evaluation order. Within a
// sublayer the first permit or block decides it and the rest of the
// sublayer is not evaluated; every sublayer is walked, and their decisions
// combine as WFP's override policy says: a block is final, a permit can be
// overridden by a block in a later sublayer unless it is hard, and a hard
// permit only by a callout's block (a veto).
func arbitrate(ctx context.Context, layer string, matched []*compiled, in Values, reg Registry) (*Result, error) {
	r := &Result{Layer: layer, Steps: make([]Step, len(matched))}
	decision, hard, by := None, false, -1
	subDecider := -1 // the step that decided the current sublayer
	for i, c := range matched {
		s := &r.Steps[i]
		s.Filter, s.SubLayer = c.f, c.subLayer
		if i > 0 && c.subLayer != matched[i-1].subLayer {
			subDecider = -1
		}
		if decision == Block {
			s.Reason = fmt.Sprintf("not evaluated: filter %d blocked", r.Steps[by].Filter.ID)
			continue
		}
		if subDecider >= 0 {
			s.Reason = fmt.Sprintf("not evaluated: filter %d decided its sublayer", r.Steps[subDecider].Filter.ID)
			continue
		}
		o, err := evaluate(ctx, c.f, in, reg)
		if err != nil {
			return nil, err
		}
		s.Evaluated, s.Verdict, s.Reason, s.Err = o.evaluated, o.verdict, o.reason, o.err
		if !o.decides() {
			continue
		}
		subDecider = i
		switch {
		case decision == None, decision == Permit && !hard && o.verdict == Block:
			decision, hard, by = o.verdict, o.hard, i
		case decision == Permit && !hard && o.hard: // a hard permit after a soft one
			hard, by = true, i
		case decision == Permit && hard && o.verdict == Block && o.veto:
			s.Reason += fmt.Sprintf("; vetoes the hard permit of filter %d", r.Steps[by].Filter.ID)
			decision, by = Block, i
		case decision == Permit && hard && o.verdict == Block:
			s.Reason += fmt.Sprintf("; overridden by the hard permit of filter %d", r.Steps[by].Filter.ID)
		}
	}
	if decision == None {
		r.Decision, r.Reason = Permit, "no filter decided: permitted by default"
		return r, nil
	}
	f := r.Steps[by].Filter
	r.Decision, r.DecidedBy = decision, f
	r.Reason = fmt.Sprintf("%s by filter %d (%s)", pastTense(decision), f.ID, f.Name)
	return r, nil
}

func pastTense(v Verdict) string {
	if v == Block {
		return "blocked"
	}
	return "permitted"
}

// evaluate applies one matched filter's action, asking its callout if it
// names one. The error is ctx's, when it ended before or during a callout.
func evaluate(ctx context.Context, f *events.Filter, in Values, reg Registry) (outcome, error) {
	clearRight := f.HasFlag(events.FlagClearActionRight)
	switch f.Action {
	case events.ActionPermit:
		return outcome{evaluated: true, verdict: Permit, hard: clearRight, reason: "permit filter"}, nil
	case events.ActionBlock:
		return outcome{evaluated: true, verdict: Block, hard: true, reason: "block filter"}, nil
	case events.ActionCalloutInspection, events.ActionCalloutTerminating, events.ActionCalloutUnknown:
	default:
		return outcome{reason: fmt.Sprintf("not evaluated: unknown action %q", f.Action)}, nil
	}
	var co Callout
	ok := false
	if reg != nil {
		co, ok = reg.Lookup(f.CalloutKey)
	}
	if !ok {
		return unregistered(f, clearRight), nil
	}
	if err := ctx.Err(); err != nil {
		return outcome{}, err
	}
	said, err := co.Classify(ctx, f, in)
	if err != nil && ctx.Err() != nil {
		return outcome{}, ctx.Err()
	}
	if err == nil && said != Continue && said != Permit && said != Block {
		err = fmt.Errorf("callout returned %v, not continue, permit or block", said)
	}
	o := outcome{evaluated: true, err: err}
	switch {
	case f.Action == events.ActionCalloutInspection && err != nil:
		o.verdict, o.reason = Continue, fmt.Sprintf("inspection callout failed (%v): evaluation goes on", err)
	case f.Action == events.ActionCalloutInspection:
		o.verdict, o.reason = Continue, fmt.Sprintf("inspection callout said %v: evaluation goes on", said)
	case err != nil:
		o.verdict, o.hard, o.reason = Block, true, fmt.Sprintf("%s callout failed (%v): blocks", f.Action, err)
	case said == Continue && f.Action == events.ActionCalloutTerminating:
		o.verdict, o.hard, o.reason = Block, true, "terminating callout said continue, which it may not: blocks"
	case said == Continue:
		o.verdict, o.reason = Continue, "callout said continue"
	case said == Permit:
		o.verdict, o.hard, o.reason = Permit, clearRight, "callout said permit"
	default:
		o.verdict, o.hard, o.veto, o.reason = Block, true, true, "callout said block"
	}
	return o, nil
}

// unregistered is the outcome of a callout filter whose callout has no
// code registered (R8): an inspection filter is skipped, a terminating or
// unknown one acts as a block filter, or as a permit filter with
// PERMIT_IF_CALLOUT_UNREGISTERED.
func unregistered(f *events.Filter, clearRight bool) outcome {
	switch {
	case f.Action == events.ActionCalloutInspection:
		return outcome{reason: fmt.Sprintf("callout %s not registered: inspection filter skipped", f.CalloutKey)}
	case f.HasFlag(events.FlagPermitIfCalloutUnregistered):
		return outcome{evaluated: true, verdict: Permit, hard: clearRight,
			reason: fmt.Sprintf("callout %s not registered: permits (PERMIT_IF_CALLOUT_UNREGISTERED)", f.CalloutKey)}
	}
	return outcome{evaluated: true, verdict: Block, hard: true,
		reason: fmt.Sprintf("callout %s not registered: blocks", f.CalloutKey)}
}
