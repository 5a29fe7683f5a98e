package test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/engine"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
	"github.com/wfpnats/wfp/jetstream"
	"github.com/wfpnats/wfp/projection"
	"github.com/wfpnats/wfp/test/chaos/check"
	"github.com/wfpnats/wfp/test/chaos/load"
)

// clusterWorld is a 3-node JetStream cluster in this process with the
// event log at R3, an engine on n1 and one on n2, two callouts, an agent
// of every mode for each (spread over the nodes), and management callers
// on every node.
type clusterWorld struct {
	t        *testing.T
	c        *testkit.Cluster
	js       natsjs.JetStream // reads the log; reaches any node
	client   *engine.Client
	engines  []*clusterEngine
	callouts []string
	agents   []*clusterAgent
	load     *load.Load
}

type clusterEngine struct {
	name string
	nc   *nats.Conn
	e    *engine.Engine
}

type clusterAgent struct {
	name    string
	mode    check.Mode
	callout string
	rec     *recorder
	agent   *callout.Agent
	start   uint64 // first sequence it reads live
}

func newClusterWorld(t *testing.T) *clusterWorld {
	t.Helper()
	w := &clusterWorld{t: t, c: testkit.NewCluster(t, 3)}
	nc := w.c.Nodes[2].Connect(t, w.c.URLs())
	w.js = testkit.JetStream(t, nc)
	w.startEngine("A", 0)
	w.startEngine("B", 1)
	w.client = engine.NewClient(nc)
	ctx := ctxT(t)
	for range 2 {
		co, err := w.client.AddCallout(ctx, events.Callout{Name: "c"})
		if err != nil {
			t.Fatal(err)
		}
		w.callouts = append(w.callouts, co.Key)
	}
	// Some history before the agents come: filters for the replay
	// snapshots, and a delete for a tombstone.
	for i := range 8 {
		f, err := w.client.AddFilter(ctx, load.Filter(uuid.NewString(), w.callouts[i%2]))
		if err != nil {
			t.Fatal(err)
		}
		if i%4 == 0 {
			// The delete may reach the other engine before it has folded
			// the add (engines do not wait for each other): try again.
			testkit.Eventually(t, "the delete of a filter just added", func() bool {
				err := w.client.DeleteFilter(ctx, engine.FilterRef{FilterID: f.ID})
				if err != nil && !errors.Is(err, engine.ErrFilterNotFound) {
					t.Fatal(err)
				}
				return err == nil
			})
		}
	}
	s, err := w.js.Stream(ctx, jetstream.DefaultStreamName)
	if err != nil {
		t.Fatal(err)
	}
	if r := s.CachedInfo().Config.Replicas; r != 3 {
		t.Fatalf("stream has %d replicas, want 3", r)
	}
	start := s.CachedInfo().State.LastSeq + 1
	n := 0
	for _, co := range w.callouts {
		for _, mode := range []check.Mode{check.Live, check.Replay, check.Durable} {
			a := &clusterAgent{name: fmt.Sprintf("%s-%s", mode, co[:4]), mode: mode, callout: co, rec: newRecorder(), start: start}
			opts := []callout.Option{callout.WithLogger(quietLog), callout.WithAgentID(a.name)}
			switch mode {
			case check.Replay:
				opts = append(opts, callout.WithMode(callout.Replay))
			case check.Durable:
				opts = append(opts, callout.WithDurable(a.name))
			}
			// Agents sit on every node, so each fault cuts some off.
			anc := w.c.Nodes[n%3].Connect(t, w.c.URLs())
			n++
			a.agent, err = callout.Register(ctx, testkit.JetStream(t, anc), co, a.rec, opts...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = a.agent.Close() })
			w.agents = append(w.agents, a)
		}
	}
	for _, a := range w.agents {
		waitSynced(t, a.agent)
	}
	// The engines count on the agents before the load starts (R7).
	testkit.Eventually(t, "the engines to list every agent", func() bool {
		l, err := w.client.ListCallouts(ctx)
		if err != nil {
			return false
		}
		agents := 0
		for _, c := range l.Callouts {
			agents += len(c.Agents)
		}
		return agents == len(w.agents)
	})
	w.load = newLoad(t)
	for i := range 6 {
		// Filters naming no callout too: their adds show the engines and
		// the stream serve even while agents catch up.
		w.load.Run(engine.NewClient(w.c.Nodes[i%3].Connect(t, w.c.URLs())), append(w.callouts, ""), uint64(i), callTimeout)
	}
	return w
}

