package events

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"
)

// mp builds msgpack by hand, in the widths another writer may choose.
// Every method returns a new slice, so a shared prefix stays intact.
type mp []byte

func (b mp) raw(p ...byte) mp { return append(slices.Clip(b), p...) }
func (b mp) be(code byte, n uint64, size int) mp {
	p := []byte{code}
	for i := size - 1; i >= 0; i-- {
		p = append(p, byte(n>>(8*i)))
	}
	return b.raw(p...)
}
func (b mp) fixstr(s string) mp { return b.raw(0xa0 | byte(len(s))).raw([]byte(s)...) }
func (b mp) str8(s string) mp   { return b.be(0xd9, uint64(len(s)), 1).raw([]byte(s)...) }
func (b mp) str16(s string) mp  { return b.be(0xda, uint64(len(s)), 2).raw([]byte(s)...) }
func (b mp) str32(s string) mp  { return b.be(0xdb, uint64(len(s)), 4).raw([]byte(s)...) }
func (b mp) bin8(s string) mp   { return b.be(0xc4, uint64(len(s)), 1).raw([]byte(s)...) }
func (b mp) bin32(s string) mp  { return b.be(0xc6, uint64(len(s)), 4).raw([]byte(s)...) }
func (b mp) u64(n uint64) mp    { return b.be(0xcf, n, 8) }
func (b mp) i64(n int64) mp     { return b.be(0xd3, uint64(n), 8) }
func (b mp) u16(n uint64) mp    { return b.be(0xcd, n, 2) }
func (b mp) map16(n int) mp     { return b.be(0xde, uint64(n), 2) }
func (b mp) map32(n int) mp     { return b.be(0xdf, uint64(n), 4) }
func (b mp) arr16(n int) mp     { return b.be(0xdc, uint64(n), 2) }
func (b mp) arr32(n int) mp     { return b.be(0xdd, uint64(n), 4) }
func (b mp) null() mp           { return b.raw(0xc0) }

// ts96 is a timestamp in the 96-bit form behind an ext8 header, which the
// msgpack encoder only writes for times it cannot fit in 64 bits.
func (b mp) ts96(t time.Time) mp {
	p := binary.BigEndian.AppendUint32([]byte{0xc7, 12, 0xff}, uint32(t.Nanosecond()))
	return b.raw(binary.BigEndian.AppendUint64(p, uint64(t.Unix()))...)
}

var (
	lenientTime = time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.UTC)
	lenientWant = &Event{Schema: 1, Type: FilterAdded, ID: "id-1", Time: lenientTime, Filter: &Filter{
		Key: "k", ID: 42, Name: "n", Layer: "FWPM_LAYER_ALE_AUTH_CONNECT_V4", Weight: 7,
		Conditions: []Condition{{Field: "FIELD", Match: MatchEqual, Value: "23"}, {}},
		Action:     ActionCalloutTerminating, CalloutKey: "ck", Flags: []string{FlagORConditions}, ProviderData: []byte{1, 2},
	}}
)

// otherWriter is lenientWant as a writer that picks other widths than
// ours would: map16/map32, str8/str16/str32 for short text, bin for text,
// uint64/int64 for small ints, the 96-bit timestamp, array16/array32, a
// nil condition, and keys in another order.
func otherWriter() []byte {
	return mp(nil).map16(5).
		str8("t").bin8("FilterAdded").
		str16("v").i64(1).
		fixstr("ts").ts96(lenientTime).
		str32("id").str32("id-1").
		bin8("f").map32(10).
		str8("w").u64(7).str8("i").u16(42).
		fixstr("k").str16("k").fixstr("n").bin32("n").
		fixstr("l").str8("FWPM_LAYER_ALE_AUTH_CONNECT_V4").
		fixstr("a").bin8("callout-terminating").fixstr("ck").str8("ck").
		fixstr("fl").arr32(1).str16(FlagORConditions).
		fixstr("pd").str8("\x01\x02").
		fixstr("c").arr16(2).map16(3).fixstr("v").str8("23").fixstr("m").bin8("equal").fixstr("f").str32("FIELD").null()
}

