package projection

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/google/uuid"
	"github.com/wfpnats/wfp/events"
)

type logEntry struct {
	seq     uint64
	subject string
	ev      *events.Event
}

var subj = events.Subjects{Prefix: "wfp"}

// randomLog builds a log of valid operations, as the engine would write it:
// filters name existing callouts, callouts are deleted only when unused,
// keys are reused after delete, and garbage is sprinkled in.
func randomLog(r *rand.Rand, n int) []logEntry {
	st := New()
	var log []logEntry
	var calloutKeys, filterKeys []string
	for seq := uint64(1); seq <= uint64(n); seq++ {
		var ev *events.Event
		switch op := r.IntN(10); {
		case op == 0: // garbage or an unknown type: takes a sequence, changes nothing
			ev = &events.Event{Schema: 1, Type: "FilterRenamed", Filter: &events.Filter{Key: "x"}}
		case op <= 2 || len(calloutKeys) == 0:
			k := uuid.NewString()
			if len(calloutKeys) > 0 && r.IntN(3) == 0 {
				k = calloutKeys[r.IntN(len(calloutKeys))] // re-add after delete, if it was deleted
				if _, ok := st.Callout(k); ok {
					k = uuid.NewString()
				}
			}
			calloutKeys = append(calloutKeys, k)
			ev = events.NewCalloutEvent(events.CalloutAdded, &events.Callout{Key: k, Name: "c" + k[:4]})
		case op == 3:
			k := calloutKeys[r.IntN(len(calloutKeys))]
			c, ok := st.Callout(k)
			if !ok || st.FiltersNaming(k) > 0 {
				ev = &events.Event{Schema: 1, Type: "Unknown"}
				break
			}
			ev = events.NewCalloutEvent(events.CalloutDeleted, c.Clone())
		case op <= 7:
			k := uuid.NewString()
			if len(filterKeys) > 0 && r.IntN(4) == 0 {
				if old := filterKeys[r.IntN(len(filterKeys))]; !hasFilter(st, old) {
					k = old
				}
			}
			f := &events.Filter{Key: k, Name: "f", Layer: fmt.Sprint("L", r.IntN(3)), Action: events.ActionBlock,
				ProviderKey: fmt.Sprint("P", r.IntN(2))}
			if ck := calloutKeys[r.IntN(len(calloutKeys))]; r.IntN(3) > 0 {
				if _, ok := st.Callout(ck); ok {
					f.Action, f.CalloutKey = events.ActionCalloutInspection, ck
				}
			}
			filterKeys = append(filterKeys, k)
			ev = events.NewFilterEvent(events.FilterAdded, f)
		default:
			if len(filterKeys) == 0 {
				continue
			}
			f, ok := st.Filter(filterKeys[r.IntN(len(filterKeys))])
			if !ok {
				ev = &events.Event{Schema: 9, Type: events.FilterDeleted, Filter: &events.Filter{Key: "y"}}
				break
			}
			ev = events.NewFilterEvent(events.FilterDeleted, f.Clone())
		}
		subject := "wfp.filter._.garbage"
		if ev.Known() {
			if ev.Filter != nil {
				subject = subj.Filter(ev.Filter)
			} else {
				subject = subj.Callout(ev.Callout.Key)
			}
		}
		st.Apply(seq, copyEvent(ev))
		log = append(log, logEntry{seq, subject, ev})
	}
	return log
}

func hasFilter(s *State, k string) bool { _, ok := s.Filter(k); return ok }

// copyEvent gives each fold its own filter, since Apply takes ownership.
func copyEvent(ev *events.Event) *events.Event {
	c := *ev
	c.Filter, c.Callout = ev.Filter.Clone(), ev.Callout.Clone()
	return &c
}

func fold(log []logEntry) *State {
	s := New()
	for _, e := range log {
		s.Apply(e.seq, copyEvent(e.ev))
	}
	return s
}

func lastPerSubject(log []logEntry) []logEntry {
	last := map[string]int{}
	for i, e := range log {
		last[e.subject] = i
	}
	var out []logEntry
	for i, e := range log {
		if last[e.subject] == i {
			out = append(out, e)
		}
	}
	return out
}

