package test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/wfpnats/wfp/engine"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
	"github.com/wfpnats/wfp/projection"
)

// outcome is what one management call was told.
type outcome struct {
	op     string // "add" or "delete"
	key    string
	filter *events.Filter // for adds that succeeded
	err    error
}

// Two engines serve one stream (the API's queue group spreads calls over
// both) and take concurrent adds and deletes, some racing on the same keys.
// The fence must keep them consistent: the log folds to what both engines
// hold, no key is added twice while live, and every success matches the
// history. The log compacts (a delete rolls up its add), so the history
// comes from the archive both engines keep, which also shows that
// compaction under contention loses nothing it must keep.
func TestFencingTwoEnginesOneStream(t *testing.T) {
	srv := testkit.Server(t)
	ncA, ncB := testkit.Conn(t, srv), testkit.Conn(t, srv)
	cfg := engine.Config{Archive: "WFP_ARCHIVE"}
	engA, engB := startEngineWith(t, ncA, cfg), startEngineWith(t, ncB, cfg)
	ctx := ctxT(t)
	client := engine.NewClient(testkit.Conn(t, srv))
	co, err := client.AddCallout(ctx, events.Callout{Name: "c"})
	if err != nil {
		t.Fatal(err)
	}

	keys := make([]string, 40) // few keys, many callers: adds and deletes collide
	for i := range keys {
		keys[i] = uuid.NewString()
	}
	var mu sync.Mutex
	var outcomes []outcome
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for range 60 {
				key := keys[r.IntN(len(keys))]
				o := outcome{key: key}
				if r.IntN(3) > 0 {
					o.op = "add"
					o.filter, o.err = client.AddFilter(ctx, events.Filter{Key: key, Name: "f", Layer: "ALE_AUTH_CONNECT_V4",
						Action: events.ActionCalloutInspection, CalloutKey: co.Key})
				} else {
					o.op = "delete"
					o.err = client.DeleteFilter(ctx, engine.FilterRef{FilterKey: key})
				}
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
			}
		})
	}
	wg.Wait()

	js := testkit.JetStream(t, ncA)
	compacted := readLog(t, js)
	last := compacted[len(compacted)-1].seq
	testkit.Eventually(t, "both engines to fold the whole log", func() bool { return engA.Seq() == last && engB.Seq() == last })
	log := readArchive(t, js, "WFP_ARCHIVE", last)
	want := foldLog(log)
	if !reflect.DeepEqual(foldLog(compacted).Filters(projection.Template{}), want.Filters(projection.Template{})) {
		t.Error("the compacted log folds to other filters than its history")
	}
	if len(log) != int(last) || len(compacted) >= len(log) {
		t.Errorf("history holds %d events for %d sequences, the compacted log %d", len(log), last, len(compacted))
	}
	for name, e := range map[string]*engine.Engine{"A": engA, "B": engB} {
		e.View(func(s *projection.State) {
			if !reflect.DeepEqual(s.Filters(projection.Template{}), want.Filters(projection.Template{})) {
				t.Errorf("engine %s: filters differ from the fold of the log", name)
			}
		})
	}
	if engA.Stats().Fenced+engB.Stats().Fenced == 0 {
		t.Error("no write lost the fence: the test did not exercise what it is named for")
	}

	// No key is added twice while live: replay the log's adds and deletes.
	live := map[string]bool{}
	addedAt := map[uint64]string{}
	deleted := map[string]int{}
	for _, e := range log {
		if e.ev == nil || e.ev.Filter == nil {
			continue
		}
		k := e.ev.Filter.Key
		switch e.ev.Type {
		case events.FilterAdded:
			if live[k] {
				t.Fatalf("seq %d: filter %s added while already live", e.seq, k)
			}
			live[k] = true
			addedAt[e.seq] = k
		case events.FilterDeleted:
			if !live[k] {
				t.Fatalf("seq %d: filter %s deleted while not live", e.seq, k)
			}
			live[k] = false
			deleted[k]++
		}
	}

	// Every success is in the log; every refusal is a WFP code that fits.
	var adds, dels int
	for _, o := range outcomes {
		switch {
		case o.op == "add" && o.err == nil:
			adds++
			if addedAt[o.filter.ID] != o.key {
				t.Errorf("add of %s answered id %d, but the log has %q there", o.key, o.filter.ID, addedAt[o.filter.ID])
			}
		case o.op == "add" && !errors.Is(o.err, engine.ErrAlreadyExists):
			t.Errorf("add of %s: unexpected error %v", o.key, o.err)
		case o.op == "delete" && o.err == nil:
			dels++
			deleted[o.key]--
		case o.op == "delete" && !errors.Is(o.err, engine.ErrFilterNotFound):
			t.Errorf("delete of %s: unexpected error %v", o.key, o.err)
		}
	}
	if adds != len(addedAt) {
		t.Errorf("%d adds answered success, %d in the log", adds, len(addedAt))
	}
	for k, n := range deleted {
		if n != 0 {
			t.Errorf("filter %s: successful deletes and deletes in the log differ by %d", k, n)
		}
	}
	t.Logf("%d calls: %d adds, %d deletes succeeded; fenced retries: A %d, B %d",
		len(outcomes), adds, dels, engA.Stats().Fenced, engB.Stats().Fenced)
}

// The engine's state is the fold of its log, whatever sequence of valid and
// invalid commands it was given.
func TestEngineStateEqualsFoldOfLog(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t)
	r := rand.New(rand.NewPCG(3, 4))
	var callouts, filters []string
	for i := range 400 {
		switch op := r.IntN(10); {
		case op < 2 || len(callouts) == 0:
			c, err := w.client.AddCallout(ctx, events.Callout{Name: fmt.Sprint("c", i)})
			if err != nil {
				t.Fatal(err)
			}
			callouts = append(callouts, c.Key)
		case op == 2:
			_ = w.client.DeleteCallout(ctx, callouts[r.IntN(len(callouts))]) // may be in use or gone
		case op < 7:
			f := events.Filter{Name: "f", Layer: []string{"ALE_AUTH_CONNECT_V4", "ALE_AUTH_RECV_ACCEPT_V4", "STREAM_V4"}[r.IntN(3)], Action: events.ActionBlock}
			if r.IntN(2) == 0 {
				f.Action, f.CalloutKey = events.ActionCalloutTerminating, callouts[r.IntN(len(callouts))]
			}
			if len(filters) > 0 && r.IntN(5) == 0 {
				f.Key = filters[r.IntN(len(filters))] // may still be live: refused
			}
			if got, err := w.client.AddFilter(ctx, f); err == nil {
				filters = append(filters, got.Key)
			}
		default:
			if len(filters) > 0 {
				_ = w.client.DeleteFilter(ctx, engine.FilterRef{FilterKey: filters[r.IntN(len(filters))]})
			}
		}
	}
	want := foldLog(readLog(t, w.js))
	resp, err := w.client.ListFilters(ctx, engine.ListFiltersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Seq != want.Seq() {
		t.Fatalf("engine at %d, log at %d", resp.Seq, want.Seq())
	}
	if !reflect.DeepEqual(resp.Filters, want.Filters(projection.Template{})) {
		t.Fatalf("engine's filters differ from the fold of its log")
	}
	cl, err := w.client.ListCallouts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(cl.Callouts) != len(want.Callouts()) {
		t.Fatalf("engine has %d callouts, the log %d", len(cl.Callouts), len(want.Callouts()))
	}
}
