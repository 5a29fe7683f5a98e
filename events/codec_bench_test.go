package events

import (
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// Benchmarks of the codec against the reflection oracle, in one run:
//
//	go test ./events -run '^$' -bench . -count 5 > out.txt
//	go run golang.org/x/perf/cmd/benchstat@latest -col /impl out.txt

const benchCallout = "0c8e7f1d-7c55-4d0e-a2e1-6f3b9d2f4e10"

// benchEvent is a FilterAdded of the shape test/bench adds (its
// benchFilter): a 40-byte name, two conditions, an inspection callout.
func benchEvent(i int) *Event {
	return &Event{
		Schema: SchemaVersion, Type: FilterAdded, ID: fmt.Sprintf("%08x-9d7c-4b8e-8a43-3c2f2d1a0b01", i),
		Time: time.Date(2025, 3, 14, 15, 9, 26, i, time.UTC),
		Filter: &Filter{
			Key: fmt.Sprintf("%08x-8a43-4b8e-9d7c-3c2f2d1a0b01", i), ID: uint64(1_000_000 + i),
			Name: fmt.Sprintf("bench filter %027d", i), Layer: "FWPM_LAYER_ALE_AUTH_CONNECT_V4", Weight: uint64(i % 16),
			Conditions: []Condition{
				{Field: "FWPM_CONDITION_IP_REMOTE_PORT", Match: MatchEqual, Value: strconv.Itoa(1024 + i%60000)},
				{Field: "FWPM_CONDITION_IP_REMOTE_ADDRESS", Match: MatchPrefix, Value: "10.1.2.0/24"},
			},
			Action: ActionCalloutInspection, CalloutKey: benchCallout,
		},
	}
}

type codecImpl struct {
	name   string
	encode func(*Event) ([]byte, error)
	decode func([]byte) (*Event, error)
}

var codecImpls = []codecImpl{
	{"impl=codec", Encode, Decode},
	{"impl=reflect", oracleEncode, oracleDecode},
}

func BenchmarkDecodeFilterAdded(b *testing.B) {
	data, err := Encode(benchEvent(1))
	if err != nil {
		b.Fatal(err)
	}
	for _, impl := range codecImpls {
		b.Run(impl.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := impl.decode(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncodeFilterAdded(b *testing.B) {
	ev := benchEvent(1)
	for _, impl := range codecImpls {
		b.Run(impl.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := impl.encode(ev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeRetained decodes 100k distinct FilterAdded payloads and
// keeps every filter, as a replay agent or a cold-starting engine does,
// and reports the live heap that adds per filter (B/filter) and the
// objects it keeps (objs/filter).
func BenchmarkDecodeRetained(b *testing.B) {
	const n = 100_000
	payloads := make([][]byte, n)
	for i := range payloads {
		var err error
		if payloads[i], err = Encode(benchEvent(i)); err != nil {
			b.Fatal(err)
		}
	}
	for _, impl := range codecImpls {
		b.Run(impl.name, func(b *testing.B) {
			kept := make([]*Filter, n)
			var heap, objs, rounds float64
			for b.Loop() {
				rounds++
				clear(kept)
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				for i, p := range payloads {
					ev, err := impl.decode(p)
					if err != nil {
						b.Fatal(err)
					}
					kept[i] = ev.Filter
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				heap += float64(after.HeapAlloc) - float64(before.HeapAlloc)
				objs += float64(after.HeapObjects) - float64(before.HeapObjects)
			}
			runtime.KeepAlive(kept)
			b.ReportMetric(heap/rounds/n, "B/filter")
			b.ReportMetric(objs/rounds/n, "objs/filter")
		})
	}
}
