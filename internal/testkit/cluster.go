package testkit

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// Cluster is a JetStream cluster of real nats-servers in this process,
// wired by routes the way a deployment is (nats-server's own tests do the
// same with config files and fixed ports; this uses random ports). Every
// node's route port sits behind a Proxy, and the node advertises the
// proxy, so that every route connection to or from a node crosses one the
// test controls: Partition cuts a node off, and Crash kills one without
// letting it hand its raft leaderships over first.
type Cluster struct {
	t       testing.TB
	Nodes   []*Node
	proxies []*Proxy
}

// NewCluster starts size nodes named n1, n2, ... in cluster "wfp" and
// waits until they are all routed to each other and JetStream has a meta
// leader.
func NewCluster(t testing.TB, size int) *Cluster {
	t.Helper()
	c := &Cluster{t: t}
	routes := make([]*url.URL, size)
	for i := range size {
		p, err := NewProxy()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		c.proxies = append(c.proxies, p)
		routes[i] = &url.URL{Scheme: "nats-route", Host: p.Addr()}
	}
	for i := range size {
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Cluster: server.ClusterOpts{
				Name:      "wfp",
				Host:      "127.0.0.1",
				Port:      server.RANDOM_PORT,
				Advertise: c.proxies[i].Addr(),
			},
			Routes: routes,
		}
		n := StartNode(t, opts)
		c.Nodes = append(c.Nodes, n)
		c.proxies[i].SetTarget(n.Server().ClusterAddr().String())
	}
	c.WaitFormed()
	return c
}

// URLs lists every node's client URL, comma separated, as nats.Connect
// takes them.
func (c *Cluster) URLs() string {
	urls := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		urls[i] = n.ClientURL()
	}
	return strings.Join(urls, ",")
}

// WaitFormed waits until every running node is routed to every other
// running one, JetStream has a meta leader, and the leader counts every
// running node as an online peer (else a stream with a replica per node
// cannot be placed yet).
func (c *Cluster) WaitFormed() {
	c.t.Helper()
	Eventually(c.t, "the cluster to form", func() bool {
		running, online := 0, 0
		for _, n := range c.Nodes {
			if n.Server() != nil {
				running++
			}
		}
		for _, n := range c.Nodes {
			s := n.Server()
			if s == nil {
				continue
			}
			if s.NumRoutes() < running-1 {
				return false
			}
			if s.JetStreamIsLeader() {
				online = len(s.JetStreamClusterPeers())
			}
		}
		return online == running
	})
}

// Index is the position in Nodes of the node named name, or -1.
func (c *Cluster) Index(name string) int {
	for i, n := range c.Nodes {
		if n.Name() == name {
			return i
		}
	}
	return -1
}

// StreamLeader is the index of the node leading stream, waiting (with
// js, which must reach a running node) until the stream has a leader
// and, if not is given, one that is not node not.
func (c *Cluster) StreamLeader(js natsjs.JetStream, stream string, not ...int) int {
	c.t.Helper()
	leader := -1
	Eventually(c.t, "stream "+stream+" to have a leader", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, stream)
		if err != nil || s.CachedInfo().Cluster == nil {
			return false
		}
		leader = c.Index(s.CachedInfo().Cluster.Leader)
		for _, n := range not {
			if leader == n {
				return false
			}
		}
		return leader >= 0
	})
	return leader
}

// StreamCurrent waits until stream has a leader and every replica is
// current, with no lag: all of it is on every node again.
func (c *Cluster) StreamCurrent(js natsjs.JetStream, stream string) {
	c.t.Helper()
	Eventually(c.t, "every replica of "+stream+" to be current", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return false
		}
		cl := s.CachedInfo().Cluster
		if cl == nil || cl.Leader == "" || len(cl.Replicas) != len(c.Nodes)-1 {
			return false
		}
		for _, r := range cl.Replicas {
			if !r.Current || r.Lag != 0 || r.Offline {
				return false
			}
		}
		return true
	})
}

// Partition cuts node i off the others: every route to or from it is
// closed, and new ones are refused until Heal. Its clients stay connected
// to it.
func (c *Cluster) Partition(i int) {
	c.t.Helper()
	c.proxies[i].Cut()
	if s := c.Nodes[i].Server(); s != nil {
		for j, p := range c.proxies {
			if j != i {
				p.Block(s.ID())
			}
		}
	}
}

// Heal undoes Partition(i).
func (c *Cluster) Heal(i int) {
	c.proxies[i].Restore()
	for j, p := range c.proxies {
		if j != i {
			p.Unblock()
		}
	}
}

// Crash kills node i as a crash or SIGKILL would: it is cut off first, so
// the raft leaderships it holds are not handed over (Node.Stop would step
// them down), and the others elect new leaders after their election
// timeout. Its clients are disconnected.
func (c *Cluster) Crash(i int) {
	c.t.Helper()
	c.Partition(i)
	c.Nodes[i].Stop()
	c.proxies[i].SetTarget("")
}

// Restart starts node i again on its store, lets it rejoin, and waits for
// its routes.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.Nodes[i].Start()
	c.proxies[i].SetTarget(c.Nodes[i].Server().ClusterAddr().String())
	c.Heal(i)
	c.WaitFormed()
}
