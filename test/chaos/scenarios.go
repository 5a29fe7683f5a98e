package main

import (
	"context"
	"fmt"
	"time"

	"github.com/wfpnats/wfp/jetstream"
	"github.com/wfpnats/wfp/test/chaos/check"
)

// scenario is one kind of fault, injected cfg.rounds times under load
// into a deployment of its own.
type scenario struct {
	name     string
	about    string
	servers  int // nats-server processes (a cluster if more than one)
	engines  int // engine processes
	replicas int // of the log
	run      func(w *world) error
}

var scenarios = []scenario{
	{"engine-kill", "SIGKILL the engine under load, start it again on the same stream", 1, 1, 1, engineKill},
	{"agent-kill", "SIGKILL a live, a replay and a durable agent under load, start each again", 1, 1, 1, agentKill},
	{"server-restart", "SIGKILL the nats-server under load, start it again on its store", 1, 1, 1, serverRestart},
	{"leader-loss", "3-node cluster, log at R3: SIGKILL the stream leader under load, start it again", 3, 1, 3, leaderLoss},
	{"two-engines", "two engines serve one stream: SIGKILL one under load, the other serves; start it again", 1, 2, 1, twoEngines},
}

func engineKill(w *world) error {
	e := w.engines[0]
	for range w.cfg.rounds {
		if err := w.progress(w.cfg.step); err != nil {
			return err
		}
		at := time.Now()
		e.kill()
		if err := w.startEngine(e); err != nil {
			return err
		}
		w.measure("engine SIGKILL, then started again", at)
		if err := w.progress(w.cfg.step); err != nil {
			return err
		}
	}
	return nil
}

func agentKill(w *world) error {
	for r := range w.cfg.rounds {
		for _, mode := range []check.Mode{check.Live, check.Replay, check.Durable} {
			a := w.agentOf(mode, w.callouts[r%len(w.callouts)])
			if err := w.progress(w.cfg.step); err != nil {
				return err
			}
			a.kill()
			// The callout's adds wait for it (R7) until the engine
			// forgets it; the log moves on meanwhile.
			if err := w.progress(w.cfg.step); err != nil {
				return err
			}
			if err := w.startAgent(a); err != nil {
				return err
			}
			if err := w.waitAgentsListed(); err != nil {
				return err
			}
		}
	}
	return w.progress(w.cfg.step)
}

func (w *world) agentOf(mode check.Mode, co string) *agent {
	for _, a := range w.agents {
		if a.mode == mode && a.callout == co {
			return a
		}
	}
	panic("no agent " + string(mode))
}

func serverRestart(w *world) error {
	s := w.servers[0]
	for range w.cfg.rounds {
		if err := w.progress(w.cfg.step); err != nil {
			return err
		}
		at := time.Now()
		s.kill()
		if err := s.start(); err != nil {
			return err
		}
		if err := s.ready(w.cfg.within); err != nil {
			return err
		}
		w.measure("nats-server SIGKILL, then started again", at)
		if err := w.progress(w.cfg.step); err != nil {
			return err
		}
	}
	return nil
}

func leaderLoss(w *world) error {
	for range w.cfg.rounds {
		if err := w.progress(w.cfg.step); err != nil {
			return err
		}
		i, err := w.streamLeader()
		if err != nil {
			return err
		}
		s := w.servers[i]
		fmt.Fprintf(w.cfg.log, "    stream leader is %s: SIGKILL\n", s.name)
		at := time.Now()
		s.kill()
		w.measure("stream leader SIGKILL", at)
		// Back as soon as the others serve: agents whose consumer the dead
		// server held can stay deaf until it returns (see BENCHMARKS.md).
		if err := s.start(); err != nil {
			return err
		}
		if err := s.ready(w.cfg.within); err != nil {
			return err
		}
		if err := w.replicasCurrent(); err != nil {
			return err
		}
		if err := w.progress(w.cfg.step); err != nil {
			return err
		}
	}
	return nil
}

func twoEngines(w *world) error {
	for r := range w.cfg.rounds {
		if err := w.progress(w.cfg.step); err != nil {
			return err
		}
		e := w.engines[r%2]
		at := time.Now()
		e.kill()
		w.measure(e.name+" SIGKILL, the other engine serves", at)
		if err := w.progress(w.cfg.step); err != nil {
			return err
		}
		if err := w.startEngine(e); err != nil {
			return err
		}
		if err := w.progress(w.cfg.step); err != nil {
			return err
		}
	}
	return nil
}

// streamLeader is the index of the server leading the log's stream.
func (w *world) streamLeader() (int, error) {
	deadline := time.Now().Add(w.cfg.within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s, err := w.js.Stream(ctx, jetstream.DefaultStreamName)
		cancel()
		if err == nil && s.CachedInfo().Cluster != nil {
			for i, srv := range w.servers {
				if srv.name == s.CachedInfo().Cluster.Leader {
					return i, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("the stream has no leader (%v)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// replicasCurrent waits until every replica of the log is current again.
func (w *world) replicasCurrent() error {
	deadline := time.Now().Add(w.cfg.within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s, err := w.js.Stream(ctx, jetstream.DefaultStreamName)
		cancel()
		if err == nil {
			if cl := s.CachedInfo().Cluster; cl != nil && cl.Leader != "" && len(cl.Replicas) == len(w.servers)-1 {
				ok := true
				for _, r := range cl.Replicas {
					ok = ok && r.Current && !r.Offline
				}
				if ok {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the log's replicas are not current within %v", w.cfg.within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
