package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/projection"
)

// DefaultNotifyTimeout bounds how long an add waits for its callout's
// agents to answer the ADD notification (R7).
const DefaultNotifyTimeout = 5 * time.Second

// waits routes agents' notify results to the adds waiting for them. A
// result may arrive before its add starts waiting (the agent can be faster
// than the engine's answer path), so results nobody waits for yet are kept
// for a while, at most maxEarly of them.
type waits struct {
	mu      sync.Mutex
	waiting map[uint64]*waiting
	early   map[uint64][]earlyResult
	nEarly  int
}

// waiting is one add waiting for its agents: the filter's key and callout
// say which results may answer it.
type waiting struct {
	ch           chan events.NotifyResult
	key, callout string
}

type earlyResult struct {
	r  events.NotifyResult
	at time.Time
}

// earlyTTL is how long a result nobody waits for is kept; maxEarly how
// many are kept at most (beyond, they are dropped and counted).
const (
	earlyTTL = time.Minute
	maxEarly = 1 << 16
)

func newWaits() *waits {
	return &waits{waiting: make(map[uint64]*waiting), early: make(map[uint64][]earlyResult)}
}

// onResult takes an agent's NotifyResult. It must agree with its subject
// (<p>.result.<callout>.<agentId>) and name a pending add of that
// callout: the filter id and key of an add being waited for, or of one
// about to be (the filter exists with that key and callout, or its add
// is not folded yet). Anything else is dropped and counted, so an agent
// can answer only for itself and only about its own callout's adds.
func (e *Engine) onResult(m *nats.Msg) {
	c, id, ok := e.subj.ParseResult(m.Subject)
	var r events.NotifyResult
	switch {
	case !ok || json.Unmarshal(m.Data, &r) != nil:
		e.dropAgentMsg("malformed notify result", m.Subject)
		return
	case r.CalloutKey != c || r.AgentID != id:
		e.dropAgentMsg("notify result body disagrees with its subject", m.Subject, "bodyCallout", r.CalloutKey, "bodyAgentId", r.AgentID)
		return
	case events.ValidName("instance", r.Instance) != nil || r.FilterID == 0 || r.FilterKey == "":
		e.dropAgentMsg("notify result without an instance, filter key and filter id", m.Subject)
		return
	}
	if why := e.waits.deliver(r, e.pendingAdd); why != "" {
		e.dropAgentMsg(why, m.Subject, "filterId", r.FilterID, "filterKey", r.FilterKey)
	}
}

// pendingAdd says whether a result about filter r.FilterID may be for an
// add whose wait has not opened yet.
func (e *Engine) pendingAdd(r events.NotifyResult) bool {
	if r.FilterID > e.folded.Load() {
		return true // written, not folded yet: checked when its wait opens
	}
	var f *events.Filter
	e.View(func(s *projection.State) { f, _ = s.FilterByID(r.FilterID) })
	return f != nil && f.Key == r.FilterKey && f.CalloutKey == r.CalloutKey
}

