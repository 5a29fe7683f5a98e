package callout_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
)

// hitState is a context the classify path mutates concurrently.
type hitState struct {
	id    uint64
	hits  atomic.Int64
	freed atomic.Bool
}

// R6: the context set at add is what Lookup shows to concurrent readers,
// and it comes back exactly once, at delete. Run with -race.
func TestR6_ContextVisibleToConcurrentLookupsAndHandedBackOnce(t *testing.T) {
	e := newEnv(t)
	ck := newKey()

	var mu sync.Mutex // guards created and handedBack: the test reads them too
	created := map[uint64]*hitState{}
	handedBack := map[uint64]int{}
	deleted := make(chan uint64, 1000)
	added := make(chan uint64, 1000)
	h := callout.HandlerFunc(func(_ context.Context, nt callout.NotifyType, f *callout.Filter) error {
		switch nt {
		case callout.AddFilter:
			st := &hitState{id: f.ID}
			f.Context = st
			mu.Lock()
			created[f.ID] = st
			mu.Unlock()
			added <- f.ID
		case callout.DeleteFilter:
			st, _ := f.Context.(*hitState)
			mu.Lock()
			if st != nil {
				if created[f.ID] != st {
					t.Errorf("delete of %d: Context %p, want %p from its add", f.ID, st, created[f.ID])
				}
				handedBack[f.ID]++
			}
			mu.Unlock()
			if st != nil {
				st.freed.Store(true) // the "ExFreePool" of the seed's example
			}
			deleted <- f.ID
		}
		return nil
	})
	a := e.register(ck, h)

	// Readers: the classify path, looking filters up while they come and go.
	var ids sync.Map // filter id -> struct{}, ids the readers probe
	stop := make(chan struct{})
	var readers sync.WaitGroup
	var found atomic.Int64
	for range 8 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				ids.Range(func(k, _ any) bool {
					id := k.(uint64)
					if f, ok := a.Lookup(id); ok {
						st, _ := f.Context.(*hitState)
						if st == nil || st.id != id || f.ID != id {
							t.Errorf("Lookup(%d): filter %d with Context %v", id, f.ID, f.Context)
							return false
						}
						st.hits.Add(1)
						found.Add(1)
					}
					return true
				})
			}
		}()
	}

	const n = 60
	var filters []*events.Filter
	for range n {
		f := e.add(ck, "f")
		ids.Store(f.ID, struct{}{})
		filters = append(filters, f)
	}
	for range n {
		waitFor(t, added)
	}
	testkit.Eventually(t, "readers see the filters", func() bool { return found.Load() > n })
	for _, f := range filters {
		e.del(f)
	}
	for range n {
		waitFor(t, deleted)
	}
	close(stop)
	readers.Wait()

	mu.Lock()
	defer mu.Unlock()
	for _, f := range filters {
		if handedBack[f.ID] != 1 {
			t.Errorf("filter %d: context handed back %d times, want 1", f.ID, handedBack[f.ID])
		}
		if _, ok := a.Lookup(f.ID); ok {
			t.Errorf("filter %d still held after its delete", f.ID)
		}
	}
	waitStats(t, a, func(s callout.Stats) bool { return s.Held == 0 && s.Adds == n && s.Deletes == n })
}

// R6 with R7: the context a refused AddFilter set is not kept. The
// engine takes the filter back; its DeleteFilter carries no Context and
// says why.
func TestR6_RefusedAddContextIsNotKept(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	rec := newRecorder()
	rec.before = func(_ context.Context, nt callout.NotifyType, f *callout.Filter) error {
		if nt == callout.AddFilter && f.Name == "refused" {
			f.Context = "leaked"
			return context.DeadlineExceeded
		}
		return nil
	}
	a := e.register(ck, rec)
	f := e.add(ck, "refused")
	const reason = "rejected by agent x: context deadline exceeded"
	ev := events.NewFilterEvent(events.FilterDeleted, f.Clone())
	ev.Reason = reason
	e.publish(ev)
	g := e.add(ck, "taken")

	n := rec.next(t)
	if n.t != callout.DeleteFilter || n.id != f.ID || n.ctx != nil {
		t.Fatalf("got %v, want the delete of the refused filter with no Context", n)
	}
	if n.reason != reason {
		t.Fatalf("delete Reason %q, want %q", n.reason, reason)
	}
	rec.expect(t, addNote(g, false))
	var got *callout.Filter
	testkit.Eventually(t, "accepted filter held", func() bool { // just after the handler returns
		var ok bool
		got, ok = a.Lookup(g.ID)
		return ok
	})
	if _, ok := a.Lookup(f.ID); ok {
		t.Fatal("refused filter held")
	}
	if _, ok := got.Context.(*filterState); !ok {
		t.Fatalf("Context %v, want the handler's state", got.Context)
	}
}

func waitFor[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-ctxTimeout(t):
		t.Fatal("nothing received within", wait)
		var zero T
		return zero
	}
}