// nilForEmpty is an event whose optional parts are nil rather than absent.
func nilForEmpty() []byte {
	return mp(nil).raw(0x87).
		fixstr("v").raw(1).fixstr("t").fixstr("CalloutAdded").fixstr("id").null().fixstr("ts").null().
		fixstr("f").null().fixstr("r").null().
		fixstr("c").raw(0x86).fixstr("k").fixstr("ck").fixstr("n").null().fixstr("d").null().
		fixstr("l").null().fixstr("fl").null().fixstr("pk").null()
}

// unknownEverywhere is lenientWant's shape with a key this code does not
// know, of every msgpack type, at every level, and keys that are not
// strings at all.
func unknownEverywhere() []byte {
	const junkKeys = 13
	junk := func(b mp) mp {
		b = b.fixstr("zi").raw(0xd2, 0xff, 0xff, 0xff, 0xfe)                         // int32
		b = b.fixstr("zf").raw(0xcb, 0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18) // float64
		b = b.fixstr("zb").raw(0xc3).fixstr("zn").null()
		b = b.fixstr("zs").str32(strings.Repeat("s", 300)).fixstr("zx").bin8("\x00\xff")
		b = b.fixstr("za").arr16(3).raw(0x91, 0x91, 0x80).fixstr("x").raw(0x81, 0xa1, 'k', 0x90)
		b = b.fixstr("zm").map16(2).fixstr("f").raw(0x82, 0xa1, 'k', 0xa1, 'v', 0x01, 0x02).raw(0x03, 0xc2)
		b = b.fixstr("ze").raw(0xd4, 0x05, 0x00).fixstr("zt").raw(0xd6, 0xff, 0, 0, 0, 1)
		return b.raw(0x07).fixstr("int key").raw(0x92, 1, 2).fixstr("array key").raw(0x81, 1, 2).fixstr("map key")
	}
	b := junk(mp(nil).map16(4 + junkKeys))
	b = b.fixstr("v").raw(1).fixstr("t").fixstr("FilterRenamed").fixstr("id").fixstr("u").fixstr("f").map16(2 + junkKeys)
	b = junk(b).fixstr("k").fixstr("fk").fixstr("c").raw(0x91).map16(1 + junkKeys)
	return junk(b).fixstr("f").fixstr("FIELD")
}

// TestDecodeOtherWriters: the decoder reads by type, so payloads another
// msgpack writer would produce for the same values decode to them, as the
// reflection decoder read them.
func TestDecodeOtherWriters(t *testing.T) {
	for _, c := range []struct {
		name   string
		data   []byte
		want   *Event
		oracle bool // compare with the reflection decoder
	}{
		{"other widths and order", otherWriter(), lenientWant, true},
		// The reflection decoder panicked on a nil time (reflect.Value.IsNil
		// of a struct), so there is nothing to compare with.
		{"nil for empty", nilForEmpty(), &Event{Schema: 1, Type: CalloutAdded, Callout: &Callout{Key: "ck"}}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Decode(c.data)
			if err != nil {
				t.Fatal(err)
			}
			if !sameEvent(got, c.want) {
				t.Fatalf("got  %+v %+v\nwant %+v %+v", got, got.Filter, c.want, c.want.Filter)
			}
			if !c.oracle {
				return
			}
			old, err := oracleDecode(c.data)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, old) {
				t.Fatalf("reflection decoder read %+v", old)
			}
		})
	}
}

// R5: unknown keys of any type, at any level, are skipped, keys that are
// not strings included (the reflection decoder failed on those).
func TestR5_UnknownKeysOfEveryType(t *testing.T) {
	ev, err := Decode(unknownEverywhere())
	if err != nil {
		t.Fatal(err)
	}
	want := &Event{Schema: 1, Type: "FilterRenamed", ID: "u", Filter: &Filter{Key: "fk", Conditions: []Condition{{Field: "FIELD"}}}}
	if !sameEvent(ev, want) || ev.Known() {
		t.Fatalf("got %+v %+v", ev, ev.Filter)
	}
}