// deliver routes r to the add waiting for it, or keeps it for an add
// about to wait (maybePending). It returns why r was dropped, or "".
func (w *waits) deliver(r events.NotifyResult, maybePending func(events.NotifyResult) bool) string {
	w.mu.Lock()
	if why, ok := w.route(r); ok {
		w.mu.Unlock()
		return why
	}
	w.mu.Unlock()
	// maybePending reads the engine's state: not under w.mu.
	if !maybePending(r) {
		return "notify result names no pending add of its callout"
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	// The add may have started waiting meanwhile (and taken the early
	// results there were): this one goes to it, or it would be lost.
	if why, ok := w.route(r); ok {
		return why
	}
	if w.nEarly >= maxEarly {
		return "too many notify results nobody waits for"
	}
	w.early[r.FilterID] = append(w.early[r.FilterID], earlyResult{r, time.Now()})
	w.nEarly++
	return ""
}

// route hands r to the add waiting for its filter id, if one is: ok
// reports whether one is, why whether r was dropped. w.mu is held.
func (w *waits) route(r events.NotifyResult) (why string, ok bool) {
	wt, ok := w.waiting[r.FilterID]
	if !ok {
		return "", false
	}
	if wt.key != r.FilterKey || wt.callout != r.CalloutKey {
		return "notify result names no pending add of its callout", true
	}
	select {
	case wt.ch <- r:
	default: // more answers than instances waited for: the rest add nothing
	}
	return "", true
}

func (w *waits) sweep() {
	w.mu.Lock()
	defer w.mu.Unlock()
	cutoff := time.Now().Add(-earlyTTL)
	for id, rs := range w.early {
		if rs[len(rs)-1].at.Before(cutoff) {
			delete(w.early, id)
			w.nEarly -= len(rs)
		}
	}
}

// open starts waiting for results about filter f, with any that came
// early; it returns them apart from those that name another filter key or
// callout (the caller drops those).
func (w *waits) open(f *events.Filter, n int) (ch chan events.NotifyResult, stray []events.NotifyResult) {
	ch = make(chan events.NotifyResult, n+8)
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, e := range w.early[f.ID] {
		if e.r.FilterKey != f.Key || e.r.CalloutKey != f.CalloutKey {
			stray = append(stray, e.r)
			continue
		}
		select {
		case ch <- e.r:
		default:
		}
	}
	w.nEarly -= len(w.early[f.ID])
	delete(w.early, f.ID)
	w.waiting[f.ID] = &waiting{ch: ch, key: f.Key, callout: f.CalloutKey}
	return ch, stray
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

// confirm waits for every agent instance registered for f's callout to
// answer its ADD notification (R7). If one refuses, or does not answer
// within timeout, the filter is deleted again and the rejection returned.
// With no agent registered it returns at once.
//
// An instance that has not answered after events.AgentGrace is asked
// directly whether it still runs (checkAgent), and again every grace
// after that: one that is gone (killed, or replaced by a restart) is
// forgotten and no longer waited for, so an agent's crash or restart
// costs an add a fraction of a second, not a timeout. One that answers
// the ping gets the whole timeout.
func (e *Engine) confirm(f *events.Filter, timeout time.Duration) *Rejection {
	if f.CalloutKey == "" {
		return nil
	}
	gone := e.agents.goneSignal() // before the list: a departure after it is seen
	agents := e.agents.forCallout(f.CalloutKey)
	if len(agents) == 0 {
		return nil
	}
	if timeout <= 0 {
		timeout = DefaultNotifyTimeout
	}
	ch, stray := e.waits.open(f, len(agents))
	defer e.waits.close(f.ID)
	for _, r := range stray {
		e.dropAgentMsg("notify result names no pending add of its callout", e.subj.Result(r.CalloutKey, r.AgentID),
			"filterId", r.FilterID, "filterKey", r.FilterKey)
	}
	pending := make(map[agentKey]bool, len(agents))
	for _, a := range agents {
		pending[keyOf(a.Announcement)] = true
	}
	// forget drops the instances that have gone from the registry.
	forget := func() {
		for k := range pending {
			if !e.agents.has(k) {
				delete(pending, k)
			}
		}
	}
	start := time.Now()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	check := time.NewTicker(events.AgentGrace)
	defer check.Stop()
	var rej *Rejection
	for len(pending) > 0 && rej == nil {
		select {
		case r := <-ch:
			k := agentKey{r.CalloutKey, r.AgentID, r.Instance}
			if !pending[k] {
				continue // an instance that registered after we looked: not waited for
			}
			delete(pending, k)
			if r.Error != "" {
				rej = &Rejection{FilterKey: f.Key, FilterID: f.ID, AgentID: r.AgentID, Error: r.Error, Code: CodeCalloutNotificationFailed}
				e.rejected.Add(1)
			}
		case <-gone:
			gone = e.agents.goneSignal()
			forget()
		case <-check.C:
			forget()
			for k := range pending {
				e.checkAgent(k)
			}
		case <-timer.C:
			ids := make([]string, 0, len(pending))
			for k := range pending {
				ids = append(ids, k.id)
			}
			slices.Sort(ids)
			ids = slices.Compact(ids)
			rej = &Rejection{FilterKey: f.Key, FilterID: f.ID, AgentID: strings.Join(ids, ","), Code: CodeTimeout,
				Error: fmt.Sprintf("agent(s) %s did not answer the ADD notification within %v", strings.Join(ids, ", "), timeout)}
			e.unanswered.Add(1)
		}
	}
	e.metrics.notified(rej, time.Since(start))
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
