package engine

import (
	"cmp"
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wfpnats/wfp/events"
)

// AgentInfo is a registered callout agent as an engine sees it.
type AgentInfo struct {
	events.Announcement
	LastSeen time.Time `json:"lastSeen"`
}

// registry tracks the agents that announce themselves (events' agent
// protocol). It is liveness, not state: every engine builds its own from
// the announcements, and an agent it has not heard from for
// events.AgentTTL is gone.
type registry struct {
	mu     sync.Mutex
	agents map[string]*AgentInfo // by agent id
	now    func() time.Time
}

func newRegistry() *registry {
	return &registry{agents: make(map[string]*AgentInfo), now: time.Now}
}

func (r *registry) observe(a events.Announcement) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a.Status == events.AgentBye {
		delete(r.agents, a.AgentID)
		return
	}
	r.agents[a.AgentID] = &AgentInfo{Announcement: a, LastSeen: r.now()}
}

// sweep forgets agents not heard from for the TTL.
func (r *registry) sweep() {
	r.mu.Lock()
	defer r.mu.Unlock()
	cutoff := r.now().Add(-events.AgentTTL)
	for id, a := range r.agents {
		if a.LastSeen.Before(cutoff) {
			delete(r.agents, id)
		}
	}
}

// forCallout lists the live agents of a callout, by id.
func (r *registry) forCallout(key string) []AgentInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	cutoff := r.now().Add(-events.AgentTTL)
	var out []AgentInfo
	for _, a := range r.agents {
		if a.CalloutKey == key && !a.LastSeen.Before(cutoff) {
			out = append(out, *a)
		}
	}
	slices.SortFunc(out, func(a, b AgentInfo) int { return cmp.Compare(a.AgentID, b.AgentID) })
	return out
}

// listen subscribes to announcements and asks every agent already running
// to announce itself now, so a restarted engine knows its agents within a
// round trip instead of an announce interval.
func (e *Engine) listen() error {
	sub, err := e.nc.Subscribe(e.subj.AllAgents(), func(m *nats.Msg) {
		var a events.Announcement
		if err := json.Unmarshal(m.Data, &a); err != nil || a.AgentID == "" || a.CalloutKey == "" {
			e.log.Warn("engine: ignoring malformed agent announcement", "subject", m.Subject, "err", err)
			return
		}
		e.agents.observe(a)
	})
	if err != nil {
		return err
	}
	e.subs = append(e.subs, sub)
	if sub, err = e.nc.Subscribe(e.subj.AllResults(), e.waits.deliver); err != nil {
		return err
	}
	e.subs = append(e.subs, sub)
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
