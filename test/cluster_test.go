package test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/wfpnats/wfp/jetstream"
)

// The cluster tests run the system as it is deployed past one machine: a
// 3-node JetStream cluster (real nats-servers in this process, routed
// through proxies the test can cut; see testkit.Cluster), the log at R3,
// engines on two nodes, agents in every mode on every node, and callers
// adding and deleting filters throughout. Each injects one fault under
// load and then holds everything observed to package check's rules:
// nothing acknowledged lost, nothing given twice, every agent told
// exactly the log, every engine's and agent's state the log's.

// The stream leader crashes during adds (it is cut off first, so it
// cannot hand its leadership over: the others elect a new leader after
// their election timeout), serves again, and comes back on its store.
func TestClusterStreamLeaderCrash(t *testing.T) {
	w := newClusterWorld(t)
	w.progress(20)
	leader := w.c.StreamLeader(w.js, jetstream.DefaultStreamName)
	w.c.Crash(leader)
	w.progress(20)
	w.c.Restart(leader)
	w.c.StreamCurrent(w.js, jetstream.DefaultStreamName)
	w.progress(10)
	w.finish()
}

// A node that leads neither the stream nor the meta group crashes and is
// started again on its store; it catches up with what was written while it
// was down, and nothing else notices more than its clients moving.
func TestClusterNodeRestart(t *testing.T) {
	w := newClusterWorld(t)
	w.progress(20)
	leader := w.c.StreamLeader(w.js, jetstream.DefaultStreamName)
	node := -1
	for i, n := range w.c.Nodes {
		if i != leader && !n.Server().JetStreamIsLeader() {
			node = i
		}
	}
	if node < 0 {
		t.Fatal("no node leads neither the stream nor the meta group")
	}
	w.c.Crash(node)
	w.progress(20)
	w.c.Restart(node)
	w.c.StreamCurrent(w.js, jetstream.DefaultStreamName)
	w.progress(10)
	w.finish()
}

// One engine dies (its connection first, as in a crash: requests it took
// go unanswered) while the other keeps serving the same stream; a new
// engine then starts, rebuilds from the log and serves beside it.
func TestClusterEngineKilled(t *testing.T) {
	w := newClusterWorld(t)
	w.progress(20)
	before := w.engines[1].e.Stats().Written
	w.killEngine("A")
	w.progress(20)
	if w.engines[0].e.Stats().Written == before {
		t.Fatal("engine B wrote nothing after A died: the adds were not served by it")
	}
	w.startEngine("A2", 0)
	w.progress(10)
	w.finish()
}

// The node engine A and the stream leader sit on is cut off from the other
// two by a network partition, and later healed. The majority elects a new
// leader and engine B serves; engine A's writes cannot commit (no quorum),
// so its callers get timeouts (outcome unknown), never a false success;
// agents on the cut-off node catch up after the heal.
func TestClusterPartition(t *testing.T) {
	w := newClusterWorld(t)
	w.progress(20)
	moveStreamLeader(t, w, 0)
	w.c.Partition(0)
	w.progress(20)
	w.c.Heal(0)
	w.c.WaitFormed()
	w.c.StreamCurrent(w.js, jetstream.DefaultStreamName)
	w.progress(10)
	w.finish()
}

// moveStreamLeader makes node lead the stream, asking the current leader
// to step down in its favour.
func moveStreamLeader(t *testing.T, w *clusterWorld, node int) {
	t.Helper()
	for range 10 {
		if w.c.StreamLeader(w.js, jetstream.DefaultStreamName) == node {
			return
		}
		req, _ := json.Marshal(map[string]any{"placement": map[string]string{"preferred": w.c.Nodes[node].Name()}})
		if _, err := w.js.Conn().Request("$JS.API.STREAM.LEADER.STEPDOWN."+jetstream.DefaultStreamName, req, 5*time.Second); err != nil {
			t.Logf("stepdown: %v", err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) && w.c.StreamLeader(w.js, jetstream.DefaultStreamName) != node {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if w.c.StreamLeader(w.js, jetstream.DefaultStreamName) != node {
		t.Fatalf("could not move the stream leader to %s", w.c.Nodes[node].Name())
	}
}
