package projection

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

// asOf is what a state answered at one position, to compare with what
// it answers about that position later.
type asOf struct {
	seq      uint64
	filters  map[Template][]uint64
	callouts []CalloutAt
}

func templates() []Template {
	return []Template{{}, {Layer: "L1"}, {Layer: "L2", ProviderKey: "P1"}, {ProviderKey: "P0"}}
}

func record(s *State) asOf {
	a := asOf{seq: s.Seq(), filters: map[Template][]uint64{}}
	for _, t := range templates() {
		for _, f := range s.Filters(t) {
			a.filters[t] = append(a.filters[t], f.ID)
		}
	}
	for _, c := range s.Callouts() {
		a.callouts = append(a.callouts, CalloutAt{Callout: c, Filters: s.FiltersNaming(c.Key)})
	}
	return a
}

// pages reads a listing as of seq in pages of size n.
func pages(t *testing.T, s *State, tmpl Template, seq uint64, n int) []uint64 {
	t.Helper()
	var out []uint64
	after := uint64(0)
	for {
		it, err := s.FiltersAt(tmpl, seq, after)
		if err != nil {
			t.Fatalf("FiltersAt(%d, after %d): %v", seq, after, err)
		}
		page := 0
		for f := range it {
			out = append(out, f.ID)
			after = f.ID
			if page++; page == n {
				break
			}
		}
		if page < n {
			return out
		}
	}
}

func calloutPages(t *testing.T, s *State, seq uint64, n int) []CalloutAt {
	t.Helper()
	var out []CalloutAt
	after := ""
	for {
		page, more, err := s.CalloutsAt(seq, after, n)
		if err != nil {
			t.Fatalf("CalloutsAt(%d, after %q): %v", seq, after, err)
		}
		out = append(out, page...)
		if !more {
			return out
		}
		after = page[len(page)-1].Key
	}
}

// A listing read page by page as of a position, after the state has moved
// on, shows exactly what the state showed at that position.
func TestReadsAsOfAnEarlierPosition(t *testing.T) {
	for i := range 100 {
		r := rand.New(rand.NewPCG(uint64(i), 11))
		log := randomLog(r, 2+r.IntN(300))
		s := New()
		s.Keep()
		var seen []asOf
		for _, e := range log {
			s.Apply(e.seq, copyEvent(e.ev))
			if r.IntN(5) == 0 {
				seen = append(seen, record(s))
			}
		}
		seen = append(seen, record(s))
		for _, a := range seen {
			for _, tmpl := range templates() {
				if got := pages(t, s, tmpl, a.seq, 1+r.IntN(4)); !slices.Equal(got, a.filters[tmpl]) {
					t.Fatalf("seed %d: filters %+v as of %d = %v, want %v", i, tmpl, a.seq, got, a.filters[tmpl])
				}
			}
			if got := calloutPages(t, s, a.seq, 1+r.IntN(3)); !reflect.DeepEqual(got, a.callouts) {
				t.Fatalf("seed %d: callouts as of %d = %v, want %v", i, a.seq, got, a.callouts)
			}
		}

		// Forgetting drops the positions before it, and only those.
		cut := seen[r.IntN(len(seen))].seq
		s.Forget(cut)
		for _, a := range seen {
			_, err := s.FiltersAt(Template{}, a.seq, 0)
			if a.seq < s.Forgotten() {
				if !errors.Is(err, ErrForgotten) {
					t.Fatalf("seed %d: read as of %d after Forget(%d): %v, want ErrForgotten", i, a.seq, cut, err)
				}
				continue
			}
			if got := pages(t, s, Template{}, a.seq, 3); !slices.Equal(got, a.filters[Template{}]) {
				t.Fatalf("seed %d: after Forget(%d), filters as of %d = %v, want %v", i, cut, a.seq, got, a.filters[Template{}])
			}
		}
	}
}

// Without Keep, the state keeps nothing it removed: a read as of a
// position before the last removal is refused, not answered wrongly.
func TestWithoutKeepOnlyTheCurrentPositionIsRead(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 11))
	log := randomLog(r, 400)
	s := New()
	var seen []asOf
	for _, e := range log {
		s.Apply(e.seq, copyEvent(e.ev))
		seen = append(seen, record(s))
	}
	if s.Kept() > len(s.h.order)/2 {
		t.Fatalf("%d removed versions kept of %d", s.Kept(), len(s.h.order))
	}
	for _, a := range seen {
		_, err := s.FiltersAt(Template{}, a.seq, 0)
		switch {
		case a.seq < s.Forgotten() && !errors.Is(err, ErrForgotten):
			t.Fatalf("read as of %d (forgotten up to %d): %v", a.seq, s.Forgotten(), err)
		case a.seq >= s.Forgotten() && err != nil:
			t.Fatalf("read as of %d: %v", a.seq, err)
		}
	}
	if got := pages(t, s, Template{}, s.Seq(), 7); !slices.Equal(got, seen[len(seen)-1].filters[Template{}]) {
		t.Fatalf("current listing %v, want %v", got, seen[len(seen)-1].filters[Template{}])
	}
}
