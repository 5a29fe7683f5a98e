// Package check holds what the fault suites assert, as pure functions of
// what they observed: the log as read back from the stream, the outcome
// every management call was told, and every callout agent's
// notifications. The cluster tests (package test) and the chaos command
// (test/chaos) both hand their observations to Verify, so a scenario run
// in one process and one run across processes are held to the same
// rules:
//
//   - nothing acknowledged is lost: an add answered with an id is in the
//     log at that sequence, a delete answered success is in the log;
//   - nothing refused stays: an add refused with a definite error is not
//     live at the end;
//   - nothing is given twice: no id answered to two adds, no key added
//     while it is live, no event id stored twice;
//   - every agent saw exactly the log: its live notifications are one
//     unbroken run of its callout's events (no miss, no repeat), its
//     replay snapshot is the callout's filters at the point it went live,
//     and what it holds at the end is what the engine holds. The log is
//     compacted: a live or replay agent that catches up through it (after
//     a partition, a reconnect) reads the state, not the history, and so
//     may miss the add of a filter added and deleted meanwhile (the delete
//     rolled the add up), or (replaying) find it gone from its snapshot;
//     it is told the delete. A durable agent may not:
//     the engine rolls up nothing a durable consumer has not acknowledged;
//   - every engine's state is the fold of the log.
//
// Outcome-unknown calls (timeouts) are allowed either way; the ones that
// did apply are counted as phantoms.
package check

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/projection"
)

// Outcome is what a management call was told.
type Outcome int

const (
	Acked   Outcome = iota // success, with an id for an add
	Refused                // a definite error: nothing was applied (or it was taken back)
	Unknown                // a timeout or a lost connection: either way
)

// Op is one management call and its outcome.
type Op struct {
	Delete  bool
	Key     string // the filter key (adds; deletes when known)
	ID      uint64 // add: the id answered; delete: the id asked for
	Outcome Outcome
}

// Entry is one message of the log; Event is nil for a message that is not
// an event.
type Entry struct {
	Seq   uint64
	Event *events.Event
}

// Notice is one notification an agent's handler got.
type Notice struct {
	Delete  bool
	ID      uint64
	Key     string
	Initial bool // from the replay snapshot
}

func (n Notice) String() string {
	t := "add"
	if n.Delete {
		t = "delete"
	}
	if n.Initial {
		t += "(initial)"
	}
	return fmt.Sprintf("%s %d", t, n.ID)
}

// Mode is how an agent reads: as callout.Mode, plus durable.
type Mode string

const (
	Live    Mode = "live"
	Replay  Mode = "replay"
	Durable Mode = "durable"
)

// Agent is what one callout agent was told, one slice per run (a process
// started again after a kill). The runs of a durable agent continue each
// other; the runs of the others are separate agents under one name.
type Agent struct {
	Name    string
	Callout string
	Mode    Mode
	Runs    [][]Notice
	// Start, if known, is the first log sequence the agent's (first) run
	// reads live; 0 when the suite cannot know it.
	Start uint64
	// Held, if not nil, are the filter ids the agent's SDK holds at the end
	// (Agent.Filters), compared with what it was told.
	Held []uint64
}

// Engine is one engine's state as it reports it.
type Engine struct {
	Name    string
	Seq     uint64
	Filters []*events.Filter
}

// Report counts what Verify found.
type Report struct {
	Ops, Acked, Refused, Unknown int
	Lost                         int // acknowledged, not in the log
	Phantoms                     int // outcome unknown, applied
	RefusedApplied               int // refused, yet live at the end
	Duplicates                   int // ids answered twice, keys added while live, event ids stored twice
	Divergent                    int // agents and engines whose view differs from the log
	Notices                      int // notifications checked
	Redelivered                  int // notifications a durable agent got again after a kill (at least once)
	Problems                     []string
}

// OK is true when nothing was lost, refused-but-applied, duplicated or
// divergent.
func (r *Report) OK() bool {
	return r.Lost == 0 && r.RefusedApplied == 0 && r.Duplicates == 0 && r.Divergent == 0
}

func (r *Report) String() string {
	return fmt.Sprintf("ops %d (acked %d, refused %d, unknown %d): lost %d, phantoms %d, refused-applied %d, duplicates %d, divergent %d; %d notifications checked, %d redelivered",
		r.Ops, r.Acked, r.Refused, r.Unknown, r.Lost, r.Phantoms, r.RefusedApplied, r.Duplicates, r.Divergent, r.Notices, r.Redelivered)
}

