package classify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/wfpnats/wfp/events"
)

const (
	calloutA = "0c8e7f1d-7c55-4d0e-a2e1-6f3b9d2f4e10"
	calloutB = "1d9f8a2e-8d66-4e1f-b3f2-7a4cae304f21"
	subHigh  = "aaaaaaaa-0000-4000-8000-000000000001"
	subLow   = "bbbbbbbb-0000-4000-8000-000000000002"
)

// fake is a registry whose callouts answer from a table and log their
// calls.
type fake struct {
	says  map[string]Verdict
	errs  map[string]error
	calls []uint64 // filter ids, in call order
	seen  []Values
}

func (r *fake) Lookup(key string) (Callout, bool) {
	_, said := r.says[key]
	_, failed := r.errs[key]
	if !said && !failed {
		return nil, false
	}
	return CalloutFunc(func(_ context.Context, f *events.Filter, in Values) (Verdict, error) {
		r.calls = append(r.calls, f.ID)
		r.seen = append(r.seen, in)
		return r.says[key], r.errs[key]
	}), true
}

// flt builds a filter of testLayer without conditions (it matches
// everything) with id and weight.
func flt(id, weight uint64, action events.ActionType, opts ...func(*events.Filter)) *events.Filter {
	f := &events.Filter{Key: fmt.Sprintf("%08d-0000-4000-8000-000000000000", id), ID: id, Name: fmt.Sprint("f", id),
		Layer: testLayer, Weight: weight, Action: action}
	if action.IsCallout() {
		f.CalloutKey = calloutA
	}
	for _, o := range opts {
		o(f)
	}
	return f
}

func callout(key string) func(*events.Filter) { return func(f *events.Filter) { f.CalloutKey = key } }
func sub(key string) func(*events.Filter)     { return func(f *events.Filter) { f.SubLayerKey = key } }
func flag(fl string) func(*events.Filter) {
	return func(f *events.Filter) { f.Flags = append(f.Flags, fl) }
}
func conds(cs ...events.Condition) func(*events.Filter) {
	return func(f *events.Filter) { f.Conditions = cs }
}

var weights = WithSubLayerWeights(map[string]uint16{subHigh: 0xf000, strings.ToUpper(subLow): 0x100})

func TestOrder(t *testing.T) {
	inspection := events.SubLayerInspection
	filters := []*events.Filter{
		flt(1, 1, events.ActionPermit),
		flt(2, 5, events.ActionPermit),
		flt(3, 5, events.ActionPermit, func(f *events.Filter) { f.Key = "0" }), // id before key
		flt(4, 0, events.ActionPermit, sub(subLow)),
		flt(5, 99, events.ActionPermit, sub(inspection)),
		flt(6, 0, events.ActionPermit, sub(subHigh)),
		flt(7, 1, events.ActionPermit, sub(events.SubLayerUniversal)), // the default sublayer, named
		flt(8, 1<<63, events.ActionPermit, sub(subLow)),
		{ID: 9, Key: "b", Layer: testLayer, Weight: 7, Action: events.ActionPermit},
		{ID: 9, Key: "a", Layer: testLayer, Weight: 7, Action: events.ActionPermit},                       // same id: key decides
		flt(10, 1000, events.ActionBlock, func(f *events.Filter) { f.Layer = "ALE_AUTH_RECV_ACCEPT_V4" }), // other layer
		flt(11, 3, events.ActionPermit, func(f *events.Filter) { f.Layer = "FWPM_LAYER_ALE_AUTH_CONNECT_V4" }),
	}
	// subHigh (0xf000), then universal (default 0x8000), then subLow
	// (0x100), then inspection (0); by weight, id and key within each.
	want := []string{"f6", "a", "b", "f2", "f3", "f11", "f1", "f7", "f8", "f4", "f5"}
	for i := range 5 {
		shuffled := slices.Clone(filters)
		rand.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		l := Compile("fwpm_layer_ale_auth_connect_v4", shuffled, weights)
		got, err := l.Match(Values{})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, f := range got {
			names = append(names, cmpName(f))
		}
		if !slices.Equal(names, want) {
			t.Fatalf("shuffle %d: order %v, want %v", i, names, want)
		}
	}
}

