package classify

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/wfpnats/wfp/events"
)

// TestCompiledMatchesLinearScan checks the compiled layer (slots, grouping
// by field, precomputed order) against the plain scan on random filters and
// inputs, bad conditions included.
func TestCompiledMatchesLinearScan(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	pick := func(s ...string) string { return s[r.IntN(len(s))] }
	randCond := func() events.Condition {
		switch r.IntN(5) {
		case 0:
			return c(port, pick("", events.MatchEqual, events.MatchNotEqual, events.MatchGreater, events.MatchLess, events.MatchRange, events.MatchPrefix),
				pick("21", "22", "23", "80", "443", "20-25", "1000-2000", "x"))
		case 1:
			return c(proto, pick(events.MatchEqual, events.MatchNotEqual, events.MatchFlagsAnySet), pick("6", "17", "0x4", "300"))
		case 2:
			return c(raddr, pick(events.MatchEqual, events.MatchNotEqual, events.MatchPrefix, events.MatchRange, events.MatchGreater),
				pick("10.0.0.0/8", "10.1.2.0/24", "10.1.2.3", "10.1.2.0-10.1.2.9", "2001:db8::/32", "::/0", "10.0.0.0/40"))
		case 3:
			return c(app, pick(events.MatchEqual, events.MatchPrefix, events.MatchNotEqual),
				pick(`\device\harddiskvolume1\`, `\Device\HarddiskVolume1\app.exe`, `\device\other.exe`))
		}
		return c(pick("FLAGS", "NO_SUCH_FIELD"), pick(events.MatchFlagsAllSet, events.MatchFlagsNoneSet), pick("0x1", "0x3"))
	}
	actions := events.ActionTypes
	subs := []string{"", subHigh, subLow, events.SubLayerInspection}
	for round := range 200 {
		var filters []*events.Filter
		for i := range 1 + r.IntN(40) {
			f := &events.Filter{Key: fmt.Sprint("key", i), ID: uint64(r.IntN(30)), Name: fmt.Sprint("f", i), Layer: pick(testLayer, testLayer, "STREAM_V4"),
				SubLayerKey: subs[r.IntN(len(subs))], Weight: uint64(r.IntN(4)), Action: actions[r.IntN(len(actions))]}
			if f.Action.IsCallout() {
				f.CalloutKey = pick(calloutA, calloutB, "2e0a9b3f-9e77-4f20-84a3-8b5dbf415032")
			}
			if r.IntN(4) == 0 {
				f.Flags = []string{pick(events.FlagClearActionRight, events.FlagPermitIfCalloutUnregistered, events.FlagORConditions)}
			}
			for range r.IntN(4) {
				f.Conditions = append(f.Conditions, randCond())
			}
			filters = append(filters, f)
		}
		reg := &fake{says: map[string]Verdict{calloutA: Verdict(1 + r.IntN(3)), calloutB: Verdict(1 + r.IntN(3))}}
		l := Compile(testLayer, filters, weights)
		for range 10 {
			in := Values{}
			if r.IntN(5) > 0 {
				in[port] = pick("21", "22", "23", "80", "1500")
			}
			if r.IntN(5) > 0 {
				in[proto] = pick("6", "17")
			}
			if r.IntN(5) > 0 {
				in[raddr] = pick("10.1.2.3", "10.1.3.3", "11.0.0.1", "2001:db8::1")
			}
			if r.IntN(5) > 0 {
				in[app] = pick(`\device\harddiskvolume1\app.exe`, `\DEVICE\OTHER.EXE`)
			}
			if r.IntN(5) > 0 {
				in["FLAGS"] = pick("0x1", "0x2", "0x3")
			}
			got, err := l.Classify(t.Context(), in, reg)
			if err != nil {
				t.Fatal(err)
			}
			want, err := LinearScan(t.Context(), testLayer, in, filters, reg, weights)
			if err != nil {
				t.Fatal(err)
			}
			if d := diff(got, want); d != "" {
				t.Fatalf("round %d, input %v: compiled and linear scan differ: %s", round, in, d)
			}
		}
	}
}

func diff(a, b *Result) string {
	if a.Decision != b.Decision || a.DecidedBy != b.DecidedBy {
		return fmt.Sprintf("decision %v by %v vs %v by %v", a.Decision, a.DecidedBy, b.Decision, b.DecidedBy)
	}
	if len(a.Steps) != len(b.Steps) {
		return fmt.Sprintf("%d steps vs %d", len(a.Steps), len(b.Steps))
	}
	for i := range a.Steps {
		if x, y := a.Steps[i], b.Steps[i]; x.Filter != y.Filter || x.Evaluated != y.Evaluated || x.Verdict != y.Verdict {
			return fmt.Sprintf("step %d: %+v vs %+v", i, x, y)
		}
	}
	return ""
}

// benchFilters is a layer of n filters shaped like test/bench's: a remote
// port and a remote network each, every tenth also an application
// directory; mostly inspection callouts, some permits, weights 0-15.
func benchFilters(n int) []*events.Filter {
	filters := make([]*events.Filter, n)
	for i := range filters {
		f := &events.Filter{Key: fmt.Sprintf("%08d-0000-4000-8000-000000000000", i), ID: uint64(i + 1),
			Name: fmt.Sprintf("bench filter %027d", i), Layer: testLayer, Weight: uint64(i % 16),
			Action: events.ActionCalloutInspection, CalloutKey: calloutA,
			Conditions: []events.Condition{
				{Field: port, Match: events.MatchEqual, Value: strconv.Itoa(1024 + i%60000)},
				{Field: raddr, Match: events.MatchPrefix, Value: "10.1.2.0/24"},
			}}
		if i%10 == 0 {
			f.Conditions = append(f.Conditions, events.Condition{Field: app, Match: events.MatchPrefix, Value: `\device\harddiskvolume1\program files\`})
		}
		if i%50 == 0 {
			f.Action, f.CalloutKey = events.ActionPermit, ""
		}
		filters[i] = f
	}
	return filters
}

// benchInputs are connections that each match one or two filters of
// benchFilters(10000).
func benchInputs() []Values {
	var ins []Values
	for i := range 16 {
		ins = append(ins, Values{port: strconv.Itoa(1024 + i*613), raddr: "10.1.2." + strconv.Itoa(i+1), proto: "6",
			app: `\device\harddiskvolume1\program files\app` + strconv.Itoa(i) + `.exe`})
	}
	return ins
}

var continues = Callouts{calloutA: CalloutFunc(func(context.Context, *events.Filter, Values) (Verdict, error) { return Continue, nil })}

func TestBenchInputsMatch(t *testing.T) {
	l := Compile(testLayer, benchFilters(10000))
	for _, in := range benchInputs() {
		res, err := l.Classify(t.Context(), in, continues)
		if err != nil || len(res.Steps) == 0 {
			t.Fatalf("input %v matches %v (%v): the benchmark would measure misses only", in, res, err)
		}
	}
}

func BenchmarkClassify10k(b *testing.B) {
	l, ins := Compile(testLayer, benchFilters(10000)), benchInputs()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := l.Classify(b.Context(), ins[i%len(ins)], continues); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
}

func BenchmarkLinearScan10k(b *testing.B) {
	filters, ins := benchFilters(10000), benchInputs()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := LinearScan(b.Context(), testLayer, ins[i%len(ins)], filters, continues); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
}

func BenchmarkCompile10k(b *testing.B) {
	filters := benchFilters(10000)
	b.ReportAllocs()
	for b.Loop() {
		Compile(testLayer, filters)
	}
}
