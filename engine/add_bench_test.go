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

// BenchmarkAddDelete is an add and the delete of what it added, per
// operation, 16 callers at once, without and with an archive stream
// (Config.Archive): what keeping the full history costs the writer, and
// how many deletes the archive's lag leaves plain (a roll-up waits for
// the archive to have the add; plain/op).
func BenchmarkAddDelete(b *testing.B) {
	for _, archive := range []string{"", "WFP_ARCHIVE"} {
		name := "no-archive"
		if archive != "" {
			name = "archive"
		}
		b.Run(name, func(b *testing.B) {
			srv := testkit.Server(b)
			nc := testkit.Conn(b, srv)
			e, err := Start(context.Background(), nc, Config{Archive: archive, Logger: testLogger(io.Discard)})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(e.Close)
			c := NewClient(testkit.Conn(b, srv))
			f := events.Filter{Name: "bench", Layer: "ALE_AUTH_CONNECT_V4", Weight: 10, Action: events.ActionBlock}
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					got, err := c.AddFilter(context.Background(), f)
					if err == nil {
						err = c.DeleteFilter(context.Background(), FilterRef{FilterID: got.ID})
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric((float64(e.Stats().PendingPurges)+float64(e.Stats().Purged))/float64(b.N), "plain/op")
		})
	}
}
