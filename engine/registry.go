package engine

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wfpnats/wfp/events"
)

// AgentInfo is a registered callout agent instance as an engine sees it.
type AgentInfo struct {
	events.Announcement
	LastSeen time.Time `json:"lastSeen"`
}

// agentKey names one running instance of an agent. Instances of one
// agent id are kept apart: a second process with the same id (or a
// restarted one) never stands in for another, and one leaving never
// unregisters another.
type agentKey struct{ callout, id, instance string }

func keyOf(a events.Announcement) agentKey { return agentKey{a.CalloutKey, a.AgentID, a.Instance} }

// maxInstances bounds the instances kept per agent id. The SDK runs one
// (ErrAgentIDInUse); more come only from a race, restarts in quick
// succession, or a client announcing made-up instances, which must not
// grow the registry without end.
const maxInstances = 8

// pingTimeout bounds the wait for an instance's answer to a ping; one
// that does not answer in time is taken to be alive but busy.
const pingTimeout = 2 * time.Second

// registry tracks the agent instances that announce themselves (events'
// agent protocol). It is liveness, not state: every engine builds its own
// from the announcements. An instance is gone when it says bye, when the
// engine has not heard from it for events.AgentTTL, or when a ping to it
// finds no responders (its connection is gone).
type registry struct {
	mu       sync.Mutex
	agents   map[agentKey]*AgentInfo
	checking map[agentKey]time.Time // liveness pings: when each was sent
	gone     chan struct{}          // closed, and replaced, when an instance goes
	now      func() time.Time
}

func newRegistry() *registry {
	return &registry{agents: make(map[agentKey]*AgentInfo), checking: make(map[agentKey]time.Time),
		gone: make(chan struct{}), now: time.Now}
}

// observe records an "alive" announcement. For a new instance it returns
// the other instances of the same agent id: a restart supersedes a dead
// instance, which the caller finds out by pinging them.
func (r *registry) observe(a events.Announcement) (others []agentKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := keyOf(a)
	_, known := r.agents[k]
	r.agents[k] = &AgentInfo{Announcement: a, LastSeen: r.now()}
	if known {
		return nil
	}
	var oldest agentKey
	for o, info := range r.agents {
		if o.callout == k.callout && o.id == k.id && o != k {
			others = append(others, o)
			if oldest == (agentKey{}) || info.LastSeen.Before(r.agents[oldest].LastSeen) {
				oldest = o
			}
		}
	}
	if len(others) >= maxInstances {
		r.removeLocked(oldest)
	}
	return others
}

// remove forgets one instance: a bye, or a ping that found it gone.
func (r *registry) remove(k agentKey) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.removeLocked(k)
}

func (r *registry) removeLocked(k agentKey) bool {
	if _, ok := r.agents[k]; !ok {
		return false
	}
	delete(r.agents, k)
	delete(r.checking, k)
	close(r.gone)
	r.gone = make(chan struct{})
	return true
}

// has reports whether instance k is registered.
func (r *registry) has(k agentKey) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.agents[k]
	return ok
}

// goneSignal is closed when an instance next goes.
func (r *registry) goneSignal() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gone
}

// sweep forgets agents not heard from for the TTL.
func (r *registry) sweep() {
	r.mu.Lock()
	defer r.mu.Unlock()
	cutoff := r.now().Add(-events.AgentTTL)
	for k, a := range r.agents {
		if a.LastSeen.Before(cutoff) {
			r.removeLocked(k)
		}
	}
}

// forCallout lists the live agent instances of a callout, by agent id.
func (r *registry) forCallout(key string) []AgentInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	cutoff := r.now().Add(-events.AgentTTL)
	var out []AgentInfo
	for k, a := range r.agents {
		if k.callout == key && !a.LastSeen.Before(cutoff) {
			out = append(out, *a)
		}
	}
	slices.SortFunc(out, func(a, b AgentInfo) int {
		return cmp.Or(cmp.Compare(a.AgentID, b.AgentID), cmp.Compare(a.Instance, b.Instance))
	})
	return out
}

