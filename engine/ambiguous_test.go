package engine

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
)

// proxy forwards TCP connections to a real nats-server and can hold back
// everything the server sends, as a network that loses the way back
// would: the engine's writes reach the server, their acknowledgements do
// not. It holds as soon as a client sends a message containing trigger,
// before forwarding it, so the hold covers exactly that write's ack.
type proxy struct {
	ln      net.Listener
	target  string
	mu      sync.Mutex
	cond    *sync.Cond
	held    bool
	trigger []byte
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	p.cond = sync.NewCond(&p.mu)
	t.Cleanup(func() { ln.Close(); p.release() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			go p.pipe(c, s, true)
			go p.pipe(s, c, false)
		}
	}()
	return p
}

func (p *proxy) url() string { return "nats://" + p.ln.Addr().String() }

// holdOn arms the hold: the next client message containing trigger holds
// the server's side.
func (p *proxy) holdOn(trigger string) {
	p.mu.Lock()
	p.trigger = []byte(trigger)
	p.mu.Unlock()
}

func (p *proxy) release() {
	p.mu.Lock()
	p.held = false
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *proxy) pipe(from, to net.Conn, fromClient bool) {
	defer from.Close()
	defer to.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 {
			p.mu.Lock()
			if fromClient && p.trigger != nil && bytes.Contains(buf[:n], p.trigger) {
				p.held, p.trigger = true, nil
			}
			for !fromClient && p.held {
				p.cond.Wait()
			}
			p.mu.Unlock()
			if _, err := to.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// engineBehindProxy starts an engine whose connection goes through a
// proxy, and a client that talks to the server directly (on direct).
func engineBehindProxy(t *testing.T) (e *Engine, c *Client, p *proxy, logs *testkit.SyncBuffer, direct *nats.Conn) {
	t.Helper()
	srv := testkit.Server(t)
	p = newProxy(t, strings.TrimPrefix(srv.ClientURL(), "nats://"))
	enc := testkit.Dial(t, p.url())
	logs = &testkit.SyncBuffer{}
	e, err := Start(context.Background(), enc, Config{Logger: testLogger(logs), WriteTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	direct = testkit.Dial(t, srv.ClientURL())
	c = NewClient(direct, WithTimeout(time.Minute))
	if _, err := c.AddFilter(context.Background(), events.Filter{Name: "warm", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionBlock}); err != nil {
		t.Fatal(err)
	}
	return e, c, p, logs, direct
}

// An ambiguous write: the add reaches the stream but its acknowledgement
// does not come back in time. The engine does not guess: it reads the
// log, finds its own event there, and answers success with the id the
// log gave it; the filter is in the log once.
func TestAmbiguousWriteThatLandedIsAnsweredFromTheLog(t *testing.T) {
	e, c, p, logs, direct := engineBehindProxy(t)
	p.holdOn("PUB " + events.DefaultPrefix + ".filter.")
	got := make(chan error, 1)
	var added *events.Filter
	go func() {
		var err error
		added, err = c.AddFilter(context.Background(), events.Filter{Name: "ambiguous", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionBlock})
		got <- err
	}()
	testkit.Eventually(t, "the write to time out", func() bool { return strings.Contains(logs.String(), "write failed, checking the log for it") })
	p.release()
	if err := <-got; err != nil {
		t.Fatalf("add whose ack was lost but which landed: %v", err)
	}
	if e.Stats().Retried == 0 {
		t.Fatal("the engine did not take the write as failed: the test lost no ack")
	}
	adds := 0
	for _, m := range readStream(t, direct) {
		if m.ev != nil && m.ev.Type == events.FilterAdded && m.ev.Filter.Name == "ambiguous" {
			adds++
			if m.seq != added.ID {
				t.Fatalf("answered id %d, the log has the add at %d", added.ID, m.seq)
			}
		}
	}
	if adds != 1 {
		t.Fatalf("the add is %d times in the log, want once", adds)
	}
}

// A write whose outcome stays unknown for longer than the write timeout
// (the server's answers do not come back at all) is answered
// FWP_E_TIMEOUT saying so, not success and not a refusal; once the way
// back is open again, the log shows it landed, and reads say so.
func TestWriteWithAnUnknownOutcomeTimesOut(t *testing.T) {
	e, c, p, logs, _ := engineBehindProxy(t)
	p.holdOn("PUB " + events.DefaultPrefix + ".filter.")
	_, err := c.AddFilter(context.Background(), events.Filter{Name: "unknown", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionBlock})
	var we *Error
	if !errors.As(err, &we) || we.Code != CodeTimeout || !strings.Contains(we.Message, "list to see whether it was applied") {
		t.Fatalf("add with no answer from the server: %v\n%s", err, logs.String())
	}
	p.release()
	list, err := c.ListFilters(context.Background(), ListFiltersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, f := range list.Filters {
		if f.Name == "unknown" {
			found++
		}
	}
	if found != 1 || e.Seq() < 2 {
		t.Fatalf("after the way back opened: %d filters named unknown, engine at %d", found, e.Seq())
	}
}

// A transaction whose first attempt landed while its answer was lost, and
// which was attempted again meanwhile (with fresh event ids, and fresh
// keys for filters that named none), is answered from the attempt that
// landed, and written once: the later attempts lose the fence, and the
// landed one must be recognised although it is not the latest.
func TestTransactionRetriedAfterALostAnswerIsWrittenOnce(t *testing.T) {
	srv := testkit.Server(t)
	p := newProxy(t, strings.TrimPrefix(srv.ClientURL(), "nats://"))
	logs := &testkit.SyncBuffer{}
	e, err := Start(context.Background(), testkit.Dial(t, p.url()), Config{Logger: testLogger(logs), WriteTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	direct := testkit.Dial(t, srv.ClientURL())
	c := NewClient(direct, WithTimeout(time.Minute))

	var ops []TxOp
	for _, name := range []string{"tx one", "tx two", "tx three"} {
		ops = append(ops, TxOp{Op: OpFilterAdd, Filter: &events.Filter{Name: name, Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionBlock}})
	}
	p.holdOn("PUB " + events.DefaultPrefix + ".filter.")
	got := make(chan error, 1)
	var resp *TxResponse
	go func() {
		var err error
		resp, err = c.ApplyTx(context.Background(), ops)
		got <- err
	}()
	testkit.Eventually(t, "the transaction to be attempted again", func() bool { return e.Stats().Retried >= 2 })
	p.release()
	if err := <-got; err != nil {
		t.Fatalf("transaction whose answers were lost: %v", err)
	}
	adds := map[string][]uint64{}
	for _, m := range readStream(t, direct) {
		if m.ev != nil && m.ev.Type == events.FilterAdded {
			adds[m.ev.Filter.Name] = append(adds[m.ev.Filter.Name], m.seq)
		}
	}
	for i, op := range ops {
		seqs := adds[op.Filter.Name]
		if len(seqs) != 1 {
			t.Fatalf("%q is in the log %d times (at %v), want once", op.Filter.Name, len(seqs), seqs)
		}
		if got := resp.Events[i].Filter; got.ID != seqs[0] || got.Name != op.Filter.Name {
			t.Fatalf("answered %q id %d, the log has it at %d", got.Name, got.ID, seqs[0])
		}
	}
}
