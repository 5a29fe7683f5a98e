package test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/engine"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
)

// note is one notification an agent's handler received.
type note struct {
	t       callout.NotifyType
	key     string
	id      uint64
	initial bool
	ctx     any
	synced  bool // the agent's Synced channel was closed when it arrived
}

// recorder is a handler that records every notification and can be told
// to hold the next one (to have the log move while it is busy).
type recorder struct {
	mu    sync.Mutex
	notes []note
	gate  chan struct{} // if non-nil, the first notification waits on it
	held  chan struct{} // closed when the first notification is waiting
	once  sync.Once
	// synced, if set, is the agent's Synced channel, read at each
	// notification. Set it before the first notification can run.
	synced <-chan struct{}
}

func newRecorder() *recorder { return &recorder{} }

func (r *recorder) Notify(ctx context.Context, t callout.NotifyType, f *callout.Filter) error {
	if r.gate != nil {
		r.once.Do(func() {
			close(r.held)
			select { // a failed test closes the agent: do not hold it up
			case <-r.gate:
			case <-ctx.Done():
			}
		})
	}
	if t == callout.AddFilter {
		f.Context = &filterCtx{key: f.Key}
	}
	synced := false
	if r.synced != nil {
		select {
		case <-r.synced:
			synced = true
		default:
		}
	}
	r.mu.Lock()
	r.notes = append(r.notes, note{t, f.Key, f.ID, f.Initial, f.Context, synced})
	r.mu.Unlock()
	return nil
}

func (r *recorder) snapshot() []note {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]note(nil), r.notes...)
}

// waitFor waits until a notification of type t for key arrives and
// returns it.
func (r *recorder) waitFor(t *testing.T, nt callout.NotifyType, key string) note {
	t.Helper()
	var got note
	testkit.Eventually(t, fmt.Sprintf("%s notification for %s", nt, key), func() bool {
		for _, n := range r.snapshot() {
			if n.t == nt && n.key == key {
				got = n
				return true
			}
		}
		return false
	})
	return got
}

// filterCtx is the per-filter context a handler allocates at add.
type filterCtx struct {
	key  string
	hits atomic.Int64
}

