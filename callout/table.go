package callout

import (
	"iter"
	"sync"
)

// table holds the filters whose AddFilter succeeded, by filter id and by
// filter key. The classify path reads it from many goroutines while the
// one notify goroutine writes rarely; sync.Map is built for exactly that
// (reads take no lock shared with other readers). A filter is in byKey
// only while it is in byID; between the two stores a reader may see it
// under one index and not yet the other, never a stale filter.
type table struct {
	byID  sync.Map // uint64 -> *Filter
	byKey sync.Map // string -> *Filter
}

func (t *table) get(id uint64) (*Filter, bool) {
	v, ok := t.byID.Load(id)
	if !ok {
		return nil, false
	}
	return v.(*Filter), true
}

func (t *table) getKey(key string) (*Filter, bool) {
	v, ok := t.byKey.Load(key)
	if !ok {
		return nil, false
	}
	return v.(*Filter), true
}

func (t *table) put(f *Filter) {
	t.byID.Store(f.ID, f)
	t.byKey.Store(f.Key, f)
}

// take removes and returns a filter, so its Context is handed back once.
func (t *table) take(id uint64) (*Filter, bool) {
	v, ok := t.byID.LoadAndDelete(id)
	if !ok {
		return nil, false
	}
	f := v.(*Filter)
	t.byKey.CompareAndDelete(f.Key, f)
	return f, true
}

// takeKey removes a filter by key: for a delete that carries no id.
func (t *table) takeKey(key string) (*Filter, bool) {
	f, ok := t.getKey(key)
	if !ok {
		return nil, false
	}
	return t.take(f.ID)
}

// all yields the held filters, in no particular order. Like ranging over
// a sync.Map, it sees each filter held throughout at most once, and may or
// may not see one added or taken meanwhile.
func (t *table) all() iter.Seq[*Filter] {
	return func(yield func(*Filter) bool) {
		t.byID.Range(func(_, v any) bool { return yield(v.(*Filter)) })
	}
}

func (t *table) len() int {
	n := 0
	t.byID.Range(func(_, _ any) bool { n++; return true })
	return n
}
