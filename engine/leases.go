package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wfpnats/wfp/events"
)

// sessionSweep is how often an engine looks for abandoned sessions: a
// session ends at most this long after its lease ran out.
const sessionSweep = 250 * time.Millisecond

// leases is an engine's clock for the sessions' leases: when it last heard
// each session's holder. Like the agent registry it is liveness, not
// state: every engine keeps its own.
type leases struct {
	mu     sync.Mutex
	now    func() time.Time
	beats  map[string]time.Time // session id -> last heartbeat, or when first seen open
	ending map[string]bool      // ends submitted and not finished
}

func newLeases(now func() time.Time) *leases {
	return &leases{now: now, beats: map[string]time.Time{}, ending: map[string]bool{}}
}

// staleBeat is how long a heartbeat for a session this engine does not
// know open is kept: long enough for the engine to fold a SessionOpened
// another engine wrote.
const staleBeat = time.Minute

func (l *leases) beat(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.beats[id] = l.now()
}

// last is when the session's holder was last heard, or it was first seen.
func (l *leases) last(id string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.beats[id]
}

// expired returns the open sessions whose lease has run out, marking them
// as ending. A session seen for the first time starts its lease now.
func (l *leases) expired(open []*events.Session) []*events.Session {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	var out []*events.Session
	isOpen := make(map[string]bool, len(open))
	for _, s := range open {
		isOpen[s.ID] = true
		t, ok := l.beats[s.ID]
		if !ok {
			l.beats[s.ID] = now
			continue
		}
		if now.Sub(t) > s.Lease() && !l.ending[s.ID] {
			l.ending[s.ID] = true
			out = append(out, s)
		}
	}
	for id, t := range l.beats {
		if !isOpen[id] && !l.ending[id] && now.Sub(t) > staleBeat {
			delete(l.beats, id)
		}
	}
	return out
}

// ended forgets a session whose end was written (or that another engine
// ended), or, if the write failed, lets the next sweep try again.
func (l *leases) ended(id string, done bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.ending, id)
	if done {
		delete(l.beats, id)
	}
}

// listenSessions subscribes to heartbeats and starts the sweep that ends
// abandoned sessions.
func (e *Engine) listenSessions() error {
	sub, err := e.nc.Subscribe(e.subj.AllHeartbeats(), func(m *nats.Msg) {
		id := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
		if _, err := events.ParseKey(id); err != nil {
			return // not a session id: nothing to keep alive
		}
		e.heartbeats.Add(1)
		e.leases.beat(id)
	})
	if err != nil {
		return err
	}
	e.subs = append(e.subs, sub)
	go func() {
		t := time.NewTicker(sessionSweep)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				e.sweepSessions()
			case <-e.loopDone:
				return
			}
		}
	}()
	return e.nc.Flush()
}

// sweepSessions ends the sessions whose lease ran out.
func (e *Engine) sweepSessions() {
	defer e.sweeps.Add(1)
	e.mu.RLock()
	open := e.state.Sessions()
	e.mu.RUnlock()
	for _, s := range e.leases.expired(open) {
		e.expiring.Add(1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 4*e.cfg.WriteTimeout)
			defer cancel()
			reason := fmt.Sprintf("session %s abandoned: no heartbeat for %v", s.ID, s.Lease())
			_, err := e.endSessionFully(ctx, s.ID, reason)
			switch {
			case err == nil:
				e.sessionsExpired.Add(1)
				e.log.Info("engine: ended an abandoned session", "session", s.ID, "lease", s.Lease())
			case errors.Is(err, ErrSessionAborted):
				// Closed meanwhile, by its holder or another engine.
			default:
				e.log.Warn("engine: ending an abandoned session", "session", s.ID, "err", err)
			}
			e.leases.ended(s.ID, err == nil || errors.Is(err, ErrSessionAborted))
		}()
	}
}