func (r *Report) problem(format string, args ...any) {
	const most = 30
	if len(r.Problems) < most {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

// filterEvent is a filter add or delete at a log position.
type filterEvent struct {
	seq    uint64
	delete bool
	id     uint64
	key    string
	callot string
}

func (e filterEvent) notice() Notice { return Notice{Delete: e.delete, ID: e.id, Key: e.key} }

// Verify checks the observations against each other; see the package doc.
func Verify(log []Entry, ops []Op, agents []Agent, engines []Engine) *Report {
	r := &Report{}
	evs, final := filterEvents(r, log)
	checkOps(r, log, evs, final, ops)
	for _, a := range agents {
		checkAgent(r, a, evs, final)
	}
	var last uint64
	if len(log) > 0 {
		last = log[len(log)-1].Seq
	}
	want := final.Filters(projection.Template{})
	for _, e := range engines {
		if e.Seq != last || !sameFilters(e.Filters, want) {
			r.Divergent++
			r.problem("engine %s: %d filters at seq %d, the log folds to %d at %d", e.Name, len(e.Filters), e.Seq, len(want), last)
		}
	}
	return r
}

// filterEvents lists the log's filter events in order, and folds the log.
// A delete that rolled up its subject (compaction) removes the add from
// the log; its add is put back at the filter id, which is the add's
// sequence, so the list is the history every reader was told.
func filterEvents(r *Report, log []Entry) ([]filterEvent, *projection.State) {
	final := projection.New()
	seen := map[string]uint64{} // event id -> seq
	present := map[uint64]bool{}
	var out []filterEvent
	for _, e := range log {
		final.Apply(e.Seq, e.Event)
		ev := e.Event
		if ev == nil {
			continue
		}
		if s, dup := seen[ev.ID]; dup && ev.ID != "" {
			r.Duplicates++
			r.problem("event id %s stored twice, at %d and %d", ev.ID, s, e.Seq)
		}
		seen[ev.ID] = e.Seq
		if ev.Filter == nil || !ev.Known() || (ev.Type != events.FilterAdded && ev.Type != events.FilterDeleted) {
			continue
		}
		fe := filterEvent{seq: e.Seq, delete: ev.Type == events.FilterDeleted, id: ev.Filter.ID, key: ev.Filter.Key, callot: ev.Filter.CalloutKey}
		if !fe.delete {
			fe.id = e.Seq
			present[e.Seq] = true
		}
		out = append(out, fe)
	}
	for _, fe := range slices.Clone(out) {
		if fe.delete && !present[fe.id] && fe.id > 0 {
			out = append(out, filterEvent{seq: fe.id, id: fe.id, key: fe.key, callot: fe.callot})
			present[fe.id] = true
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].seq < out[j].seq })

	live := map[string]uint64{}
	for _, fe := range out {
		switch {
		case !fe.delete && live[fe.key] != 0:
			r.Duplicates++
			r.problem("filter %s added at %d while live since %d", fe.key, fe.seq, live[fe.key])
		case !fe.delete:
			live[fe.key] = fe.seq
		default:
			delete(live, fe.key)
		}
	}
	return out, final
}

func checkOps(r *Report, log []Entry, evs []filterEvent, final *projection.State, ops []Op) {
	addedAt := map[uint64]string{} // id -> key
	everAdded := map[string]bool{}
	deleted := map[uint64]bool{}
	for _, fe := range evs {
		if fe.delete {
			deleted[fe.id] = true
		} else {
			addedAt[fe.id] = fe.key
			everAdded[fe.key] = true
		}
	}
	answered := map[uint64]int{}
	for i, op := range ops {
		r.Ops++
		switch op.Outcome {
		case Acked:
			r.Acked++
		case Refused:
			r.Refused++
		default:
			r.Unknown++
		}
		switch {
		case !op.Delete && op.Outcome == Acked:
			if n := answered[op.ID]; n > 0 {
				r.Duplicates++
				r.problem("op %d: id %d answered to %d adds", i, op.ID, n+1)
			}
			answered[op.ID]++
			if addedAt[op.ID] != op.Key {
				r.Lost++
				r.problem("op %d: add of %s acknowledged with id %d, the log has %q there", i, op.Key, op.ID, addedAt[op.ID])
			}
		case !op.Delete && op.Outcome == Refused:
			if f, ok := final.Filter(op.Key); ok {
				r.RefusedApplied++
				r.problem("op %d: add of %s refused, but it is live at the end (id %d)", i, op.Key, f.ID)
			}
		case !op.Delete && op.Outcome == Unknown:
			if everAdded[op.Key] {
				r.Phantoms++
			}
		case op.Delete && op.Outcome == Acked:
			if !deleted[op.ID] {
				r.Lost++
				r.problem("op %d: delete of id %d acknowledged, not in the log", i, op.ID)
			}
		case op.Delete && op.Outcome == Unknown:
			if deleted[op.ID] {
				r.Phantoms++
			}
		}
	}
}

// checkAgent holds an agent's runs against its callout's events.
func checkAgent(r *Report, a Agent, all []filterEvent, final *projection.State) {
	var evs []filterEvent
	for _, fe := range all {
		if fe.callot == a.Callout {
			evs = append(evs, fe)
		}
	}
	bad := func(format string, args ...any) {
		r.Divergent++
		r.problem("agent %s: "+format, append([]any{a.Name}, args...)...)
	}
	held := map[uint64]bool{} // what the agent holds, by what it was told
	next := -1                // durable: index the next run must reach back to
	first := -1               // index in evs of the first run's first live notice
	for run, notes := range a.Runs {
		r.Notices += len(notes)
		var initial, live []Notice
		for _, n := range notes {
			if n.Initial {
				initial = append(initial, n)
			} else {
				live = append(live, n)
			}
		}
		if a.Mode != Durable || run == 0 {
			clear(held)
		}
		// Where in the callout's history the live part starts.
		k := len(evs)
		if len(live) > 0 {
			k = slices.IndexFunc(evs, func(fe filterEvent) bool { return fe.notice() == live[0] })
			if k < 0 {
				bad("run %d: first live notification %v is not in the log", run+1, live[0])
				continue
			}
		} else if run == len(a.Runs)-1 {
			bad("run %d: no live notification at all (the suite's last add did not reach it)", run+1)
			continue
		}
		if run == 0 {
			if a.Start > 0 {
				// Its first live event is known: the notifications
				// follow the log from there (follow says where not).
				want := slices.IndexFunc(evs, func(fe filterEvent) bool { return fe.seq >= a.Start })
				if want < 0 {
					want = len(evs)
				}
				if k < want {
					bad("live from the event at index %d, before its start %d at index %d", k, a.Start, want)
				}
				k = want
			}
			first = k
		}
		if a.Mode == Durable && run > 0 {
			if k > next {
				bad("run %d resumed at index %d, missing %d event(s) after index %d", run+1, k, k-next, next)
			}
			r.Redelivered += max(0, next-k)
		}
		// The live part is one unbroken run of the log.
		end, problem := follow(evs, k, live, a.Mode != Durable)
		if problem != "" {
			bad("run %d: %s", run+1, problem)
		}
		if run == len(a.Runs)-1 && problem == "" && end != len(evs) {
			bad("run %d: got %d live notifications, the log has %d from there: missed %d", run+1, len(live), len(evs)-k, len(evs)-end)
		}
		next = end
		// A replay snapshot is the callout's filters where it went live.
		if a.Mode == Replay {
			want := liveAt(evs, k)
			// A filter deleted after that point may have left the
			// snapshot while it was read: the delete rolled its add up.
			for id := range want {
				if !slices.ContainsFunc(initial, func(n Notice) bool { return n.ID == id }) &&
					slices.ContainsFunc(evs[k:], func(fe filterEvent) bool { return fe.delete && fe.id == id }) {
					delete(want, id)
				}
			}
			got := map[uint64]bool{}
			for _, n := range initial {
				switch {
				case n.Delete && got[n.ID]:
					// A consumer recreated mid-snapshot reads history
					// from a stream sequence: a filter added and deleted
					// there is told both, its context handed back (R6).
					delete(got, n.ID)
				case n.Delete || got[n.ID]:
					bad("run %d: snapshot has %v twice, or deletes what it did not add", run+1, n)
				default:
					got[n.ID] = true
				}
			}
			if !maps.Equal(got, want) {
				bad("run %d: snapshot has %d filters, the callout had %d when it went live", run+1, len(got), len(want))
			}
			maps.Copy(held, got)
		} else if len(initial) > 0 {
			bad("run %d: %s agent got %d snapshot notifications", run+1, a.Mode, len(initial))
		}
		for _, n := range live {
			if n.Delete {
				delete(held, n.ID)
			} else {
				held[n.ID] = true
			}
		}
	}
	if len(a.Runs) == 0 {
		return
	}
	// What it holds is what the engine holds of the callout (for a live or
	// durable agent, of what was added since it started).
	want := map[uint64]bool{}
	lastStart := first
	if a.Mode != Durable {
		lastStart = slices.IndexFunc(evs, func(fe filterEvent) bool {
			return len(a.Runs[len(a.Runs)-1]) > 0 && fe.notice() == firstLive(a.Runs[len(a.Runs)-1])
		})
	}
	for _, f := range final.Filters(projection.Template{CalloutKey: a.Callout}) {
		if a.Mode == Replay || addedFrom(evs, f.ID, lastStart) {
			want[f.ID] = true
		}
	}
	if !maps.Equal(held, want) {
		bad("holds %d filters by its notifications, the engine %d (%s)", len(held), len(want), diff(held, want))
	}
	if a.Held != nil {
		got := map[uint64]bool{}
		for _, id := range a.Held {
			got[id] = true
		}
		if !maps.Equal(got, want) {
			bad("its SDK holds %d filters, the engine %d (%s)", len(got), len(want), diff(got, want))
		}
	}
}

// follow matches the live notifications against the callout's events
// from index k on, in order, and returns the index after the last one it
// matched. With rolledUp (a live or replay agent), the add of a filter
// deleted later may be missing, as a catch-up through the compacted log
// misses it (it still reads the delete). problem says where the
// notifications leave the log.
func follow(evs []filterEvent, k int, live []Notice, rolledUp bool) (end int, problem string) {
	told := map[Notice]bool{}
	for _, n := range live {
		told[n] = true
	}
	j := k
	skip := func() bool {
		fe := evs[j]
		return rolledUp && !fe.delete && !told[fe.notice()] &&
			slices.ContainsFunc(evs[j+1:], func(d filterEvent) bool { return d.delete && d.id == fe.id })
	}
	for i, n := range live {
		for j < len(evs) && evs[j].notice() != n && skip() {
			j++
		}
		if j >= len(evs) || evs[j].notice() != n {
			var want any = "nothing more"
			if j < len(evs) {
				want = evs[j].notice()
			}
			return j, fmt.Sprintf("live notification %d is %v, the log has %v", i+1, n, want)
		}
		j++
	}
	for j < len(evs) && skip() {
		j++
	}
	return j, ""
}

func firstLive(notes []Notice) Notice {
	for _, n := range notes {
		if !n.Initial {
			return n
		}
	}
	return Notice{}
}

// addedFrom reports whether filter id was added at or after index k.
func addedFrom(evs []filterEvent, id uint64, k int) bool {
	if k < 0 {
		return false
	}
	for _, fe := range evs[k:] {
		if !fe.delete && fe.id == id {
			return true
		}
	}
	return false
}

// liveAt is the set of filters live after the first k events.
func liveAt(evs []filterEvent, k int) map[uint64]bool {
	live := map[uint64]bool{}
	for _, fe := range evs[:k] {
		if fe.delete {
			delete(live, fe.id)
		} else {
			live[fe.id] = true
		}
	}
	return live
}

func sameFilters(a, b []*events.Filter) bool {
	if len(a) != len(b) {
		return false
	}
	ids := func(fs []*events.Filter) []string {
		out := make([]string, len(fs))
		for i, f := range fs {
			out[i] = fmt.Sprint(f.ID, f.Key)
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(ids(a), ids(b))
}

func diff(got, want map[uint64]bool) string {
	var extra, missing []string
	for id := range got {
		if !want[id] {
			extra = append(extra, fmt.Sprint(id))
		}
	}
	for id := range want {
		if !got[id] {
			missing = append(missing, fmt.Sprint(id))
		}
	}
	slices.Sort(extra)
	slices.Sort(missing)
	return fmt.Sprintf("extra %s; missing %s", strings.Join(extra, ","), strings.Join(missing, ","))
}