// startEngine starts an engine on its own connection, to node first.
func (w *clusterWorld) startEngine(name string, node int) *clusterEngine {
	w.t.Helper()
	nc := w.c.Nodes[node].Connect(w.t, w.c.URLs(), nats.Name("engine "+name))
	e, err := engine.Start(ctxT(w.t), nc, engine.Config{Replicas: 3, Logger: quietLog})
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(e.Close)
	ce := &clusterEngine{name: name, nc: nc, e: e}
	w.engines = append(w.engines, ce)
	return ce
}

// killEngine stops engine name the way a crash does: its connection goes
// first, so requests it took are never answered.
func (w *clusterWorld) killEngine(name string) {
	for i, ce := range w.engines {
		if ce.name == name {
			ce.nc.Close()
			ce.e.Close()
			w.engines = append(w.engines[:i], w.engines[i+1:]...)
			return
		}
	}
	w.t.Fatalf("no engine %s", name)
}

// progress waits until n more adds have been acknowledged: the system
// serves again after a fault.
func (w *clusterWorld) progress(n int64) {
	w.t.Helper()
	if err := w.load.WaitAcked(w.load.Acked()+n, recoveryDeadline); err != nil {
		w.t.Fatal(err)
	}
}

// finish stops the load, adds one last filter per callout (so every
// agent's notifications must reach the end of the log), waits until every
// agent and engine has the whole log, and verifies everything (see
// package check).
func (w *clusterWorld) finish() *check.Report {
	t := w.t
	t.Helper()
	w.load.Halt()
	var last []uint64
	for _, co := range w.callouts {
		id, err := w.load.AddUntilAcked(w.client, co, callTimeout)
		if err != nil {
			t.Fatal(err)
		}
		last = append(last, id)
	}
	for _, a := range w.agents {
		testkit.Eventually(t, "agent "+a.name+" to get the last add of its callout", func() bool {
			for _, n := range a.rec.snapshot() {
				for _, id := range last {
					if n.t == callout.AddFilter && n.id == id {
						return true
					}
				}
			}
			return false
		})
	}
	entries, err := load.ReadLog(w.js)
	if err != nil {
		t.Fatal(err)
	}
	end := entries[len(entries)-1].Seq
	var engines []check.Engine
	for _, ce := range w.engines {
		testkit.Eventually(t, "engine "+ce.name+" to fold the whole log", func() bool { return ce.e.Seq() >= end })
		ce.e.View(func(s *projection.State) {
			var fs []*events.Filter
			for _, f := range s.Filters(projection.Template{}) {
				fs = append(fs, f.Clone())
			}
			engines = append(engines, check.Engine{Name: ce.name, Seq: s.Seq(), Filters: fs})
		})
	}
	var agents []check.Agent
	for _, a := range w.agents {
		var notes []check.Notice
		for _, n := range a.rec.snapshot() {
			notes = append(notes, check.Notice{Delete: n.t == callout.DeleteFilter, ID: n.id, Key: n.key, Initial: n.initial})
		}
		held := []uint64{}
		for f := range a.agent.Filters() {
			held = append(held, f.ID)
		}
		agents = append(agents, check.Agent{Name: a.name, Callout: a.callout, Mode: a.mode, Runs: [][]check.Notice{notes}, Start: a.start, Held: held})
	}
	r := check.Verify(entries, w.load.Ops(), agents, engines)
	t.Log(r)
	for _, p := range r.Problems {
		t.Error(p)
	}
	if !r.OK() {
		t.Errorf("not consistent: %v", r)
	}
	return r
}

// callTimeout bounds one management call of the load. A call that times
// out leaves its outcome unknown, which the checks allow; shorter than the
// client's default (10 s plus the notify and write timeouts) so that the
// callers stranded by a fault move on sooner.
const callTimeout = 8 * time.Second

// recoveryDeadline bounds the wait for the system to serve again after a
// fault: an election (up to 9 s), consumers noticing their server is gone
// (two missed 5 s heartbeats), adds waiting out agents that cannot answer.
const recoveryDeadline = 90 * time.Second

// newLoad is a load that stops when the test ends.
func newLoad(t *testing.T) *load.Load {
	l := load.New()
	t.Cleanup(l.Halt)
	return l
}