func register(t *testing.T, w *world, key string, h callout.Handler, opts ...callout.Option) *callout.Agent {
	t.Helper()
	opts = append([]callout.Option{callout.WithLogger(quietLog)}, opts...)
	a, err := callout.Register(ctxT(t), w.js, key, h, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

func waitSynced(t *testing.T, a *callout.Agent) {
	t.Helper()
	select {
	case <-a.Synced():
	case <-time.After(20 * time.Second):
		t.Fatal("agent never synced")
	}
}

func (w *world) addCallout(t *testing.T) string {
	t.Helper()
	c, err := w.client.AddCallout(ctxT(t), events.Callout{Name: "c"})
	if err != nil {
		t.Fatal(err)
	}
	return c.Key
}

func (w *world) addFilter(t *testing.T, calloutKey string) *events.Filter {
	t.Helper()
	f, err := w.client.AddFilter(ctxT(t), events.Filter{Name: "f", Layer: "ALE_AUTH_CONNECT_V4",
		Action: events.ActionCalloutTerminating, CalloutKey: calloutKey,
		Conditions: []events.Condition{{Field: "IP_REMOTE_PORT", Value: "23"}, {Field: "IP_PROTOCOL", Value: "6"}}})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (w *world) deleteFilter(t *testing.T, key string) {
	t.Helper()
	if err := w.client.DeleteFilter(ctxT(t), engine.FilterRef{FilterKey: key}); err != nil {
		t.Fatal(err)
	}
}

// R1: adding a filter whose action names callout C notifies C's agents with
// AddFilter; filters naming another callout do not reach it.
func TestR1_AddNotifiesTheNamedCallout(t *testing.T) {
	w := newWorld(t)
	c, other := w.addCallout(t), w.addCallout(t)
	r1, r2 := newRecorder(), newRecorder()
	waitSynced(t, register(t, w, c, r1))
	waitSynced(t, register(t, w, c, r2)) // every agent of C is told
	f := w.addFilter(t, c)
	g := w.addFilter(t, other)
	for _, r := range []*recorder{r1, r2} {
		n := r.waitFor(t, callout.AddFilter, f.Key)
		if n.id != f.ID || n.initial {
			t.Fatalf("add notification %+v, want id %d, not initial", n, f.ID)
		}
	}
	// The log is ordered per callout subject: once a later add for C has
	// arrived, a stray notification for g would have too.
	h := w.addFilter(t, c)
	r1.waitFor(t, callout.AddFilter, h.Key)
	for _, n := range r1.snapshot() {
		if n.key == g.Key {
			t.Fatalf("agent of %s was told about filter %s of another callout", c, g.Key)
		}
	}
}

// R2 and R4: a live agent registered after filters exist gets no AddFilter
// for them, but does get DeleteFilter for each when it is deleted, with no
// context, and carries on.
func TestR2_R4_LateLiveAgentGetsNoOldAddsButAllDeletes(t *testing.T) {
	w := newWorld(t)
	c := w.addCallout(t)
	var old []*events.Filter
	for range 5 {
		old = append(old, w.addFilter(t, c))
	}
	r := newRecorder()
	a := register(t, w, c, r)
	waitSynced(t, a)
	fresh := w.addFilter(t, c)
	r.waitFor(t, callout.AddFilter, fresh.Key)
	for _, f := range old {
		w.deleteFilter(t, f.Key)
	}
	w.deleteFilter(t, fresh.Key)
	r.waitFor(t, callout.DeleteFilter, fresh.Key)

	adds, dels := map[string]int{}, map[string]note{}
	for _, n := range r.snapshot() {
		switch n.t {
		case callout.AddFilter:
			adds[n.key]++
		case callout.DeleteFilter:
			dels[n.key] = n
		}
	}
	if len(adds) != 1 || adds[fresh.Key] != 1 {
		t.Fatalf("R2: late agent got adds %v, want only the new filter", adds)
	}
	for _, f := range old {
		n, ok := dels[f.Key]
		if !ok {
			t.Fatalf("R4: no DeleteFilter for old filter %s", f.Key)
		}
		if n.ctx != nil || n.id != f.ID {
			t.Fatalf("R4: delete of a never-seen filter: %+v, want id %d and no context", n, f.ID)
		}
	}
	if n := dels[fresh.Key]; n.ctx == nil {
		t.Fatal("R6: the filter seen added came back without its context")
	}
	if _, ok := a.Lookup(fresh.ID); ok {
		t.Fatal("a deleted filter is still visible to Lookup")
	}
}

// R3a: a late callout enumerates the filters naming it with the
// management API, by callout, layer and provider, at a stated log position.
func TestR3a_EnumerateByTemplateAtAPosition(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t)
	c1, c2 := w.addCallout(t), w.addCallout(t)
	prov := "5b1f0c0e-8a43-4b8e-9d7c-3c2f2d1a0b01"
	mk := func(c, layer, provider string) *events.Filter {
		f, err := w.client.AddFilter(ctx, events.Filter{Name: "f", Layer: layer, ProviderKey: provider,
			Action: events.ActionCalloutInspection, CalloutKey: c})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	a := mk(c1, "ALE_AUTH_CONNECT_V4", prov)
	mk(c1, "ALE_AUTH_RECV_ACCEPT_V4", "")
	mk(c2, "ALE_AUTH_CONNECT_V4", prov)
	for _, tc := range []struct {
		tmpl engine.ListFiltersRequest
		want int
	}{
		{engine.ListFiltersRequest{CalloutKey: c1}, 2},
		{engine.ListFiltersRequest{CalloutKey: c1, Layer: "ALE_AUTH_CONNECT_V4"}, 1},
		{engine.ListFiltersRequest{Layer: "ALE_AUTH_CONNECT_V4", ProviderKey: prov}, 2},
		{engine.ListFiltersRequest{CalloutKey: c1, ProviderKey: prov}, 1},
		{engine.ListFiltersRequest{}, 3},
	} {
		resp, err := w.client.ListFilters(ctx, tc.tmpl)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Filters) != tc.want || resp.Seq != 5 {
			t.Errorf("template %+v: %d filters at seq %d, want %d at 5", tc.tmpl, len(resp.Filters), resp.Seq, tc.want)
		}
	}
	resp, _ := w.client.ListFilters(ctx, engine.ListFiltersRequest{CalloutKey: c1, Layer: "ALE_AUTH_CONNECT_V4"})
	if resp.Filters[0].Key != a.Key || resp.Filters[0].ID != a.ID {
		t.Fatalf("enumerated %+v, want %s", resp.Filters[0], a.Key)
	}
}

// R3b: a replay agent gets each current filter of its callout exactly once
// with Initial set, then Synced, then live events with no gap and no
// duplicate — also for filters added and deleted while it is still reading
// its snapshot.
func TestR3b_ReplayAgentRebuildsThenGoesLive(t *testing.T) {
	w := newWorld(t)
	c, other := w.addCallout(t), w.addCallout(t)
	var current []*events.Filter
	for i := range 30 {
		f := w.addFilter(t, c)
		if i%4 == 0 {
			w.deleteFilter(t, f.Key) // leaves a tombstone the snapshot must skip
			continue
		}
		current = append(current, f)
	}
	w.addFilter(t, other)

	r := newRecorder()
	r.gate, r.held = make(chan struct{}), make(chan struct{})
	a := register(t, w, c, r, callout.WithMode(callout.Replay))
	<-r.held // the agent is inside its first snapshot notification

	// While the snapshot is being read: delete a current filter (one
	// already delivered or not), add new ones and delete one of those.
	w.deleteFilter(t, current[len(current)-1].Key)
	during1, during2 := w.addFilter(t, c), w.addFilter(t, c)
	w.deleteFilter(t, during2.Key)
	r.synced = a.Synced() // before the gate opens: every notification reads it
	close(r.gate)
	waitSynced(t, a)
	after := w.addFilter(t, c)
	r.waitFor(t, callout.AddFilter, after.Key)

	// The snapshot comes first, entirely before Synced; everything after
	// Synced is live.
	notes := r.snapshot()
	initial := map[string]int{}
	syncedAt := len(notes)
	for i, n := range notes {
		if n.synced && syncedAt == len(notes) {
			syncedAt = i
		}
		switch {
		case n.initial && (n.synced || n.t != callout.AddFilter):
			t.Fatalf("initial notification %+v at %d: after Synced or not an add", n, i)
		case !n.initial && !n.synced:
			t.Fatalf("live notification %+v at %d before Synced", n, i)
		case n.initial:
			initial[n.key]++
		}
	}
	if len(initial) != len(current) {
		t.Fatalf("snapshot delivered %d filters, want the %d current ones", len(initial), len(current))
	}
	for _, f := range current {
		if initial[f.Key] != 1 {
			t.Fatalf("filter %s delivered %d times in the snapshot, want once", f.Key, initial[f.Key])
		}
	}
	// Live after the snapshot: the changes made during it, in order, once.
	var live []string
	for _, n := range notes[syncedAt:] {
		live = append(live, n.t.String()+" "+n.key)
	}
	want := []string{
		"delete " + current[len(current)-1].Key,
		"add " + during1.Key, "add " + during2.Key, "delete " + during2.Key,
		"add " + after.Key,
	}
	if fmt.Sprint(live) != fmt.Sprint(want) {
		t.Fatalf("live notifications after the snapshot:\n got %v\nwant %v", live, want)
	}
	// The agent now holds exactly the engine's filters for its callout.
	resp, err := w.client.ListFilters(ctxT(t), engine.ListFiltersRequest{CalloutKey: c})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range resp.Filters {
		if _, ok := a.Lookup(f.ID); !ok {
			t.Fatalf("engine lists filter %d the replay agent does not hold", f.ID)
		}
	}
	if got := a.Stats().Held; got != len(resp.Filters) {
		t.Fatalf("agent holds %d filters, engine lists %d", got, len(resp.Filters))
	}
}

// R5: garbage and unknown event types on the agent's subject are skipped,
// counted and acknowledged; the agent carries on. The engine skips them too.
func TestR5_GarbageAndUnknownTypesAreSkipped(t *testing.T) {
	for _, mode := range []callout.Option{callout.WithMode(callout.Live), callout.WithDurable("r5")} {
		w := newWorld(t)
		c := w.addCallout(t)
		r := newRecorder()
		a := register(t, w, c, r, mode)
		waitSynced(t, a)
		junk := "wfp.filter." + c + ".5b1f0c0e-8a43-4b8e-9d7c-3c2f2d1a0b01"
		future, _ := events.Encode(&events.Event{Schema: 1, Type: "FilterRenamed", ID: "x"})
		newer, _ := events.Encode(&events.Event{Schema: events.SchemaVersion + 1, Type: events.FilterAdded, ID: "y",
			Filter: &events.Filter{Key: "5b1f0c0e-8a43-4b8e-9d7c-3c2f2d1a0b01"}})
		for _, data := range [][]byte{[]byte("garbage"), nil, future, newer} {
			if _, err := w.js.Publish(ctxT(t), junk, data); err != nil {
				t.Fatal(err)
			}
		}
		f := w.addFilter(t, c) // the engine skipped the junk too, or its fenced write would not land
		r.waitFor(t, callout.AddFilter, f.Key)
		if got := a.Stats().Skipped; got != 4 {
			t.Fatalf("agent skipped %d messages, want 4", got)
		}
		if got := w.eng.Stats().Skipped; got != 4 {
			t.Fatalf("engine skipped %d messages, want 4", got)
		}
		if n := len(r.snapshot()); n != 1 {
			t.Fatalf("handler saw %d notifications, want only the real add", n)
		}
	}
}

// R6: the context a handler sets at AddFilter is what the classify path
// sees through Lookup, from many goroutines at once (run with -race), and
// it is handed back exactly once at DeleteFilter.
func TestR6_ContextVisibleToClassifyAndHandedBackOnce(t *testing.T) {
	w := newWorld(t)
	c := w.addCallout(t)
	var mu sync.Mutex
	handedBack := map[*filterCtx]int{}
	h := callout.HandlerFunc(func(_ context.Context, nt callout.NotifyType, f *callout.Filter) error {
		switch nt {
		case callout.AddFilter:
			f.Context = &filterCtx{key: f.Key}
		case callout.DeleteFilter:
			fc, ok := f.Context.(*filterCtx)
			if !ok || fc.key != f.Key {
				return errors.New("delete without the context set at add")
			}
			mu.Lock()
			handedBack[fc]++
			mu.Unlock()
		}
		return nil
	})
	a := register(t, w, c, h)
	waitSynced(t, a)

	var ids []uint64
	for range 20 {
		ids = append(ids, w.addFilter(t, c).ID)
	}
	testkit.Eventually(t, "all adds held", func() bool { return a.Stats().Held == len(ids) })

	// Classify: concurrent readers look filters up and bump their
	// contexts while the filters are deleted under them.
	stop := make(chan struct{})
	var readers sync.WaitGroup
	var seen atomic.Int64
	for range 8 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, id := range ids {
					if f, ok := a.Lookup(id); ok {
						fc := f.Context.(*filterCtx)
						if fc.key != f.Key {
							t.Errorf("filter %d: context of %s", id, fc.key)
						}
						fc.hits.Add(1)
						seen.Add(1)
					}
				}
			}
		})
	}
	testkit.Eventually(t, "classify readers to see the filters", func() bool { return seen.Load() > 1000 })
	for _, id := range ids {
		if err := w.client.DeleteFilter(ctxT(t), engine.FilterRef{FilterID: id}); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Eventually(t, "all deletes delivered", func() bool { return a.Stats().Held == 0 })
	close(stop)
	readers.Wait()

	mu.Lock()
	defer mu.Unlock()
	if len(handedBack) != len(ids) {
		t.Fatalf("%d contexts handed back, want %d", len(handedBack), len(ids))
	}
	var hits int64
	for fc, n := range handedBack {
		if n != 1 {
			t.Fatalf("context of %s handed back %d times", fc.key, n)
		}
		hits += fc.hits.Load()
	}
	if hits == 0 {
		t.Fatal("classify never reached a context")
	}
	if st := a.Stats(); st.HandlerErrors != 0 {
		t.Fatalf("%d handler errors", st.HandlerErrors)
	}
}
