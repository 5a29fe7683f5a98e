package check

import (
	"fmt"
	"testing"

	"github.com/wfpnats/wfp/events"
)

const co = "c0c0c0c0-0000-4000-8000-000000000000"

// history is a small log: callout at 1, filters a (2), b (3), c (4),
// delete of a (5), d (6).
func history() []Entry {
	add := func(seq uint64, key string) Entry {
		return Entry{Seq: seq, Event: &events.Event{Schema: events.SchemaVersion, ID: fmt.Sprint("e", seq), Type: events.FilterAdded,
			Filter: &events.Filter{Key: key, CalloutKey: co}}}
	}
	return []Entry{
		{Seq: 1, Event: &events.Event{Schema: events.SchemaVersion, ID: "e1", Type: events.CalloutAdded, Callout: &events.Callout{Key: co}}},
		add(2, "a"), add(3, "b"), add(4, "c"),
		{Seq: 5, Event: &events.Event{Schema: events.SchemaVersion, ID: "e5", Type: events.FilterDeleted, Filter: &events.Filter{Key: "a", ID: 2, CalloutKey: co}}},
		add(6, "d"),
	}
}

func addN(id uint64, key string) Notice { return Notice{ID: id, Key: key} }
func delN(id uint64, key string) Notice { return Notice{Delete: true, ID: id, Key: key} }
func initN(id uint64, key string) Notice {
	return Notice{ID: id, Key: key, Initial: true}
}

var all = []Notice{addN(2, "a"), addN(3, "b"), addN(4, "c"), delN(2, "a"), addN(6, "d")}

func verify(t *testing.T, log []Entry, ops []Op, agents []Agent, engines []Engine) *Report {
	t.Helper()
	r := Verify(log, ops, agents, engines)
	t.Log(r)
	for _, p := range r.Problems {
		t.Log(p)
	}
	return r
}

func TestConsistentRunPasses(t *testing.T) {
	ops := []Op{{Key: "a", ID: 2}, {Key: "b", ID: 3}, {Key: "c", Outcome: Unknown}, {Delete: true, ID: 2}, {Key: "x", Outcome: Refused}}
	agents := []Agent{
		{Name: "live", Callout: co, Mode: Live, Runs: [][]Notice{all}, Start: 2, Held: []uint64{3, 4, 6}},
		{Name: "late", Callout: co, Mode: Live, Runs: [][]Notice{all[3:]}},
		{Name: "replay", Callout: co, Mode: Replay, Runs: [][]Notice{{initN(3, "b"), initN(4, "c"), addN(6, "d")}}},
		{Name: "durable", Callout: co, Mode: Durable, Runs: [][]Notice{all[:3], all[1:]}}, // killed, got b and c again
	}
	r := verify(t, history(), ops, agents, nil)
	if !r.OK() || r.Phantoms != 1 || r.Redelivered != 2 || r.Notices != 17 {
		t.Fatalf("want OK with 1 phantom, 2 redelivered, 17 notices: %v", r)
	}
}

func TestLostAckIsCounted(t *testing.T) {
	r := verify(t, history(), []Op{{Key: "b", ID: 3}, {Key: "z", ID: 7}, {Delete: true, ID: 3}}, nil, nil)
	if r.Lost != 2 || r.OK() {
		t.Fatalf("an add acked at 7 and a delete of 3 are not in the log: want 2 lost, got %v", r)
	}
}

func TestRefusedButLiveIsCounted(t *testing.T) {
	r := verify(t, history(), []Op{{Key: "d", Outcome: Refused}}, nil, nil)
	if r.RefusedApplied != 1 || r.OK() {
		t.Fatalf("d was refused but is live: %v", r)
	}
}

func TestDuplicatesAreCounted(t *testing.T) {
	log := history()
	log = append(log, Entry{Seq: 7, Event: &events.Event{Schema: events.SchemaVersion, ID: "e7", Type: events.FilterAdded, Filter: &events.Filter{Key: "b", CalloutKey: co}}})
	log = append(log, Entry{Seq: 8, Event: &events.Event{Schema: events.SchemaVersion, ID: "e6", Type: events.CalloutDeleted, Callout: &events.Callout{Key: "x"}}})
	r := verify(t, log, []Op{{Key: "c", ID: 4}, {Key: "c", ID: 4}}, nil, nil)
	if r.Duplicates != 3 || r.OK() {
		t.Fatalf("want 3 duplicates (b added while live, event id e6 twice, id 4 answered twice): %v", r)
	}
}

