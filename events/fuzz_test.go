package events

import (
	"bytes"
	"errors"
	"reflect"
	"runtime/metrics"
	"testing"
	"time"
)

// go test ./events -run '^$' -fuzz FuzzDecode -fuzztime 60s
// go test ./events -run '^$' -fuzz FuzzEncode -fuzztime 60s
//
// Inputs the fuzzer found worth keeping are in testdata/fuzz; plain
// `go test` runs them as regression tests.

func FuzzDecode(f *testing.F) {
	for _, c := range goldenEvents() {
		if data, _ := Encode(c.ev); len(data) < 4096 {
			f.Add(data)
		}
	}
	for _, data := range [][]byte{otherWriter(), nilForEmpty(), unknownEverywhere(), nil, {0xc0}, {0x81, 0xa1, 't', 0xc1}} {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		before := allocatedBytes()
		ev, err := Decode(data)
		// What decoding keeps is at most a Condition (48 B) per byte of
		// input; a bogus length prefix must not cost more.
		if grown := allocatedBytes() - before; grown > 64*uint64(len(data))+1<<20 {
			t.Fatalf("decoding %d bytes allocated %d", len(data), grown)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		enc, err := Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		again, err := Decode(enc)
		if err != nil {
			t.Fatalf("re-encoded %+v does not decode: %v", ev, err)
		}
		if !sameEvent(again, ev) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", again, ev)
		}
		if enc2, _ := Encode(again); !bytes.Equal(enc2, enc) {
			t.Fatalf("encoding is not stable:\n%x\n%x", enc, enc2)
		}
	})
}

// allocatedBytes is the heap allocated so far. Small allocations show in
// it a span at a time, so it is only good for catching large ones; it
// needs no stop-the-world, unlike runtime.ReadMemStats.
func allocatedBytes() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// FuzzEncode: for fuzzed field values, Encode writes the reflection
// encoder's bytes, and Decode reads them back to what it read.
func FuzzEncode(f *testing.F) {
	f.Add(1, "FilterAdded", "id", int64(1700000000), int64(5), "key", uint64(42), "name", "layer", uint64(7),
		"field", "equal", "23", "callout-inspection", "ck", "PERMIT_IF_CALLOUT_UNREGISTERED", []byte{1}, "", true, false)
	f.Add(-1, "", "", int64(-1), int64(0), "", uint64(0), "", "", uint64(1<<63), "", "", "", "", "", "", []byte(nil), "why", false, true)
	f.Fuzz(func(t *testing.T, schema int, typ, id string, sec, nsec int64, key string, fid uint64, name, layer string, weight uint64,
		field, match, value, action, ck, flag string, pd []byte, reason string, withFilter, withCallout bool) {
		ev := &Event{Schema: schema, Type: Type(typ), ID: id, Time: time.Unix(sec%(1<<40), nsec), Reason: reason}
		if withFilter {
			ev.Filter = &Filter{Key: key, ID: fid, Name: name, Layer: layer, Weight: weight, Action: ActionType(action),
				CalloutKey: ck, ProviderData: pd, Description: value, SubLayerKey: match, ProviderKey: field}
			if field != "" || match != "" || value != "" {
				ev.Filter.Conditions = []Condition{{Field: field, Match: match, Value: value}}
			}
			if flag != "" {
				ev.Filter.Flags = []string{flag, flag}
			}
		}
		if withCallout {
			ev.Callout = &Callout{Key: ck, Name: name, Description: reason, Layer: layer, ProviderKey: key}
			if flag != "" {
				ev.Callout.Flags = []string{flag}
			}
		}
		want, err := oracleEncode(ev)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := Encode(ev)
		if !bytes.Equal(got, want) {
			t.Fatalf("Encode(%+v)\n got %x\nwant %x", ev, got, want)
		}
		dec, err := Decode(got)
		old, oldErr := oracleDecode(got)
		if (err != nil) != (oldErr != nil) {
			t.Fatalf("Decode error %v, reflection decoder %v", err, oldErr)
		}
		if err == nil && !reflect.DeepEqual(dec, old) {
			t.Fatalf("Decode differs from the reflection decoder:\n got %+v\nwant %+v", dec, old)
		}
	})
}
