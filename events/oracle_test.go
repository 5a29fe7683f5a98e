package events

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// The oracle: the reflection codec Encode and Decode were before the
// codec was written by hand. The wire bytes of today are whatever it
// writes, so tests compare against it. It lives in test code only, and the
// event types must never implement msgpack.CustomEncoder/CustomDecoder, or
// the oracle would call the code it checks.

func oracleEncode(e *Event) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	if err := enc.Encode(e); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func oracleDecode(data []byte) (*Event, error) {
	var e Event
	if err := msgpack.Unmarshal(data, &e); err != nil {
		return nil, err
	}
	if e.Type == "" {
		return nil, fmt.Errorf("no event type")
	}
	return &e, nil
}

// sameEvent reports whether a and b hold the same values. Times compare
// by instant: the wire keeps no location.
func sameEvent(a, b *Event) bool {
	if a == nil || b == nil {
		return a == b
	}
	if !a.Time.Equal(b.Time) {
		return false
	}
	x, y := *a, *b
	x.Time, y.Time = time.Time{}, time.Time{}
	return reflect.DeepEqual(&x, &y)
}

// randEvent returns an event built to reach every corner of the encoding:
// each int width, fixstr/str8/str16/str32, bin8/16/32, fixarray/array16,
// the three timestamp forms, absent and present optional fields, text that
// is not UTF-8, and types and schemas this code does not know.
func randEvent(r *rand.Rand) *Event {
	e := &Event{
		Schema: int(randInt(r)),
		Type:   Type(pick(r, "FilterAdded", "FilterDeleted", "CalloutAdded", "CalloutDeleted", "SessionOpened", "SessionClosed", "FilterRenamed", "x", "")),
		ID:     randString(r),
		Time:   randTime(r),
		Reason: maybe(r, randString),
	}
	if r.IntN(5) == 0 {
		e.Schema = SchemaVersion
	}
	if r.IntN(4) != 0 {
		e.Filter = randFilter(r)
	}
	if r.IntN(3) == 0 {
		e.Callout = &Callout{
			Key: randString(r), Name: randString(r), Description: maybe(r, randString),
			Layer: maybe(r, randString), Flags: randStrings(r), ProviderKey: maybe(r, randString),
			Session: maybe(r, randString),
		}
	}
	if r.IntN(3) == 0 {
		e.Session = &Session{ID: randString(r), Name: maybe(r, randString), Dynamic: r.IntN(2) == 0, LeaseMs: randUint(r)}
	}
	return e
}

func randFilter(r *rand.Rand) *Filter {
	f := &Filter{
		Key: randString(r), ID: randUint(r), Name: randString(r), Description: maybe(r, randString),
		Layer: randString(r), SubLayerKey: maybe(r, randString), Weight: randUint(r),
		Action:     ActionType(pick(r, "permit", "block", "callout-terminating", "callout-inspection", "callout-unknown", "")),
		CalloutKey: maybe(r, randString), Flags: randStrings(r), ProviderKey: maybe(r, randString),
		Session: maybe(r, randString),
	}
	if n := randLen(r); n > 0 {
		f.Conditions = make([]Condition, n)
		for i := range f.Conditions {
			f.Conditions[i] = Condition{Field: randString(r), Match: pick(r, MatchTypes...), Value: randString(r)}
		}
	}
	if pd := randString(r); r.IntN(3) == 0 && pd != "" {
		f.ProviderData = []byte(pd)
	}
	return f
}

func pick(r *rand.Rand, s ...string) string { return s[r.IntN(len(s))] }

func maybe(r *rand.Rand, f func(*rand.Rand) string) string {
	if r.IntN(2) == 0 {
		return ""
	}
	return f(r)
}

// randLen is an array length: mostly small, sometimes past the fixarray
// limit of 15.
func randLen(r *rand.Rand) int {
	switch r.IntN(10) {
	case 0:
		return 15 + r.IntN(3)
	case 1:
		return 64
	}
	return r.IntN(4)
}

func randStrings(r *rand.Rand) []string {
	n := randLen(r)
	if n == 0 {
		return nil
	}
	s := make([]string, n)
	for i := range s {
		s[i] = pick(r, FlagPermitIfCalloutUnregistered, FlagClearActionRight, FlagORConditions, CalloutFlagCommitAddNotify, "", "FUTURE_FLAG")
	}
	return s
}

func randString(r *rand.Rand) string {
	switch r.IntN(12) {
	case 0:
		return ""
	case 1:
		return pick(r, "ü", "日本語のフィルター", "🔥 block", "Ωmega\u0000nul", "é\u200de")
	case 2: // around each string header boundary
		n := []int{31, 32, 255, 256, 1024, 4096, 65535, 65536, 70000}[r.IntN(9)]
		return strings.Repeat(pick(r, "a", "é"), n)[:n]
	case 3: // not UTF-8: the wire keeps bytes
		b := make([]byte, r.IntN(40))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return string(b)
	case 4:
		return fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", r.Uint32(), r.IntN(1<<16), r.IntN(1<<12), r.IntN(1<<12), r.Int64N(1<<48))
	}
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./ "
	b := make([]byte, 1+r.IntN(40))
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(b)
}

// intEdges are the values on each side of a msgpack int width.
var intEdges = []int64{0, 1, 127, 128, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxInt64,
	-1, -32, -33, -128, -129, -32768, -32769, math.MinInt32, math.MinInt32 - 1, math.MinInt64}

func randInt(r *rand.Rand) int64 {
	if r.IntN(2) == 0 {
		return intEdges[r.IntN(len(intEdges))]
	}
	return r.Int64() >> r.IntN(64)
}

func randUint(r *rand.Rand) uint64 {
	switch r.IntN(3) {
	case 0:
		return uint64(intEdges[r.IntN(11)])
	case 1:
		return math.MaxUint64 - uint64(r.IntN(2))
	}
	return r.Uint64() >> r.IntN(64)
}

// randTime covers the 32-bit (whole seconds), 64-bit and 96-bit (before
// 1970, after 2514, the zero time) timestamp forms.
func randTime(r *rand.Rand) time.Time {
	switch r.IntN(6) {
	case 0:
		return time.Time{}
	case 1:
		return time.Unix(r.Int64N(1<<32), 0).UTC()
	case 2:
		return time.Unix(-r.Int64N(1<<40), r.Int64N(1e9))
	case 3:
		return time.Unix(1<<34+r.Int64N(1<<40), r.Int64N(1e9)).In(time.FixedZone("X", 3600))
	}
	return time.Unix(r.Int64N(1<<34), r.Int64N(1e9)).UTC()
}
