package testkit

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Node is a real nats-server with JetStream in this process that a test
// can stop and start again on the same store: a member of a Cluster, a hub
// or a leaf node. Its client port stays the same across restarts, so
// clients given its URL find it again.
type Node struct {
	t    testing.TB
	name string
	opts *server.Options // the template each start clones
	log  *nodeLog

	mu  sync.Mutex
	srv *server.Server
	cur *server.Options // the clone srv runs with; the server fills in the ports it picked
}

// StartNode starts a server from opts (a template: each start uses a
// clone). Unset fields get test defaults: loopback, a random client port,
// JetStream on, a fresh t.TempDir() store, no signal handling. The node is
// shut down when the test ends; if the test fails, the node's last log
// lines are printed.
func StartNode(t testing.TB, opts *server.Options) *Node {
	t.Helper()
	o := opts.Clone()
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.Port == 0 {
		o.Port = server.RANDOM_PORT
	}
	o.JetStream = true
	if o.StoreDir == "" {
		o.StoreDir = t.TempDir()
	}
	o.NoSigs = true
	n := &Node{t: t, name: o.ServerName, opts: o, log: &nodeLog{}}
	t.Cleanup(func() {
		n.Stop()
		if t.Failed() {
			t.Logf("last log lines of %s:\n%s", n.name, n.log.tail())
		}
	})
	n.Start()
	return n
}

// Name is the server's name (and its JetStream node's).
func (n *Node) Name() string { return n.name }

// Server is the running server, nil while stopped.
func (n *Node) Server() *server.Server {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv
}

// ClientURL is the node's client URL; the port stays across restarts.
func (n *Node) ClientURL() string {
	return fmt.Sprintf("nats://%s:%d", n.opts.Host, n.opts.Port)
}

// Start starts the node (again), on the same store and client port, and
// waits until it accepts clients and JetStream is enabled. It fails the
// test if the server cannot start.
func (n *Node) Start() {
	n.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv != nil {
		return
	}
	o := n.opts.Clone()
	s, err := server.NewServer(o)
	if err != nil {
		n.t.Fatalf("node %s: %v", n.name, err)
	}
	s.SetLogger(n.log, false, false)
	s.Start()
	if !s.ReadyForConnections(20 * time.Second) {
		s.Shutdown()
		n.t.Fatalf("node %s: not ready for connections after 20s:\n%s", n.name, n.log.tail())
	}
	if n.opts.Port == server.RANDOM_PORT {
		n.opts.Port = s.Addr().(*net.TCPAddr).Port
	}
	if n.opts.ServerName == "" {
		n.name = s.Name()
	}
	n.srv, n.cur = s, o
}

// Stop shuts the server down the way nats-server does on SIGTERM: raft
// leaders on it step down first, so the others take over at once. Client
// connections to it are closed. Safe to call on a stopped node.
func (n *Node) Stop() {
	n.mu.Lock()
	s := n.srv
	n.srv, n.cur = nil, nil
	n.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// Connect opens a TCP connection to this node first and then the others
// in urls (comma separated), reconnecting for ever and at once, so a test
// client rides through a node's death the way a deployed one does.
func (n *Node) Connect(t testing.TB, urls string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	servers := []string{n.ClientURL()}
	for _, u := range strings.Split(urls, ",") {
		if u != "" && u != n.ClientURL() {
			servers = append(servers, u)
		}
	}
	all := append([]nats.Option{
		nats.DontRandomize(),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50 * time.Millisecond),
		nats.ReconnectJitter(0, 0),
		nats.Timeout(10 * time.Second),
	}, opts...)
	nc, err := nats.Connect(strings.Join(servers, ","), all...)
	if err != nil {
		t.Fatalf("connect to %s: %v", n.name, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// nodeLog keeps a server's recent log lines, for a failing test to show.
type nodeLog struct {
	mu    sync.Mutex
	lines []string
}

const nodeLogLines = 60

func (l *nodeLog) add(level, format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, time.Now().Format("15:04:05.000")+" "+level+" "+fmt.Sprintf(format, v...))
	if len(l.lines) > 2*nodeLogLines {
		l.lines = append(l.lines[:0], l.lines[len(l.lines)-nodeLogLines:]...)
	}
}

func (l *nodeLog) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines[max(0, len(l.lines)-nodeLogLines):], "\n")
}

func (l *nodeLog) Noticef(format string, v ...any) { l.add("INF", format, v...) }
func (l *nodeLog) Warnf(format string, v ...any)   { l.add("WRN", format, v...) }
func (l *nodeLog) Fatalf(format string, v ...any)  { l.add("FTL", format, v...) }
func (l *nodeLog) Errorf(format string, v ...any)  { l.add("ERR", format, v...) }
func (l *nodeLog) Debugf(format string, v ...any)  {}
func (l *nodeLog) Tracef(format string, v ...any)  {}
