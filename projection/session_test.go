package projection

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/google/uuid"
	"github.com/wfpnats/wfp/events"
)

// sessionLog is a log as the engine writes it with dynamic sessions: objects
// are added in open sessions or none, and a session ends with the deletes
// of its filters, then its callouts, then SessionClosed.
func sessionLog(r *rand.Rand, n int) []logEntry {
	st := New()
	var log []logEntry
	seq := uint64(0)
	write := func(ev *events.Event) {
		seq++
		var subject string
		switch {
		case ev.Filter != nil:
			subject = subj.Filter(ev.Filter)
		case ev.Callout != nil:
			subject = subj.Callout(ev.Callout.Key)
		default:
			subject = subj.Session(ev.Session.ID)
		}
		st.Apply(seq, copyEvent(ev))
		log = append(log, logEntry{seq, subject, ev})
	}
	var ids []string
	pickOpen := func() string {
		if open := st.Sessions(); len(open) > 0 && r.IntN(3) > 0 {
			return open[r.IntN(len(open))].ID
		}
		return ""
	}
	for len(log) < n {
		switch op := r.IntN(10); {
		case op == 0 || len(ids) == 0:
			id := uuid.NewString()
			ids = append(ids, id)
			write(events.NewSessionEvent(events.SessionOpened, &events.Session{ID: id, Dynamic: true, LeaseMs: 1000}))
		case op == 1:
			s, ok := st.Session(ids[r.IntN(len(ids))])
			if !ok {
				continue
			}
			fs, cs := st.SessionObjects(s.ID)
			for _, f := range fs {
				write(events.NewFilterEvent(events.FilterDeleted, f.Clone()))
			}
			for _, c := range cs {
				write(events.NewCalloutEvent(events.CalloutDeleted, c.Clone()))
			}
			write(events.NewSessionEvent(events.SessionClosed, s.Clone()))
		case op <= 3:
			write(events.NewCalloutEvent(events.CalloutAdded, &events.Callout{Key: uuid.NewString(), Name: "c", Session: pickOpen()}))
		case op <= 7:
			f := &events.Filter{Key: uuid.NewString(), Name: "f", Layer: fmt.Sprint("ALE_AUTH_CONNECT_V", 4+2*r.IntN(2)),
				Action: events.ActionBlock, Session: pickOpen()}
			if r.IntN(2) == 0 {
				f.Layer = "FWPM_LAYER_" + f.Layer // another spelling of the same layer
			}
			// Name a callout of the same session, or a permanent one.
			for _, c := range st.Callouts() {
				if c.Session == f.Session || c.Session == "" {
					f.Action, f.CalloutKey = events.ActionCalloutTerminating, c.Key
					break
				}
			}
			write(events.NewFilterEvent(events.FilterAdded, f))
		default:
			all := st.Filters(Template{})
			if len(all) == 0 {
				continue
			}
			write(events.NewFilterEvent(events.FilterDeleted, all[r.IntN(len(all))].Clone()))
		}
	}
	return log
}

// sessionDump is everything a State answers about sessions and layers.
func sessionDump(s *State, ids []string) map[string]any {
	d := map[string]any{"open": s.Sessions()}
	for _, id := range ids {
		fs, cs := s.SessionObjects(id)
		d["filters "+id], d["callouts "+id] = fs, cs
	}
	for _, l := range []string{"ALE_AUTH_CONNECT_V4", "FWPM_LAYER_ALE_AUTH_CONNECT_V6"} {
		fs := s.LayerFilters(l)
		slices.SortFunc(fs, func(a, b *events.Filter) int { return int(a.ID) - int(b.ID) })
		d["layer "+l] = fs
	}
	return d
}

func sessionIDs(log []logEntry) []string {
	var ids []string
	for _, e := range log {
		if e.ev.Type == events.SessionOpened {
			ids = append(ids, e.ev.Session.ID)
		}
	}
	return ids
}

// Sessions fold like everything else: the last event of every subject
// gives the same open sessions and session objects as the whole log.
func TestSessionsFoldLastPerSubjectEqualsFullFold(t *testing.T) {
	for i := range 100 {
		r := rand.New(rand.NewPCG(uint64(i), 13))
		log := sessionLog(r, 1+r.IntN(200))
		ids := sessionIDs(log)
		full, snap := fold(log), fold(lastPerSubject(log))
		if !reflect.DeepEqual(sessionDump(full, ids), sessionDump(snap, ids)) {
			t.Fatalf("seed %d: last-per-subject fold of sessions differs from the full fold", i)
		}
		if !reflect.DeepEqual(dump(full), dump(snap)) {
			t.Fatalf("seed %d: filters and callouts differ", i)
		}
	}
}

