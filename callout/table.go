package callout

import "sync"

// table holds the filters whose AddFilter succeeded, by filter id. The
// classify path reads it from many goroutines while the one notify
// goroutine writes rarely; sync.Map is built for exactly that (reads take
// no lock shared with other readers).
type table struct{ m sync.Map } // uint64 -> *Filter

func (t *table) get(id uint64) (*Filter, bool) {
	v, ok := t.m.Load(id)
	if !ok {
		return nil, false
	}
	return v.(*Filter), true
}

func (t *table) put(f *Filter) { t.m.Store(f.ID, f) }

// take removes and returns a filter, so its Context is handed back once.
func (t *table) take(id uint64) (*Filter, bool) {
	v, ok := t.m.LoadAndDelete(id)
	if !ok {
		return nil, false
	}
	return v.(*Filter), true
}

// takeKey finds a filter by key: only for a delete that carries no id,
// which the engine never writes, so a scan is fine.
func (t *table) takeKey(key string) (*Filter, bool) {
	var found *Filter
	t.m.Range(func(_, v any) bool {
		if f := v.(*Filter); f.Key == key {
			found = f
			return false
		}
		return true
	})
	if found == nil {
		return nil, false
	}
	return t.take(found.ID)
}

func (t *table) len() int {
	n := 0
	t.m.Range(func(_, _ any) bool { n++; return true })
	return n
}