func TestDecodeMalformed(t *testing.T) {
	good, _ := Encode(lenientWant)
	for name, data := range map[string][]byte{
		"envelope is an array":         mp(nil).raw(0x92, 1).fixstr("FilterAdded"),
		"envelope is a string":         mp(nil).fixstr("FilterAdded"),
		"envelope in an extension":     mp(nil).raw(0xd4, 0, 0x81).fixstr("t").fixstr("FilterAdded"),
		"type is an int":               mp(nil).raw(0x81).fixstr("t").raw(5),
		"filter is a string":           mp(nil).raw(0x82).fixstr("t").fixstr("FilterAdded").fixstr("f").fixstr("x"),
		"condition is an int":          mp(nil).raw(0x82).fixstr("t").fixstr("FilterAdded").fixstr("f").raw(0x81).fixstr("c").raw(0x91, 1),
		"schema is a float":            mp(nil).raw(0x82).fixstr("t").fixstr("FilterAdded").fixstr("v").raw(0xca, 0, 0, 0, 0),
		"time is a string":             mp(nil).raw(0x82).fixstr("t").fixstr("FilterAdded").fixstr("ts").fixstr("2025"),
		"time of another extension":    mp(nil).raw(0x82).fixstr("t").fixstr("FilterAdded").fixstr("ts").raw(0xd6, 0x01, 0, 0, 0, 0),
		"time of 5 bytes":              mp(nil).raw(0x82).fixstr("t").fixstr("FilterAdded").fixstr("ts").raw(0xc7, 5, 0xff, 0, 0, 0, 0, 0),
		"unused code 0xc1 as unknown":  mp(nil).raw(0x82).fixstr("t").fixstr("FilterAdded").fixstr("z").raw(0xc1),
		"flag is an array":             mp(nil).raw(0x82).fixstr("t").fixstr("FilterAdded").fixstr("f").raw(0x81).fixstr("fl").raw(0x91, 0x90),
		"no type":                      mp(nil).raw(0x81).fixstr("v").raw(1),
		"nil":                          mp(nil).null(),
		"truncated after the map head": good[:1],
	} {
		if ev, err := Decode(data); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Decode = %+v, %v; want ErrMalformed", name, ev, err)
		}
	}
}

// Every proper prefix of a payload is malformed, and none panics.
func TestDecodeTruncated(t *testing.T) {
	for _, c := range goldenEvents() {
		data, _ := Encode(c.ev)
		if len(data) > 4096 {
			continue
		}
		for i := range data {
			if _, err := Decode(data[:i]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("%s cut at %d of %d: err %v, want ErrMalformed", c.name, i, len(data), err)
			}
		}
	}
}

// heapAllocated returns the bytes f allocates.
func heapAllocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// A length prefix that claims more than the payload holds is malformed
// before anything is allocated for it.
func TestDecodeBogusLengthAllocatesNothing(t *testing.T) {
	head := mp(nil).raw(0x82).fixstr("t").fixstr("FilterAdded")
	inFilter := head.fixstr("f").raw(0x81)
	for name, data := range map[string][]byte{
		"conditions":    inFilter.fixstr("c").arr32(1 << 20).raw(0x80),
		"flags":         inFilter.fixstr("fl").arr32(1 << 20).fixstr("x"),
		"provider data": inFilter.fixstr("pd").be(0xc6, 1<<30, 4).raw(1, 2, 3),
		"name":          inFilter.fixstr("n").be(0xdb, 1<<30, 4).raw('a'),
		"filter map":    head.fixstr("f").map32(1 << 30).fixstr("k"),
		"unknown array": head.fixstr("z").arr32(1<<32-1).raw(1, 2),
		"unknown ext":   head.fixstr("z").be(0xc9, 1<<31, 4).raw(5, 1),
		"unknown map":   head.fixstr("z").map32(1<<32-1).raw(1, 2),
		"time ext":      head.fixstr("ts").be(0xc9, 1<<31, 4).raw(0xff, 1),
	} {
		var err error
		n := heapAllocated(func() { _, err = Decode(data) })
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err %v, want ErrMalformed", name, err)
		}
		if n > 64<<10 {
			t.Errorf("%s: a %d-byte payload allocated %d bytes", name, len(data), n)
		}
	}
}

