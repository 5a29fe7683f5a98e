package testkit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"sync"
)

// Proxy forwards TCP connections to a server port and can cut them: the
// tests' network partition. nats-server has no exported hook to sever a
// route or a leaf node connection (its own partition tests use unexported
// helpers), so the tests put one of these in front of every route and
// leaf port and cut the wire itself.
//
// For routes it also learns which server opened each connection, from the
// first protocol line the dialling server sends (CONNECT carries its server
// id as "name", INFO as "id"), so a partition can cut a node's outgoing
// routes as well as its incoming ones.
type Proxy struct {
	ln net.Listener

	mu      sync.Mutex
	target  string // host:port; "" while the server behind is down
	down    bool   // refuse every connection
	blocked map[string]bool
	conns   map[*proxied]struct{}
	closed  bool
}

// proxied is one forwarded connection.
type proxied struct {
	in, out net.Conn
	origin  string // server id of the dialling server, once known
}

func (p *proxied) close() {
	_ = p.in.Close()
	_ = p.out.Close()
}

// NewProxy listens on a random loopback port. Connections are refused
// until SetTarget names where to forward them.
func NewProxy() (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, blocked: map[string]bool{}, conns: map[*proxied]struct{}{}}
	go p.accept()
	return p, nil
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetTarget sets where new connections go ("" refuses them).
func (p *Proxy) SetTarget(hostPort string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = hostPort
}

// Cut closes every connection through the proxy and refuses new ones
// until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.close()
	}
}

// Restore lets connections through again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

// Block closes the connections the server with this id opened through the
// proxy, and refuses its new ones, until Unblock.
func (p *Proxy) Block(serverID string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blocked[serverID] = true
	for c := range p.conns {
		if c.origin == serverID {
			c.close()
		}
	}
}

// Unblock lets every server through again.
func (p *Proxy) Unblock() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.blocked)
}

// Close stops listening and closes every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.close()
	}
	p.mu.Unlock()
	_ = p.ln.Close()
}

func (p *Proxy) accept() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.forward(in)
	}
}

// forward pipes one connection. The server's side flows at once; the
// dialler's first line is read first to learn its origin.
func (p *Proxy) forward(in net.Conn) {
	p.mu.Lock()
	target, down := p.target, p.down || p.closed
	p.mu.Unlock()
	if down || target == "" {
		_ = in.Close()
		return
	}
	out, err := net.Dial("tcp", target)
	if err != nil {
		_ = in.Close()
		return
	}
	c := &proxied{in: in, out: out}
	p.mu.Lock()
	if p.down || p.closed {
		p.mu.Unlock()
		c.close()
		return
	}
	p.conns[c] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
		c.close()
	}()

	go func() {
		_, _ = io.Copy(in, out)
		c.close()
	}()
	r := bufio.NewReaderSize(in, 64*1024)
	first, err := r.ReadSlice('\n')
	if err != nil {
		return
	}
	origin := originOf(first)
	p.mu.Lock()
	c.origin = origin
	refuse := p.blocked[origin] || p.down
	p.mu.Unlock()
	if refuse {
		return
	}
	if _, err := out.Write(first); err != nil {
		return
	}
	_, _ = io.Copy(out, r)
}

// originOf reads the server id from a route's first protocol line:
// "CONNECT {..."name":ID...}" or "INFO {..."id":ID...}". Anything else
// (a client, a leaf node) has no origin.
func originOf(line []byte) string {
	var v struct {
		Name string `json:"name"`
		ID   string `json:"id"`
	}
	switch {
	case bytes.HasPrefix(line, []byte("CONNECT ")):
		if json.Unmarshal(bytes.TrimSpace(line[len("CONNECT "):]), &v) == nil {
			return v.Name
		}
	case bytes.HasPrefix(line, []byte("INFO ")):
		if json.Unmarshal(bytes.TrimSpace(line[len("INFO "):]), &v) == nil {
			return v.ID
		}
	}
	return ""
}
