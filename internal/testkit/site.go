package testkit

import (
	"net"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Site is a hub and a remote site in this process: a hub server with
// JetStream in domain "hub" that accepts leaf node connections, and a
// leaf node with JetStream in domain "site" connected to it through a
// Proxy, the WAN link a test can cut. Both serve one account, so core
// NATS subjects cross the link; JetStream stays in each domain (the
// hub's is reached from the site as $JS.hub.API).
type Site struct {
	t    testing.TB
	Hub  *Node
	Leaf *Node
	Link *Proxy
}

// Domains of the two sides of a Site.
const (
	HubDomain  = "hub"
	SiteDomain = "site"
)

// NewSite starts the hub, then the leaf node, and waits until the link is
// up.
func NewSite(t testing.TB) *Site {
	t.Helper()
	s := &Site{t: t}
	s.Hub = StartNode(t, &server.Options{
		ServerName:      "hub",
		JetStreamDomain: HubDomain,
		LeafNode:        server.LeafNodeOpts{Host: "127.0.0.1", Port: server.RANDOM_PORT},
	})
	p, err := NewProxy()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	p.SetTarget(s.Hub.leafAddr())
	s.Link = p
	s.Leaf = StartNode(t, &server.Options{
		ServerName:      "site",
		JetStreamDomain: SiteDomain,
		LeafNode: server.LeafNodeOpts{
			// Redial the hub quickly once the link is back.
			ReconnectInterval: 100 * time.Millisecond,
			// Only through the proxy: the hub advertises its real leaf
			// port, which would bypass a cut link.
			Remotes: []*server.RemoteLeafOpts{{URLs: []*url.URL{{Scheme: "nats-leaf", Host: p.Addr()}}, IgnoreDiscoveredServers: true}},
		},
	})
	s.WaitLinked()
	return s
}

func (n *Node) leafAddr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return net.JoinHostPort(n.cur.LeafNode.Host, strconv.Itoa(n.cur.LeafNode.Port))
}

// Cut takes the link down: the leaf connection is closed and redials
// fail until Restore.
func (s *Site) Cut() {
	s.t.Helper()
	s.Link.Cut()
	Eventually(s.t, "the leaf node to lose the hub", func() bool {
		return s.Hub.Server().NumLeafNodes() == 0 && s.Leaf.Server().NumLeafNodes() == 0
	})
}

// Restore brings the link back and waits for the leaf node to reconnect.
func (s *Site) Restore() {
	s.t.Helper()
	s.Link.Restore()
	s.WaitLinked()
}

// WaitLinked waits until the leaf node is connected to the hub.
func (s *Site) WaitLinked() {
	s.t.Helper()
	Eventually(s.t, "the leaf node to connect to the hub", func() bool {
		return s.Hub.Server().NumLeafNodes() == 1 && s.Leaf.Server().NumLeafNodes() == 1
	})
}
