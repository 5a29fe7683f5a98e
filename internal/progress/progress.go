// Package progress logs how far a long job has come, for an operator
// watching a rebuild or a replay that takes minutes: done of total and
// the rate since the previous line, at most once an interval. A job that
// ends within its first interval logs nothing.
package progress

import (
	"log/slog"
	"math"
	"sync"
	"time"
)

// DefaultInterval is how often a long job says how far it is, unless
// its owner is configured otherwise.
const DefaultInterval = 5 * time.Second

// Start logs msg at info level every interval, with attributes done (as
// the done func reads it: it is called from another goroutine, so it
// reads an atomic or takes a lock), total and rate (per second, since the
// previous line), until stop is called. stop returns once no further line
// can be written. An interval of 0 or less logs nothing.
func Start(log *slog.Logger, msg string, total uint64, interval time.Duration, done func() uint64) (stop func()) {
	if interval <= 0 {
		return func() {}
	}
	quit, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(interval)
		defer t.Stop()
		lastDone, lastAt := done(), time.Now()
		for {
			select {
			case <-quit:
				return
			case now := <-t.C:
				n := done()
				rate := float64(n-min(n, lastDone)) / now.Sub(lastAt).Seconds()
				log.Info(msg, "done", n, "total", total, "rate", math.Round(rate))
				lastDone, lastAt = n, now
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(quit) })
		<-exited
	}
}
