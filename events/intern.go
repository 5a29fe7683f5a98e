package events

import (
	"maps"
	"slices"
	"sync"
	"sync/atomic"
)

// Interning. A fleet's filters repeat a small vocabulary: a few dozen
// layers, five actions, one key per callout and provider, a hundred
// condition fields, nine match types, three flags. Decoding each into a
// fresh string cost a replay agent or a cold-starting engine a string per
// field per filter; interned, 100k filters on one layer share one layer
// string.
//
// Not the unique package: a string taken from a unique.Handle does not
// keep the handle's entry alive, so after a GC the next Make copies again
// and a long replay ends with a copy per GC cycle. This table keeps what it
// holds, and is bounded so that a hostile stream of distinct names cannot
// grow it: past maxSymbols, or for a string longer than maxSymbolLen,
// decoding just allocates, as it did before.
const (
	maxSymbols   = 1024
	maxSymbolLen = 128
)

// symbols is an intern table. Readers take no lock: the map is never
// modified once stored, and an addition stores a copy (adding is rare,
// once per distinct symbol for the life of the process; reading is every
// field of every event).
type symbols struct {
	mu sync.Mutex // serialises additions
	m  atomic.Pointer[map[string]string]
}

func newSymbols(seed ...string) *symbols {
	m := make(map[string]string, len(seed))
	for _, s := range seed {
		m[s] = s
	}
	t := new(symbols)
	t.m.Store(&m)
	return t
}

// symbolTable is the decoder's table, seeded with the names this package
// defines.
var symbolTable = newSymbols(seedSymbols()...)

func seedSymbols() []string {
	s := slices.Concat(FilterFlags, CalloutFlags, MatchTypes)
	for _, t := range []Type{FilterAdded, FilterDeleted, CalloutAdded, CalloutDeleted} {
		s = append(s, string(t))
	}
	for _, a := range ActionTypes {
		s = append(s, string(a))
	}
	return s
}

func intern(b []byte) string { return symbolTable.intern(b) }

// intern returns the table's copy of b, adding it if there is room.
func (t *symbols) intern(b []byte) string {
	if s, ok := (*t.m.Load())[string(b)]; ok { // the lookup does not allocate
		return s
	}
	s := string(b)
	if len(s) == 0 || len(s) > maxSymbolLen {
		return s
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.m.Load()
	if u, ok := old[s]; ok {
		return u
	}
	if len(old) >= maxSymbols {
		return s
	}
	m := make(map[string]string, len(old)+1)
	maps.Copy(m, old)
	m[s] = s
	t.m.Store(&m)
	return s
}
