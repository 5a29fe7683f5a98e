package testkit

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Cutter is a TCP hop between clients and a server that a test can cut,
// as a network partition would, and mend: a real connection loss for
// real clients, with the server up all along.
type Cutter struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  []net.Conn
}

// NewCutter listens on a loopback port and forwards every connection to
// target (host:port), until the test ends.
func NewCutter(t testing.TB, target string) *Cutter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cutter{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); c.sever(true) })
	go c.accept()
	return c
}

// URL is the nats:// URL clients connect to.
func (c *Cutter) URL() string { return "nats://" + c.ln.Addr().String() }

// Cut closes every connection through the hop and refuses new ones until
// Mend.
func (c *Cutter) Cut() { c.sever(true) }

// Mend lets connections through again.
func (c *Cutter) Mend() { c.sever(false) }

func (c *Cutter) accept() {
	for {
		in, err := c.ln.Accept()
		if err != nil {
			return
		}
		c.mu.Lock()
		if c.cut {
			c.mu.Unlock()
			in.Close()
			continue
		}
		out, err := net.Dial("tcp", c.target)
		if err != nil {
			c.mu.Unlock()
			in.Close()
			continue
		}
		c.conns = append(c.conns, in, out)
		c.mu.Unlock()
		go func() { _, _ = io.Copy(out, in); out.Close() }()
		go func() { _, _ = io.Copy(in, out); in.Close() }()
	}
}

func (c *Cutter) sever(cut bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cut = cut
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns = nil
}
