package progress

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

// records is a slog handler that hands each record to a channel.
type records chan slog.Record

func (records) Enabled(context.Context, slog.Level) bool          { return true }
func (r records) Handle(_ context.Context, rec slog.Record) error { r <- rec; return nil }
func (r records) WithAttrs([]slog.Attr) slog.Handler              { return r }
func (r records) WithGroup(string) slog.Handler                   { return r }

func attrs(rec slog.Record) map[string]slog.Value {
	m := map[string]slog.Value{}
	rec.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value; return true })
	return m
}

// A long job logs its progress, done of total, again and again.
func TestStartLogsDoneOfTotal(t *testing.T) {
	recs := make(records, 100)
	var done atomic.Uint64
	stop := Start(slog.New(recs), "rebuilding", 1000, time.Millisecond, func() uint64 { return done.Add(10) })
	var last uint64
	for i := 0; i < 3; i++ {
		select {
		case rec := <-recs:
			a := attrs(rec)
			if rec.Message != "rebuilding" || a["total"].Uint64() != 1000 || a["done"].Uint64() <= last {
				t.Fatalf("line %d: %s %v", i, rec.Message, a)
			}
			if _, ok := a["rate"]; !ok {
				t.Fatalf("line %d has no rate: %v", i, a)
			}
			last = a["done"].Uint64()
		case <-time.After(10 * time.Second):
			t.Fatalf("no progress line %d", i)
		}
	}
	stop()
	stop() // twice is fine
}

// A job that ends within its first interval, or runs with no interval,
// logs nothing.
func TestShortJobLogsNothing(t *testing.T) {
	recs := make(records, 10)
	Start(slog.New(recs), "x", 1, time.Hour, func() uint64 { return 0 })()
	Start(slog.New(recs), "x", 1, 0, func() uint64 { return 0 })()
	if len(recs) != 0 {
		t.Fatalf("%d lines for short jobs", len(recs))
	}
}
