package callout

import (
	"iter"
	"sync"
)

// table holds the filters whose AddFilter succeeded, by filter id and by
// filter key. The classify path reads it from many goroutines while the
// one notify goroutine writes. Two plain maps under a read-write lock:
// a filter costs two map slots (a sync.Map, which the reads alone would
// favour, cost about 240 bytes more per filter in boxed keys and trie
// nodes, more than the filter itself), and the notify goroutine sizes
// them from the snapshot it is about to read. A filter is in byKey only
// while it is in byID.
type table struct {
	mu    sync.RWMutex
	byID  map[uint64]*Filter
	byKey map[string]*Filter
}

// reserve makes room for n more filters at once, before a snapshot of n
// is read, so the maps do not grow step by step.
func (t *table) reserve(n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if want := len(t.byID) + n; t.byID == nil || want > 2*len(t.byID) {
		byID := make(map[uint64]*Filter, want)
		byKey := make(map[string]*Filter, want)
		for id, f := range t.byID {
			byID[id] = f
		}
		for k, f := range t.byKey {
			byKey[k] = f
		}
		t.byID, t.byKey = byID, byKey
	}
}

func (t *table) get(id uint64) (*Filter, bool) {
	t.mu.RLock()
	f, ok := t.byID[id]
	t.mu.RUnlock()
	return f, ok
}

func (t *table) getKey(key string) (*Filter, bool) {
	t.mu.RLock()
	f, ok := t.byKey[key]
	t.mu.RUnlock()
	return f, ok
}

func (t *table) put(f *Filter) {
	t.mu.Lock()
	if t.byID == nil {
		t.byID, t.byKey = make(map[uint64]*Filter), make(map[string]*Filter)
	}
	t.byID[f.ID] = f
	t.byKey[f.Key] = f
	t.mu.Unlock()
}

// take removes and returns a filter, so its Context is handed back once.
func (t *table) take(id uint64) (*Filter, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f, ok := t.byID[id]
	if !ok {
		return nil, false
	}
	delete(t.byID, id)
	if t.byKey[f.Key] == f {
		delete(t.byKey, f.Key)
	}
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

// all yields the held filters, in no particular order. It reads a
// snapshot of the ids taken under the lock, then each filter as it is
// then: it sees each filter held throughout once, and may or may not see
// one added or taken meanwhile; the handler is never held up by a slow
// loop body.
func (t *table) all() iter.Seq[*Filter] {
	return func(yield func(*Filter) bool) {
		t.mu.RLock()
		ids := make([]uint64, 0, len(t.byID))
		for id := range t.byID {
			ids = append(ids, id)
		}
		t.mu.RUnlock()
		for _, id := range ids {
			if f, ok := t.get(id); ok && !yield(f) {
				return
			}
		}
	}
}

func (t *table) len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.byID)
}