// dump is a canonical form of everything a State answers.
func dump(s *State) map[string]any {
	d := map[string]any{"callouts": s.Callouts()}
	var byID []uint64
	for _, f := range s.Filters(Template{}) {
		byID = append(byID, f.ID)
		if g, ok := s.FilterByID(f.ID); !ok || g != f {
			panic("byID index out of step")
		}
	}
	d["filters"] = s.Filters(Template{})
	d["ids"] = byID
	for _, c := range s.Callouts() {
		d["naming "+c.Key] = s.FiltersNaming(c.Key)
		d["callout "+c.Key] = s.Filters(Template{CalloutKey: c.Key})
	}
	for _, l := range []string{"L0", "L1", "L2"} {
		for _, p := range []string{"", "P0", "P1"} {
			d["layer "+l+p] = s.Filters(Template{Layer: l, ProviderKey: p})
		}
	}
	return d
}

// The replay guarantee the design rests on: the last event of every subject
// folds to the same state as the whole log.
func TestFoldLastPerSubjectEqualsFullFold(t *testing.T) {
	for i := range 200 {
		r := rand.New(rand.NewPCG(uint64(i), 7))
		log := randomLog(r, 1+r.IntN(300))
		full, snap := fold(log), fold(lastPerSubject(log))
		if !reflect.DeepEqual(dump(full), dump(snap)) {
			t.Fatalf("seed %d: last-per-subject fold differs from the full fold", i)
		}
		if full.Seq() != log[len(log)-1].seq {
			t.Fatalf("seed %d: position %d, want %d", i, full.Seq(), log[len(log)-1].seq)
		}
	}
}

// An overlay answers exactly as the state would after the same events.
func TestOverlayMatchesApply(t *testing.T) {
	for i := range 100 {
		r := rand.New(rand.NewPCG(uint64(i), 9))
		log := randomLog(r, 2+r.IntN(200))
		cut := r.IntN(len(log))
		base := fold(log[:cut])
		o := NewOverlay(base)
		for _, e := range log[cut:] {
			o.Apply(e.seq, copyEvent(e.ev))
		}
		want := fold(log)
		for _, e := range log {
			for _, key := range keysOf(e.ev) {
				gf, gok := o.Filter(key)
				wf, wok := want.Filter(key)
				if gok != wok || (gok && !reflect.DeepEqual(gf, wf)) {
					t.Fatalf("seed %d: overlay filter %s = %v,%v want %v,%v", i, key, gf, gok, wf, wok)
				}
				if _, ok := o.FilterByID(e.seq); ok != hasID(want, e.seq) {
					t.Fatalf("seed %d: overlay FilterByID(%d) = %v", i, e.seq, ok)
				}
				_, gok = o.Callout(key)
				_, wok = want.Callout(key)
				if gok != wok || o.FiltersNaming(key) != want.FiltersNaming(key) {
					t.Fatalf("seed %d: overlay callout %s differs", i, key)
				}
			}
		}
		if !reflect.DeepEqual(dump(base), dump(fold(log[:cut]))) {
			t.Fatalf("seed %d: overlay changed its base", i)
		}
	}
}

func hasID(s *State, id uint64) bool { _, ok := s.FilterByID(id); return ok }

func keysOf(ev *events.Event) []string {
	var out []string
	if ev.Filter != nil {
		out = append(out, ev.Filter.Key, ev.Filter.CalloutKey)
	}
	if ev.Callout != nil {
		out = append(out, ev.Callout.Key)
	}
	return out
}

func TestApplyUnknownOnlyMovesPosition(t *testing.T) {
	s := New()
	s.Apply(5, &events.Event{Schema: 1, Type: "Mystery"})
	s.Apply(6, nil)
	if n, c := s.Len(); s.Seq() != 6 || n != 0 || c != 0 {
		t.Fatalf("seq %d, %d filters, %d callouts", s.Seq(), n, c)
	}
}