func cmpName(f *events.Filter) string {
	if f.Name == "" {
		return f.Key
	}
	return f.Name
}

func TestDefaultSubLayerOrder(t *testing.T) {
	// Without weights: every sublayer weighs the same but inspection,
	// the lowest; equal weights go by key.
	l := Compile(testLayer, []*events.Filter{
		flt(1, 0, events.ActionPermit, sub(events.SubLayerInspection)),
		flt(2, 0, events.ActionPermit, sub(subLow)),
		flt(3, 0, events.ActionPermit),
		flt(4, 0, events.ActionPermit, sub(subHigh)),
	})
	got, _ := l.Match(Values{})
	var ids []uint64
	for _, f := range got {
		ids = append(ids, f.ID)
	}
	// subHigh "aaaa…" < subLow "bbbb…" < universal "eebe…", then inspection.
	if want := []uint64{4, 2, 3, 1}; !slices.Equal(ids, want) {
		t.Fatalf("order %v, want %v", ids, want)
	}
}

type stepWant struct {
	id        uint64
	evaluated bool
	verdict   Verdict
	reason    string // a substring of the step's reason
}

func TestDecision(t *testing.T) {
	ta, ia, ua := events.ActionCalloutTerminating, events.ActionCalloutInspection, events.ActionCalloutUnknown
	permit, block := events.ActionPermit, events.ActionBlock
	failed := errors.New("agent gone")
	for _, tc := range []struct {
		name     string
		filters  []*events.Filter
		says     map[string]Verdict
		errs     map[string]error
		nilReg   bool
		decision Verdict
		by       uint64 // 0: the default decided
		calls    []uint64
		steps    []stepWant
	}{
		{name: "nothing matches: permit by default", decision: Permit,
			filters: []*events.Filter{flt(1, 0, block, conds(c(port, "", "1")))}},
		{name: "permit decides", decision: Permit, by: 1,
			filters: []*events.Filter{flt(1, 10, permit), flt(2, 5, block)},
			steps:   []stepWant{{1, true, Permit, "permit filter"}, {2, false, None, "not evaluated: filter 1 decided"}}},
		{name: "block decides", decision: Block, by: 1,
			filters: []*events.Filter{flt(1, 10, block), flt(2, 5, permit)},
			steps:   []stepWant{{1, true, Block, "block filter"}, {2, false, None, "not evaluated: filter 1 blocked"}}},
		{name: "inspection goes on whatever it says", decision: Permit, by: 2,
			filters: []*events.Filter{flt(1, 10, ia), flt(2, 5, permit)}, says: map[string]Verdict{calloutA: Block}, calls: []uint64{1},
			steps: []stepWant{{1, true, Continue, "said block"}, {2, true, Permit, ""}}},
		{name: "terminating permit decides", decision: Permit, by: 1,
			filters: []*events.Filter{flt(1, 10, ta), flt(2, 5, block)}, says: map[string]Verdict{calloutA: Permit}, calls: []uint64{1}},
		{name: "terminating block decides", decision: Block, by: 1,
			filters: []*events.Filter{flt(1, 10, ta), flt(2, 5, permit)}, says: map[string]Verdict{calloutA: Block}, calls: []uint64{1}},
		{name: "terminating continue blocks", decision: Block, by: 1,
			filters: []*events.Filter{flt(1, 10, ta), flt(2, 5, permit)}, says: map[string]Verdict{calloutA: Continue}, calls: []uint64{1},
			steps: []stepWant{{1, true, Block, "may not"}, {2, false, None, ""}}},
		{name: "unknown continue goes on", decision: Block, by: 2,
			filters: []*events.Filter{flt(1, 10, ua), flt(2, 5, block)}, says: map[string]Verdict{calloutA: Continue}, calls: []uint64{1},
			steps: []stepWant{{1, true, Continue, "said continue"}, {2, true, Block, ""}}},
		{name: "unknown permit decides", decision: Permit, by: 1,
			filters: []*events.Filter{flt(1, 10, ua), flt(2, 5, block)}, says: map[string]Verdict{calloutA: Permit}, calls: []uint64{1}},
		{name: "a mix, in order", decision: Block, by: 4,
			filters: []*events.Filter{flt(1, 50, ia), flt(2, 40, ua, callout(calloutB)), flt(3, 30, ia), flt(4, 20, ta, callout(calloutB)), flt(5, 10, permit)},
			says:    map[string]Verdict{calloutA: Permit, calloutB: Continue}, calls: []uint64{1, 2, 3, 4},
			steps: []stepWant{{1, true, Continue, ""}, {2, true, Continue, ""}, {3, true, Continue, ""}, {4, true, Block, "may not"}, {5, false, None, "filter 4 blocked"}}},
		{name: "failing terminating callout blocks", decision: Block, by: 1,
			filters: []*events.Filter{flt(1, 10, ta), flt(2, 5, permit)}, errs: map[string]error{calloutA: failed}, calls: []uint64{1},
			steps: []stepWant{{1, true, Block, "agent gone"}, {2, false, None, ""}}},
		{name: "failing inspection callout goes on", decision: Permit, by: 2,
			filters: []*events.Filter{flt(1, 10, ia), flt(2, 5, permit)}, errs: map[string]error{calloutA: failed}, calls: []uint64{1},
			steps: []stepWant{{1, true, Continue, "agent gone"}, {2, true, Permit, ""}}},
		{name: "a callout answering no verdict fails", decision: Block, by: 1,
			filters: []*events.Filter{flt(1, 10, ua), flt(2, 5, permit)}, says: map[string]Verdict{calloutA: None}, calls: []uint64{1},
			steps: []stepWant{{1, true, Block, "not continue, permit or block"}, {2, false, None, ""}}},
		// R8: unregistered callouts.
		{name: "unregistered terminating blocks", decision: Block, by: 1,
			filters: []*events.Filter{flt(1, 10, ta), flt(2, 5, permit)},
			steps:   []stepWant{{1, true, Block, "not registered: blocks"}, {2, false, None, ""}}},
		{name: "unregistered unknown blocks", decision: Block, by: 1,
			filters: []*events.Filter{flt(1, 10, ua), flt(2, 5, permit)}, nilReg: true},
		{name: "unregistered terminating with PERMIT_IF_CALLOUT_UNREGISTERED permits", decision: Permit, by: 1,
			filters: []*events.Filter{flt(1, 10, ta, flag(events.FlagPermitIfCalloutUnregistered)), flt(2, 5, block)},
			steps:   []stepWant{{1, true, Permit, "PERMIT_IF_CALLOUT_UNREGISTERED"}, {2, false, None, ""}}},
		{name: "unregistered unknown with PERMIT_IF_CALLOUT_UNREGISTERED permits", decision: Permit, by: 1,
			filters: []*events.Filter{flt(1, 10, ua, flag(events.FlagPermitIfCalloutUnregistered)), flt(2, 5, block)}},
		{name: "registered terminating ignores PERMIT_IF_CALLOUT_UNREGISTERED", decision: Block, by: 1,
			filters: []*events.Filter{flt(1, 10, ta, flag(events.FlagPermitIfCalloutUnregistered))}, says: map[string]Verdict{calloutA: Block}, calls: []uint64{1}},
		{name: "unregistered inspection is skipped", decision: Block, by: 2,
			filters: []*events.Filter{flt(1, 10, ia, callout(calloutB)), flt(2, 5, block)}, says: map[string]Verdict{calloutA: Permit},
			steps: []stepWant{{1, false, None, "inspection filter skipped"}, {2, true, Block, ""}}},
		{name: "only an unregistered inspection: default", decision: Permit,
			filters: []*events.Filter{flt(1, 10, ia)}, nilReg: true},
		// Sublayers.
		{name: "a later sublayer's block overrides a permit", decision: Block, by: 2,
			filters: []*events.Filter{flt(1, 0, permit, sub(subHigh)), flt(2, 9, block, sub(subLow)), flt(3, 0, permit, sub(subLow))},
			steps:   []stepWant{{1, true, Permit, ""}, {2, true, Block, ""}, {3, false, None, "filter 2 blocked"}}},
		{name: "a block ends evaluation of later sublayers", decision: Block, by: 1,
			filters: []*events.Filter{flt(1, 0, block, sub(subHigh)), flt(2, 0, ia, sub(subLow))}, says: map[string]Verdict{calloutA: Continue},
			steps: []stepWant{{1, true, Block, ""}, {2, false, None, "filter 1 blocked"}}},
		{name: "later sublayers still see permitted traffic", decision: Permit, by: 1,
			filters: []*events.Filter{flt(1, 9, permit, sub(subHigh)), flt(2, 0, permit, sub(subHigh)), flt(3, 0, ia, sub(subLow))},
			says:    map[string]Verdict{calloutA: Continue}, calls: []uint64{3},
			steps: []stepWant{{1, true, Permit, ""}, {2, false, None, "filter 1 decided its sublayer"}, {3, true, Continue, ""}}},
		{name: "a hard permit stands against a block filter", decision: Permit, by: 1,
			filters: []*events.Filter{flt(1, 0, permit, sub(subHigh), flag(events.FlagClearActionRight)), flt(2, 0, block, sub(subLow))},
			steps:   []stepWant{{1, true, Permit, ""}, {2, true, Block, "overridden by the hard permit of filter 1"}}},
		{name: "a callout's block vetoes a hard permit", decision: Block, by: 2,
			filters: []*events.Filter{flt(1, 0, permit, sub(subHigh), flag(events.FlagClearActionRight)), flt(2, 0, ta, sub(subLow))},
			says:    map[string]Verdict{calloutA: Block}, calls: []uint64{2},
			steps: []stepWant{{1, true, Permit, ""}, {2, true, Block, "vetoes the hard permit of filter 1"}}},
		{name: "a hard permit after a soft one takes over", decision: Permit, by: 2,
			filters: []*events.Filter{flt(1, 0, permit, sub(subHigh)), flt(2, 0, ta, sub(subLow), flag(events.FlagClearActionRight)),
				flt(3, 0, block, sub(events.SubLayerInspection))},
			says: map[string]Verdict{calloutA: Permit}, calls: []uint64{2},
			steps: []stepWant{{1, true, Permit, ""}, {2, true, Permit, ""}, {3, true, Block, "overridden by the hard permit of filter 2"}}},
		{name: "an unregistered callout's block is no veto", decision: Permit, by: 1,
			filters: []*events.Filter{flt(1, 0, permit, sub(subHigh), flag(events.FlagClearActionRight)), flt(2, 0, ta, sub(subLow))},
			steps:   []stepWant{{1, true, Permit, ""}, {2, true, Block, "overridden"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := &fake{says: tc.says, errs: tc.errs}
			var r Registry = reg
			if tc.nilReg {
				r = nil
			}
			in := Values{port: "22"}
			res, err := Compile(testLayer, tc.filters, weights).Classify(t.Context(), in, r)
			if err != nil {
				t.Fatal(err)
			}
			if res.Decision != tc.decision {
				t.Fatalf("decision %v (%s), want %v", res.Decision, res.Reason, tc.decision)
			}
			switch {
			case tc.by == 0 && res.DecidedBy != nil:
				t.Fatalf("decided by filter %d, want the default", res.DecidedBy.ID)
			case tc.by != 0 && (res.DecidedBy == nil || res.DecidedBy.ID != tc.by):
				t.Fatalf("decided by %v (%s), want filter %d", res.DecidedBy, res.Reason, tc.by)
			}
			if !slices.Equal(reg.calls, tc.calls) {
				t.Fatalf("callouts called for filters %v, want %v", reg.calls, tc.calls)
			}
			for _, seen := range reg.seen {
				if seen[port] != "22" {
					t.Fatalf("callout saw input %v", seen)
				}
			}
			for i, w := range tc.steps {
				s := res.Steps[i]
				if s.Filter.ID != w.id || s.Evaluated != w.evaluated || s.Verdict != w.verdict || !strings.Contains(s.Reason, w.reason) {
					t.Fatalf("step %d = {%d %v %v %q}, want %+v", i, s.Filter.ID, s.Evaluated, s.Verdict, s.Reason, w)
				}
			}
		})
	}
}

func TestCalloutError(t *testing.T) {
	failed := errors.New("agent gone")
	reg := &fake{errs: map[string]error{calloutA: failed}}
	res, err := Classify(t.Context(), testLayer, Values{}, []*events.Filter{flt(1, 0, events.ActionCalloutTerminating)}, reg)
	if err != nil || !errors.Is(res.Steps[0].Err, failed) {
		t.Fatalf("step error %v (%v), want the callout's", res.Steps[0].Err, err)
	}
}

func TestContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	reg := &fake{says: map[string]Verdict{calloutA: Permit}}
	_, err := Classify(ctx, testLayer, Values{}, []*events.Filter{flt(1, 0, events.ActionCalloutTerminating)}, reg)
	if !errors.Is(err, context.Canceled) || len(reg.calls) != 0 {
		t.Fatalf("Classify = %v after %d calls, want context.Canceled before any", err, len(reg.calls))
	}
	// A callout that fails because its context ended stops classify too.
	ctx, cancel = context.WithCancel(t.Context())
	stop := Callouts{calloutA: CalloutFunc(func(context.Context, *events.Filter, Values) (Verdict, error) {
		cancel()
		return None, errors.New("interrupted")
	})}
	if _, err := Classify(ctx, testLayer, Values{}, []*events.Filter{flt(1, 0, events.ActionCalloutTerminating)}, stop); !errors.Is(err, context.Canceled) {
		t.Fatalf("Classify = %v, want context.Canceled", err)
	}
	// Without callouts the context is not consulted: nothing waits.
	if res, err := Classify(ctx, testLayer, Values{}, []*events.Filter{flt(1, 0, events.ActionBlock)}, nil); err != nil || res.Decision != Block {
		t.Fatalf("Classify = %v, %v", res, err)
	}
}