// A closed session has no objects left and is not open; an open one lists
// exactly the live objects that name it.
func TestSessionObjectsAreTheLiveObjectsNamingIt(t *testing.T) {
	for i := range 50 {
		r := rand.New(rand.NewPCG(uint64(i), 17))
		log := sessionLog(r, 1+r.IntN(200))
		s := fold(log)
		for _, id := range sessionIDs(log) {
			fs, cs := s.SessionObjects(id)
			var wantF []*events.Filter
			for _, f := range s.Filters(Template{}) {
				if f.Session == id {
					wantF = append(wantF, f)
				}
			}
			var wantC []*events.Callout
			for _, c := range s.Callouts() {
				if c.Session == id {
					wantC = append(wantC, c)
				}
			}
			if !reflect.DeepEqual(fs, wantF) || !reflect.DeepEqual(cs, wantC) {
				t.Fatalf("seed %d: session %s objects %v %v, want %v %v", i, id, fs, cs, wantF, wantC)
			}
			if _, open := s.Session(id); !open && len(fs)+len(cs) > 0 {
				t.Fatalf("seed %d: closed session %s still has objects", i, id)
			}
		}
	}
}

// An overlay answers session questions as the state would after the same
// events.
func TestOverlaySessionsMatchApply(t *testing.T) {
	for i := range 100 {
		r := rand.New(rand.NewPCG(uint64(i), 19))
		log := sessionLog(r, 2+r.IntN(200))
		cut := r.IntN(len(log))
		o := NewOverlay(fold(log[:cut]))
		for _, e := range log[cut:] {
			o.Apply(e.seq, copyEvent(e.ev))
		}
		want := fold(log)
		for _, id := range sessionIDs(log) {
			gs, gok := o.Session(id)
			ws, wok := want.Session(id)
			if gok != wok || !reflect.DeepEqual(gs, ws) {
				t.Fatalf("seed %d: overlay session %s = %v,%v want %v,%v", i, id, gs, gok, ws, wok)
			}
			gf, gc := o.SessionObjects(id)
			wf, wc := want.SessionObjects(id)
			if len(gf) != len(wf) || len(gc) != len(wc) {
				t.Fatalf("seed %d: overlay session %s objects %d/%d, want %d/%d", i, id, len(gf), len(gc), len(wf), len(wc))
			}
			for j := range gf {
				if gf[j].Key != wf[j].Key || gf[j].ID != wf[j].ID {
					t.Fatalf("seed %d: overlay session %s filter %d = %v, want %v", i, id, j, gf[j], wf[j])
				}
			}
			for j := range gc {
				if gc[j].Key != wc[j].Key {
					t.Fatalf("seed %d: overlay session %s callout %d = %v, want %v", i, id, j, gc[j], wc[j])
				}
			}
		}
	}
}

// A layer's version moves when a filter joins or leaves it, under any
// spelling of its name, and only then.
func TestLayerVersionMovesWithTheLayersFilters(t *testing.T) {
	s := New()
	v4, v6 := "ALE_AUTH_CONNECT_V4", "ALE_AUTH_CONNECT_V6"
	if s.LayerVersion(v4) != 0 {
		t.Fatal("empty layer has a version")
	}
	f := &events.Filter{Key: uuid.NewString(), Name: "f", Layer: "FWPM_LAYER_" + v4, Action: events.ActionBlock}
	s.Apply(1, events.NewFilterEvent(events.FilterAdded, f.Clone()))
	a := s.LayerVersion(v4)
	if a == 0 || s.LayerVersion("fwpm_layer_ale_auth_connect_v4") != a || s.LayerVersion(v6) != 0 {
		t.Fatalf("after an add: v4 %d (other spelling %d), v6 %d", a, s.LayerVersion("fwpm_layer_ale_auth_connect_v4"), s.LayerVersion(v6))
	}
	if got := s.LayerFilters(v4); len(got) != 1 || got[0].Key != f.Key {
		t.Fatalf("LayerFilters(%s) = %v", v4, got)
	}
	s.Apply(2, events.NewCalloutEvent(events.CalloutAdded, &events.Callout{Key: uuid.NewString(), Name: "c"}))
	s.Apply(3, events.NewFilterEvent(events.FilterAdded, &events.Filter{Key: uuid.NewString(), Name: "g", Layer: v6, Action: events.ActionPermit}))
	if s.LayerVersion(v4) != a {
		t.Fatal("v4's version moved for a callout and a filter of another layer")
	}
	s.Apply(4, events.NewFilterEvent(events.FilterDeleted, f.Clone()))
	if b := s.LayerVersion(v4); b == a || len(s.LayerFilters(v4)) != 0 {
		t.Fatalf("after the delete: version %d (was %d), filters %v", b, a, s.LayerFilters(v4))
	}
}
