package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wfpnats/wfp/events"
)

// DefaultNotifyTimeout bounds how long an add waits for its callout's
// agents to answer the ADD notification (R7).
const DefaultNotifyTimeout = 5 * time.Second

// waits routes agents' notify results to the adds waiting for them. A
// result may arrive before its add starts waiting (the agent can be faster
// than the engine's answer path), so results nobody waits for yet are kept
// for a while.
type waits struct {
	mu      sync.Mutex
	waiting map[uint64]chan events.NotifyResult
	early   map[uint64][]earlyResult
}

type earlyResult struct {
	r  events.NotifyResult
	at time.Time
}

// earlyTTL is how long a result nobody waits for is kept.
const earlyTTL = time.Minute

func newWaits() *waits {
	return &waits{waiting: make(map[uint64]chan events.NotifyResult), early: make(map[uint64][]earlyResult)}
}

func (w *waits) deliver(m *nats.Msg) {
	var r events.NotifyResult
	if err := json.Unmarshal(m.Data, &r); err != nil || r.FilterID == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if ch, ok := w.waiting[r.FilterID]; ok {
		select {
		case ch <- r:
		default: // more answers than agents waited for: the rest add nothing
		}
		return
	}
	w.early[r.FilterID] = append(w.early[r.FilterID], earlyResult{r, time.Now()})
}

func (w *waits) sweep() {
	w.mu.Lock()
	defer w.mu.Unlock()
	cutoff := time.Now().Add(-earlyTTL)
	for id, rs := range w.early {
		if rs[len(rs)-1].at.Before(cutoff) {
			delete(w.early, id)
		}
	}
}

// open starts waiting for results about filter id, with any that came early.
func (w *waits) open(id uint64, n int) chan events.NotifyResult {
	ch := make(chan events.NotifyResult, n+8)
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, e := range w.early[id] {
		select {
		case ch <- e.r:
		default:
		}
	}
	delete(w.early, id)
	w.waiting[id] = ch
	return ch
}

func (w *waits) close(id uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.waiting, id)
}

// Rejection is a filter the engine took back because a callout agent
// refused it, or did not answer in time (R7).
type Rejection struct {
	FilterKey string `json:"filterKey"`
	FilterID  uint64 `json:"filterId"`
	AgentID   string `json:"agentId"`
	Error     string `json:"error"`
	Code      Code   `json:"code"`
}

func (r *Rejection) err() *Error {
	if r.Code == CodeCalloutNotificationFailed {
		return errorf(r.Code, "agent %s refused filter %s (id %d): %s; the filter was not added", r.AgentID, r.FilterKey, r.FilterID, r.Error)
	}
	return errorf(r.Code, "filter %s (id %d) was not added: %s", r.FilterKey, r.FilterID, r.Error)
}

// confirm waits for every agent registered for f's callout to answer its
// ADD notification (R7). If one refuses, or does not answer within
// timeout, the filter is deleted again and the rejection returned. With
// no agent registered it returns at once.
func (e *Engine) confirm(f *events.Filter, timeout time.Duration) *Rejection {
	if f.CalloutKey == "" {
		return nil
	}
	agents := e.agents.forCallout(f.CalloutKey)
	if len(agents) == 0 {
		return nil
	}
	if timeout <= 0 {
		timeout = DefaultNotifyTimeout
	}
	ch := e.waits.open(f.ID, len(agents))
	defer e.waits.close(f.ID)
	pending := make(map[string]bool, len(agents))
	for _, a := range agents {
		pending[a.AgentID] = true
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var rej *Rejection
	for len(pending) > 0 && rej == nil {
		select {
		case r := <-ch:
			if !pending[r.AgentID] {
				continue // an agent that registered after we looked: not waited for
			}
			delete(pending, r.AgentID)
			if r.Error != "" {
				rej = &Rejection{FilterKey: f.Key, FilterID: f.ID, AgentID: r.AgentID, Error: r.Error, Code: CodeCalloutNotificationFailed}
				e.rejected.Add(1)
			}
		case <-timer.C:
			ids := make([]string, 0, len(pending))
			for id := range pending {
				ids = append(ids, id)
			}
			rej = &Rejection{FilterKey: f.Key, FilterID: f.ID, AgentID: strings.Join(ids, ","), Code: CodeTimeout,
				Error: fmt.Sprintf("agent(s) %s did not answer the ADD notification within %v", strings.Join(ids, ", "), timeout)}
			e.unanswered.Add(1)
		}
	}
	if rej == nil {
		return nil
	}
	// The filter is in the log: take it back, so agents that took it see
	// it deleted and it is no longer listed.
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.WriteTimeout)
	defer cancel()
	reason := "rejected by agent " + rej.AgentID + ": " + rej.Error
	if rej.Code == CodeTimeout {
		reason = rej.Error
	}
	if _, _, err := e.submit(ctx, deleteFilter{ref: FilterRef{FilterID: f.ID}, reason: reason}); err != nil {
		e.log.Warn("engine: could not take back a rejected filter", "filter", f.Key, "id", f.ID, "err", err)
	}
	return rej
}
