package callout_test

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/events"
)

// The read side: a held filter is found by id and by key, with the
// Context its AddFilter left, and Filters yields exactly the held ones.
func TestLookupKeyAndFilters(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	r := newRecorder()
	a := e.register(ck, r)
	f1, f2, f3 := e.add(ck, "one"), e.add(ck, "two"), e.add(ck, "three")
	e.del(f2)
	r.expect(t, addNote(f1, false), addNote(f2, false), addNote(f3, false), delNote(f2, false))

	for _, f := range []*events.Filter{f1, f3} {
		got, ok := a.LookupKey(f.Key)
		if !ok || got.ID != f.ID || got.Context.(*filterState).id != f.ID {
			t.Fatalf("LookupKey(%s) = %+v, %v", f.Key, got, ok)
		}
	}
	if got, ok := a.LookupKey(f2.Key); ok {
		t.Fatalf("LookupKey of a deleted filter: %+v", got)
	}
	held := map[uint64]bool{}
	for f := range a.Filters() {
		if f.Context.(*filterState).id != f.ID {
			t.Fatalf("Filters: %d with the Context of %v", f.ID, f.Context)
		}
		held[f.ID] = true
	}
	if ids := slices.Sorted(maps.Keys(held)); !slices.Equal(ids, []uint64{f1.ID, f3.ID}) {
		t.Fatalf("Filters yielded %v, want %d and %d", ids, f1.ID, f3.ID)
	}
	// An early break stops the iteration.
	n := 0
	for range a.Filters() {
		n++
		break
	}
	if n != 1 {
		t.Fatalf("break after one: %d yielded", n)
	}
}

// Reading the agent's filters while the handler adds and deletes is safe
// (run with -race) and never shows a filter under a key it does not have.
func TestReadSideBesideTheHandler(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	a := e.register(ck, newRecorder())
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				for f := range a.Filters() {
					if g, ok := a.LookupKey(f.Key); ok && g.Key != f.Key {
						t.Errorf("LookupKey(%s) gave %s", f.Key, g.Key)
					}
				}
			}
		})
	}
	var fs []*events.Filter
	for i := range 50 {
		fs = append(fs, e.add(ck, fmt.Sprint("f", i)))
	}
	for _, f := range fs[:25] {
		e.del(f)
	}
	waitStats(t, a, func(s callout.Stats) bool { return s.Adds == 50 && s.Deletes == 25 })
	close(stop)
	wg.Wait()
	n := 0
	for f := range a.Filters() {
		if _, ok := a.LookupKey(f.Key); !ok {
			t.Fatalf("held filter %s not found by key", f.Key)
		}
		n++
	}
	if n != 25 {
		t.Fatalf("%d filters held, want 25", n)
	}
}