// perCallout counts the live agent instances of each callout.
func (r *registry) perCallout() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	cutoff := r.now().Add(-events.AgentTTL)
	n := map[string]int{}
	for k, a := range r.agents {
		if !a.LastSeen.Before(cutoff) {
			n[k.callout]++
		}
	}
	return n
}

// startCheck reports whether a liveness ping to k should go now: k is
// registered, none is in flight, and the last went at least
// events.AgentGrace ago.
func (r *registry) startCheck(k agentKey) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.agents[k]; !ok {
		return false
	}
	if at, ok := r.checking[k]; ok && r.now().Sub(at) < events.AgentGrace {
		return false
	}
	r.checking[k] = r.now()
	return true
}

// checkAgent asks instance k, on its own ping subject, whether it still
// runs, and forgets it if nobody answers: NATS says "no responders" at
// once when the instance's connection is gone (a killed process), so
// adds stop waiting for it right away instead of for the notify timeout.
// An instance that answers, or is too busy to, stays. Runs in the
// background; at most one ping per instance per events.AgentGrace.
func (e *Engine) checkAgent(k agentKey) {
	if !e.agents.startCheck(k) {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
		defer cancel()
		_, err := e.nc.RequestWithContext(ctx, e.subj.AgentInstancePing(k.callout, k.id, k.instance), nil)
		if errors.Is(err, nats.ErrNoResponders) && e.agents.remove(k) {
			e.agentsGone.Add(1)
			e.log.Info("engine: agent instance gone (no responders); adds no longer wait for it",
				"callout", k.callout, "agentId", k.id, "instance", k.instance)
		}
	}()
}

// listen subscribes to announcements and results and asks every agent
// already running to announce itself now, so a restarted engine knows its
// agents within a round trip instead of an announce interval.
func (e *Engine) listen() error {
	for _, s := range []struct {
		subject string
		h       nats.MsgHandler
	}{{e.subj.AllAgents(), e.onAnnouncement}, {e.subj.AllResults(), e.onResult}} {
		sub, err := e.nc.Subscribe(s.subject, s.h)
		if err != nil {
			return err
		}
		e.subs = append(e.subs, sub)
	}
	if err := e.nc.Publish(e.subj.AgentProbe(), nil); err != nil {
		return err
	}
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				e.agents.sweep()
				e.waits.sweep()
			case <-e.loopDone:
				return
			}
		}
	}()
	return e.nc.Flush()
}

// onAnnouncement takes an announcement whose body agrees with its
// subject (<p>.agent.<callout>.<agentId>): an agent allowed to publish on
// its own subjects only can then speak for no other callout or agent id.
func (e *Engine) onAnnouncement(m *nats.Msg) {
	c, id, ok := e.subj.ParseAgent(m.Subject)
	var a events.Announcement
	switch {
	case !ok || json.Unmarshal(m.Data, &a) != nil:
		e.dropAgentMsg("malformed announcement", m.Subject)
	case a.CalloutKey != c || a.AgentID != id:
		e.dropAgentMsg("announcement body disagrees with its subject", m.Subject, "bodyCallout", a.CalloutKey, "bodyAgentId", a.AgentID)
	case !canonicalKey(c) || events.ValidName("agent id", id) != nil || events.ValidName("instance", a.Instance) != nil:
		e.dropAgentMsg("announcement without a valid callout key, agent id and instance", m.Subject)
	case a.Status == events.AgentAlive:
		for _, o := range e.agents.observe(a) {
			e.checkAgent(o)
		}
	case a.Status == events.AgentBye:
		e.agents.remove(keyOf(a))
	default:
		e.dropAgentMsg("announcement with an unknown status", m.Subject, "status", a.Status)
	}
}

func canonicalKey(k string) bool {
	c, err := events.ParseKey(k)
	return err == nil && c == k
}