func TestAgentDivergenceIsCounted(t *testing.T) {
	cases := map[string]Agent{
		"missed":           {Mode: Live, Runs: [][]Notice{{addN(2, "a"), addN(4, "c"), delN(2, "a"), addN(6, "d")}}},
		"repeated":         {Mode: Live, Runs: [][]Notice{{addN(2, "a"), addN(3, "b"), addN(3, "b"), addN(4, "c"), delN(2, "a"), addN(6, "d")}}},
		"missed the end":   {Mode: Live, Runs: [][]Notice{all[:4]}},
		"late start":       {Mode: Live, Runs: [][]Notice{all[2:]}, Start: 2},
		"wrong snapshot":   {Mode: Replay, Runs: [][]Notice{{initN(3, "b"), addN(6, "d")}}},
		"durable gap":      {Mode: Durable, Runs: [][]Notice{all[:2], all[3:]}},
		"sdk holds other":  {Mode: Live, Runs: [][]Notice{all}, Held: []uint64{3, 4}},
		"snapshot in live": {Mode: Live, Runs: [][]Notice{{initN(3, "b"), addN(6, "d")}}},
	}
	for name, a := range cases {
		t.Run(name, func(t *testing.T) {
			a.Name, a.Callout = name, co
			if r := verify(t, history(), nil, []Agent{a}, nil); r.Divergent == 0 {
				t.Fatalf("not found divergent: %v", r)
			}
		})
	}
}

// A delete that rolled up its subject took the add out of the log; the
// agents were told the add, and that is no divergence.
func TestRolledUpAddIsPutBack(t *testing.T) {
	log := history()
	log = append(log[:1], log[2:]...) // the add of a (2) is gone
	agents := []Agent{{Name: "live", Callout: co, Mode: Live, Runs: [][]Notice{all}}}
	r := verify(t, log, []Op{{Key: "a", ID: 2}}, agents, nil)
	if !r.OK() {
		t.Fatalf("rolled-up add: %v", r)
	}
}

// A live or replay agent that caught up through the compacted log may
// miss the add of a filter deleted meanwhile (it is told the delete); a
// durable agent may not, and nobody may miss the delete.
func TestRolledUpAddMissedInACatchUp(t *testing.T) {
	missed := []Notice{addN(3, "b"), addN(4, "c"), delN(2, "a"), addN(6, "d")} // no add of a
	if r := verify(t, history(), nil, []Agent{{Name: "live", Callout: co, Mode: Live, Runs: [][]Notice{missed}, Start: 2}}, nil); !r.OK() {
		t.Fatalf("live agent that missed a's add: %v", r)
	}
	for name, a := range map[string]Agent{
		"durable":           {Mode: Durable, Runs: [][]Notice{missed}, Start: 2},
		"missed the delete": {Mode: Live, Runs: [][]Notice{{addN(2, "a"), addN(3, "b"), addN(4, "c"), addN(6, "d")}}},
		"missed a live add": {Mode: Live, Runs: [][]Notice{{addN(2, "a"), addN(4, "c"), delN(2, "a"), addN(6, "d")}}},
	} {
		a.Name, a.Callout = name, co
		if r := verify(t, history(), nil, []Agent{a}, nil); r.Divergent == 0 {
			t.Fatalf("%s: not found divergent: %v", name, r)
		}
	}
}

// A replay agent's snapshot may lack a filter whose delete came after it
// went live (the roll-up took the add while the snapshot was read); it
// may not lack one still live.
func TestSnapshotMayLackAFilterDeletedLater(t *testing.T) {
	ok := Agent{Name: "replay", Callout: co, Mode: Replay, Runs: [][]Notice{{initN(3, "b"), initN(4, "c"), delN(2, "a"), addN(6, "d")}}}
	if r := verify(t, history(), nil, []Agent{ok}, nil); !r.OK() {
		t.Fatalf("snapshot without a, deleted after it went live: %v", r)
	}
	bad := Agent{Name: "replay", Callout: co, Mode: Replay, Runs: [][]Notice{{initN(2, "a"), initN(4, "c"), delN(2, "a"), addN(6, "d")}}}
	if r := verify(t, history(), nil, []Agent{bad}, nil); r.Divergent == 0 {
		t.Fatalf("snapshot without b, live: not found divergent: %v", r)
	}
}

// A snapshot read again from a stream sequence (its consumer recreated)
// may tell a filter added and deleted before it synced, both; not a
// delete of one it never told.
func TestSnapshotMayTellAnAddAndItsDelete(t *testing.T) {
	ok := Agent{Name: "replay", Callout: co, Mode: Replay, Runs: [][]Notice{{initN(2, "a"), initN(3, "b"), initN(4, "c"),
		{Delete: true, ID: 2, Key: "a", Initial: true}, addN(6, "d")}}}
	if r := verify(t, history(), nil, []Agent{ok}, nil); !r.OK() {
		t.Fatalf("snapshot with a's add and delete: %v", r)
	}
	bad := Agent{Name: "replay", Callout: co, Mode: Replay, Runs: [][]Notice{{initN(3, "b"), initN(4, "c"),
		{Delete: true, ID: 2, Key: "a", Initial: true}, addN(6, "d")}}}
	if r := verify(t, history(), nil, []Agent{bad}, nil); r.Divergent == 0 {
		t.Fatalf("snapshot deleting a it never told: not found divergent: %v", r)
	}
}

func TestEngineStateIsTheFold(t *testing.T) {
	fs := []*events.Filter{{Key: "b", ID: 3}, {Key: "c", ID: 4}, {Key: "d", ID: 6}}
	r := verify(t, history(), nil, nil, []Engine{{Name: "ok", Seq: 6, Filters: fs}, {Name: "behind", Seq: 5, Filters: fs[:2]}})
	if r.Divergent != 1 {
		t.Fatalf("want the engine behind to diverge, only it: %v", r)
	}
}
