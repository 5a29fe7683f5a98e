package engine

import (
	"sync"
	"time"
)

// dropAgentMsg drops an agent message the engine will not act on (its
// body disagrees with its subject, it names no pending add of its
// callout, ...): counted in Stats.AgentDropped, and logged at most once a
// second per reason, with how many were dropped meanwhile, so an agent
// host that floods forgeries cannot flood the engine's log too.
func (e *Engine) dropAgentMsg(why, subject string, attrs ...any) {
	e.agentDropped.Add(1)
	if n, ok := e.dropLog.allow(why); ok {
		e.log.Warn("engine: dropped an agent message: "+why,
			append([]any{"subject", subject, "droppedSinceLastLine", n}, attrs...)...)
	}
}

// rateLog lets one log line per key through per interval.
type rateLog struct {
	every time.Duration
	mu    sync.Mutex
	last  map[string]time.Time
	held  map[string]int // calls not let through since the last line
}

func newRateLog(every time.Duration) *rateLog {
	return &rateLog{every: every, last: map[string]time.Time{}, held: map[string]int{}}
}

// allow reports whether a line for key may go now, and how many were
// held back since the last one.
func (l *rateLog) allow(key string) (held int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if now.Sub(l.last[key]) < l.every {
		l.held[key]++
		return 0, false
	}
	held = l.held[key]
	l.last[key], l.held[key] = now, 0
	return held, true
}