// An unknown value nested a million deep is skipped without a million
// stack frames: with the stack capped at 8 MiB a recursive skip would
// crash the test binary.
func TestDecodeDeepNestingCostsNoStack(t *testing.T) {
	const depth = 1 << 20
	data := mp(nil).raw(0x82).fixstr("t").fixstr("FilterAdded").fixstr("z").raw(bytes.Repeat([]byte{0x91}, depth)...).null()
	defer debug.SetMaxStack(debug.SetMaxStack(8 << 20))
	done := make(chan error)
	go func() { _, err := Decode(data); done <- err }()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A decoded event shares no memory with the payload: the buffer it came
// in may be reused.
func TestDecodeCopiesPayload(t *testing.T) {
	want := benchEvent(4)
	want.Filter.ProviderData = []byte("provider data")
	want.Filter.Description = "description"
	data, _ := Encode(want)
	got, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	clear(data)
	if !sameEvent(got, want) {
		t.Fatalf("after the payload was cleared: %+v", got.Filter)
	}
}

// Decoded symbols share one copy; the rest of each filter is its own.
func TestDecodeInternsSymbols(t *testing.T) {
	a, b := benchEvent(1), benchEvent(2)
	a.Filter.Flags, b.Filter.Flags = []string{"FLAG_" + t.Name()}, []string{"FLAG_" + t.Name()}
	a.Filter.SubLayerKey, b.Filter.SubLayerKey = "sublayer-"+t.Name(), "sublayer-"+t.Name()
	a.Filter.ProviderKey, b.Filter.ProviderKey = "provider-"+t.Name(), "provider-"+t.Name()
	da, _ := Encode(a)
	db, _ := Encode(b)
	x, err := Decode(da)
	if err != nil {
		t.Fatal(err)
	}
	y, err := Decode(db)
	if err != nil {
		t.Fatal(err)
	}
	fx, fy := x.Filter, y.Filter
	same := func(what, s, u string) {
		t.Helper()
		if s != u || unsafe.StringData(s) != unsafe.StringData(u) {
			t.Errorf("%s: %q and %q are not one copy", what, s, u)
		}
	}
	same("type", string(x.Type), string(y.Type))
	same("layer", fx.Layer, fy.Layer)
	same("action", string(fx.Action), string(fy.Action))
	same("callout key", fx.CalloutKey, fy.CalloutKey)
	same("sublayer key", fx.SubLayerKey, fy.SubLayerKey)
	same("provider key", fx.ProviderKey, fy.ProviderKey)
	same("flag", fx.Flags[0], fy.Flags[0])
	for i := range fx.Conditions {
		same("condition field", fx.Conditions[i].Field, fy.Conditions[i].Field)
		same("condition match", fx.Conditions[i].Match, fy.Conditions[i].Match)
	}
	if unsafe.StringData(fx.Conditions[1].Value) == unsafe.StringData(fy.Conditions[1].Value) {
		t.Error("condition values are interned: they vary too much to share")
	}
}

// The table stops growing at maxSymbols and never takes long strings, so
// a stream of distinct names cannot grow it; what it does not take still
// decodes to the right string.
func TestSymbolTableIsBounded(t *testing.T) {
	tab := newSymbols()
	for i := range maxSymbols + 100 {
		s := fmt.Sprint("layer-", i)
		if got := tab.intern([]byte(s)); got != s {
			t.Fatalf("intern(%q) = %q", s, got)
		}
	}
	long := strings.Repeat("x", maxSymbolLen+1)
	if got := tab.intern([]byte(long)); got != long {
		t.Fatalf("intern(long) = %q", got)
	}
	if n := len(*tab.m.Load()); n != maxSymbols {
		t.Fatalf("table holds %d symbols, want %d", n, maxSymbols)
	}
	fresh := newSymbols()
	fresh.intern([]byte(long))
	if _, ok := (*fresh.m.Load())[long]; ok {
		t.Fatalf("a %d-byte string was interned", len(long))
	}
}

// Decoding is safe from many goroutines at once, adding symbols included
// (run with -race).
func TestDecodeConcurrently(t *testing.T) {
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				ev := benchEvent(i)
				ev.Filter.Layer = fmt.Sprintf("LAYER_%s_%d", t.Name(), (g*200+i)%50)
				data, _ := Encode(ev)
				got, err := Decode(data)
				if err != nil || !sameEvent(got, ev) {
					t.Errorf("goroutine %d, event %d: %v", g, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// kept holds a decoded event as a caller would, so the compiler cannot
// leave it on the stack.
var kept *Event

func TestAppendEncodeAndDecodeInto(t *testing.T) {
	ev := benchEvent(3)
	want, _ := Encode(ev)
	buf := make([]byte, 0, 1024)
	buf = append(buf, "prefix"...)
	got, err := AppendEncode(buf, ev)
	if err != nil || string(got) != "prefix"+string(want) {
		t.Fatalf("AppendEncode = %q, %v", got, err)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = AppendEncode(buf[:0], ev) }); n != 0 && !raceEnabled {
		t.Errorf("AppendEncode into a large enough buffer allocates %v times", n)
	}

	var e Event
	if err := DecodeInto(want, &e); err != nil || !sameEvent(&e, ev) {
		t.Fatalf("DecodeInto = %+v, %v", e, err)
	}
	keep := e.Filter
	callout, _ := Encode(NewCalloutEvent(CalloutAdded, &Callout{Key: "ck", Name: "c"}))
	if err := DecodeInto(callout, &e); err != nil || e.Filter != nil || e.Callout == nil || e.Reason != "" {
		t.Fatalf("DecodeInto over a filter event = %+v, %v; want only the callout", e, err)
	}
	if !sameEvent(&Event{Schema: ev.Schema, Type: ev.Type, ID: ev.ID, Time: ev.Time, Filter: keep}, ev) {
		t.Fatal("a filter kept from an earlier DecodeInto changed")
	}
	decodes := testing.AllocsPerRun(100, func() { kept, _ = Decode(want) })
	intos := testing.AllocsPerRun(100, func() { _ = DecodeInto(want, &e) })
	if intos != decodes-1 && !raceEnabled {
		t.Errorf("DecodeInto allocates %v times, Decode %v: want one fewer", intos, decodes)
	}
}

// DecodeFilterInto puts the filter where the caller says, and leaves no
// filter on an event without one.
func TestDecodeFilterIntoUsesTheSpare(t *testing.T) {
	f := &Filter{Key: "11111111-1111-4111-8111-111111111111", ID: 7, Name: "n", Layer: "ALE_AUTH_CONNECT_V4", Action: ActionBlock}
	data, err := Encode(NewFilterEvent(FilterAdded, f))
	if err != nil {
		t.Fatal(err)
	}
	spare := &Filter{Name: "stale", Flags: []string{"x"}}
	var e Event
	if err := DecodeFilterInto(data, &e, spare); err != nil {
		t.Fatal(err)
	}
	if e.Filter != spare || spare.Name != "n" || spare.Flags != nil || spare.ID != 7 || e.ID != "" || e.Type != FilterAdded {
		t.Fatalf("filter %p (spare %p): %+v", e.Filter, spare, spare)
	}
	data, err = Encode(NewCalloutEvent(CalloutAdded, &Callout{Key: f.Key, Name: "c"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := DecodeFilterInto(data, &e, spare); err != nil || e.Filter != nil || e.Callout == nil {
		t.Fatalf("callout event: %v, filter %v", err, e.Filter)
	}
}