func TestResultJSON(t *testing.T) {
	res, err := Classify(t.Context(), testLayer, Values{port: "22"},
		[]*events.Filter{flt(1, 0, events.ActionBlock, conds(c(port, "", "22")))}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"decision":"block"`, `"verdict":"block"`, `"filterId":1`, `"evaluated":true`} {
		if !strings.Contains(string(b), want) {
			t.Fatalf("%s lacks %s", b, want)
		}
	}
}

// TestConcurrentClassify: a Layer is shared by concurrent classifies (run
// with -race).
func TestConcurrentClassify(t *testing.T) {
	l := Compile(testLayer, benchFilters(500))
	done := make(chan error)
	for _, in := range benchInputs()[:4] {
		go func() {
			res, err := l.Classify(t.Context(), in, continues)
			if err == nil && res.Decision != Permit {
				err = fmt.Errorf("decision %v", res.Decision)
			}
			done <- err
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

func TestVerdictTextRoundTrip(t *testing.T) {
	for _, v := range []Verdict{None, Continue, Permit, Block} {
		b, _ := v.MarshalText()
		var got Verdict
		if err := got.UnmarshalText(b); err != nil || got != v {
			t.Fatalf("%v: read back %v, %v", v, got, err)
		}
	}
	var v Verdict
	if err := v.UnmarshalText([]byte("allow")); err == nil {
		t.Fatal("accepted a verdict that does not exist")
	}
}
