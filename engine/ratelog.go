package engine

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// rateLog writes repeated warnings at most once per interval per cause,
// saying how many were held back since the last line: a store that keeps
// refusing writes, or a flood of garbage on the log, must not turn into
// thousands of identical lines a second.
type rateLog struct {
	log   *slog.Logger
	every time.Duration
	now   func() time.Time

	mu     sync.Mutex
	causes map[string]*cause
}

type cause struct {
	last       time.Time
	suppressed int
}

func newRateLog(log *slog.Logger, every time.Duration) *rateLog {
	return &rateLog{log: log, every: every, now: time.Now, causes: make(map[string]*cause)}
}

// warn logs msg at warning level unless a line for the same cause (the
// message itself) went out less than an interval ago; then it only counts.
func (r *rateLog) warn(msg string, args ...any) { r.write(slog.LevelWarn, msg, args...) }

// error is warn at error level.
func (r *rateLog) error(msg string, args ...any) { r.write(slog.LevelError, msg, args...) }

func (r *rateLog) write(level slog.Level, msg string, args ...any) {
	r.mu.Lock()
	c := r.causes[msg]
	if c == nil {
		c = &cause{}
		r.causes[msg] = c
	}
	now := r.now()
	if !c.last.IsZero() && now.Sub(c.last) < r.every {
		c.suppressed++
		r.mu.Unlock()
		return
	}
	n := c.suppressed
	c.last, c.suppressed = now, 0
	r.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	r.log.Log(context.Background(), level, msg, args...)
}
