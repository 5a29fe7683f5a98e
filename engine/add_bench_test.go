package engine

import (
	"context"
	"io"
	"testing"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
)

// BenchmarkAddFilter is adds through the API, many callers at once, on
// an embedded server: for profiles of the engine's own cost per add (go
// test -bench AddFilter -cpuprofile). The ratios to raw JetStream are
// test/bench's.
func BenchmarkAddFilter(b *testing.B) {
	srv := testkit.Server(b)
	nc := testkit.Conn(b, srv)
	e, err := Start(context.Background(), nc, Config{Logger: testLogger(io.Discard)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(e.Close)
	c := NewClient(testkit.Conn(b, srv))
	f := events.Filter{Name: "bench", Layer: "ALE_AUTH_CONNECT_V4", Weight: 10, Action: events.ActionBlock,
		Conditions: []events.Condition{{Field: "IP_REMOTE_PORT", Value: "22"}, {Field: "IP_PROTOCOL", Value: "6"}}}
	b.SetParallelism(64)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.AddFilter(context.Background(), f); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
