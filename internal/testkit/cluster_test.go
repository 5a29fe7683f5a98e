package testkit

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/jetstream"
)

// A partitioned node really is cut off: a replicated stream keeps taking
// writes on the other two, a client of the cut-off node cannot write
// (its server cannot reach a quorum), and once healed the node catches up.
// This is the guard on the proxies: if Partition left a route standing
// (say, the node's own outgoing ones), the cut-off client's write would
// succeed.
func TestClusterPartitionCutsANodeOff(t *testing.T) {
	c := NewCluster(t, 3)
	nc := c.Nodes[0].Connect(t, c.URLs())
	js := JetStream(t, nc)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := jetstream.EnsureStream(ctx, js, jetstream.StreamConfig{Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	subject := jetstream.DefaultPrefix + ".filter.x"
	if _, err := js.Publish(ctx, subject, []byte("before")); err != nil {
		t.Fatal(err)
	}
	c.StreamCurrent(js, jetstream.DefaultStreamName)

	// Cut off n3, the last to start: it dialled both others, so its routes
	// cross their proxies, not its own. Make sure it does not lead the
	// stream, so the other two keep a leader and need no election.
	cut, other := 2, 0
	if c.StreamLeader(js, jetstream.DefaultStreamName) == cut {
		if _, err := nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+jetstream.DefaultStreamName, nil, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		c.StreamLeader(js, jetstream.DefaultStreamName, cut)
	}
	// The cut-off client must not fail over to another node: only cut's URL.
	cutJS := JetStream(t, c.Nodes[cut].Connect(t, ""))
	otherJS := JetStream(t, c.Nodes[other].Connect(t, c.Nodes[other].ClientURL()))
	c.Partition(cut)
	Eventually(t, "the cut-off node to lose its routes", func() bool { return c.Nodes[cut].Server().NumRoutes() == 0 })

	if _, err := otherJS.Publish(ctx, subject, []byte("majority")); err != nil {
		t.Fatalf("the majority side cannot write: %v", err)
	}
	pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
	_, err := cutJS.Publish(pctx, subject, []byte("minority"), natsjs.WithRetryAttempts(0))
	pcancel()
	if err == nil {
		t.Fatal("a client of the cut-off node wrote to the stream: the node was not partitioned")
	}
	if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, natsjs.ErrNoStreamResponse) {
		t.Logf("cut-off write failed with %v", err)
	}

	c.Heal(cut)
	c.WaitFormed()
	c.StreamCurrent(js, jetstream.DefaultStreamName)
	s, err := js.Stream(ctx, jetstream.DefaultStreamName)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 2 {
		t.Fatalf("stream holds %d messages after healing, want 2 (before, majority)", n)
	}
}

// A crashed stream leader is replaced by an election among the others, and
// when it comes back on its store it catches up with what was written
// meanwhile.
func TestClusterCrashAndRestart(t *testing.T) {
	c := NewCluster(t, 3)
	js := JetStream(t, c.Nodes[0].Connect(t, c.URLs()))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := jetstream.EnsureStream(ctx, js, jetstream.StreamConfig{Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	subject := jetstream.DefaultPrefix + ".filter.x"
	if _, err := js.Publish(ctx, subject, nil); err != nil {
		t.Fatal(err)
	}
	leader := c.StreamLeader(js, jetstream.DefaultStreamName)
	c.Crash(leader)
	c.StreamLeader(js, jetstream.DefaultStreamName, leader)
	if _, err := js.Publish(ctx, subject, nil); err != nil {
		t.Fatal(err)
	}
	c.Restart(leader)
	c.StreamCurrent(js, jetstream.DefaultStreamName)
}
