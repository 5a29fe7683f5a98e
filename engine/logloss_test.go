package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
)

// store is an engine's data directory: a real embedded server's store and
// the engine's mark file beside it, restarted as an operator would.
type store struct {
	t    *testing.T
	dir  string
	mark string
}

func newStore(t *testing.T) *store {
	dir := t.TempDir()
	return &store{t: t, dir: dir, mark: filepath.Join(dir, "engine.mark")}
}

// run starts a server on the store and an engine on it, calls fn, and
// stops both.
func (s *store) run(cfg Config, fn func(e *Engine, c *Client)) {
	s.t.Helper()
	srv := testkit.ServerIn(s.t, s.dir)
	defer srv.Shutdown()
	nc := testkit.Conn(s.t, srv)
	defer nc.Close()
	if cfg.Mark == nil {
		m, err := OpenFileMark(s.mark)
		if err != nil {
			s.t.Fatal(err)
		}
		defer m.Close()
		cfg.Mark = m
	} else if cfg.Mark == noMark {
		cfg.Mark = nil
	}
	var logs testkit.SyncBuffer
	cfg.Logger = testLogger(&logs)
	e, err := Start(context.Background(), nc, cfg)
	if err != nil {
		s.t.Fatalf("start: %v\n%s", err, logs.String())
	}
	defer e.Close()
	fn(e, NewClient(nc))
}

// noMark asks run for an engine without a mark.
var noMark Mark = (*FileMark)(nil)

// block returns the path of the stream's message block file.
func (s *store) block() string {
	s.t.Helper()
	blocks, err := filepath.Glob(filepath.Join(s.dir, "jetstream", "*", "streams", events.DefaultStream, "msgs", "*.blk"))
	if err != nil || len(blocks) != 1 {
		s.t.Fatalf("stream blocks: %v, %v", blocks, err)
	}
	return blocks[0]
}

// addN adds n filters and returns their ids.
func addN(t *testing.T, c *Client, n int) []uint64 {
	t.Helper()
	var out []uint64
	for i := range n {
		f, err := c.AddFilter(context.Background(), events.Filter{Name: fmt.Sprint("f", i), Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionBlock})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f.ID)
	}
	return out
}

// expectLoss checks that e refuses writes naming both sequences, and
// still answers reads.
func expectLoss(t *testing.T, e *Engine, c *Client, last, mark uint64, listed int) {
	t.Helper()
	_, err := c.AddFilter(context.Background(), events.Filter{Name: "after", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionBlock})
	var we *Error
	if !errors.As(err, &we) || we.Code != CodeLogLoss ||
		!strings.Contains(we.Message, fmt.Sprintf("ends at sequence %d", last)) || !strings.Contains(we.Message, fmt.Sprintf("up to sequence %d", mark)) {
		t.Fatalf("add on a log that lost acknowledged events: %v; want FWP_E_LOG_LOSS naming sequences %d and %d", err, last, mark)
	}
	if s := e.Stats(); !strings.Contains(s.LogLoss, "lost") {
		t.Fatalf("Stats.LogLoss = %q", s.LogLoss)
	}
	list, err := c.ListFilters(context.Background(), ListFiltersRequest{})
	if err != nil || len(list.Filters) != listed {
		t.Fatalf("list while writes are refused: %v, %v; want %d filters", list, err, listed)
	}
}

// expectNoReuse accepts the loss and checks that the next add gets an id
// past everything acknowledged.
func expectNoReuse(t *testing.T, s *store, acked []uint64) {
	t.Helper()
	s.run(Config{AcceptLogLoss: true}, func(e *Engine, c *Client) {
		got := addN(t, c, 3)
		for _, id := range got {
			if id <= slices.Max(acked) {
				t.Fatalf("after the loss was accepted, a new filter got id %d; ids up to %d were acknowledged", id, slices.Max(acked))
			}
		}
	})
	// Accepted once: the next start writes without being told again.
	s.run(Config{}, func(e *Engine, c *Client) {
		if e.Stats().LogLoss != "" {
			t.Fatalf("loss reported again: %s", e.Stats().LogLoss)
		}
		addN(t, c, 1)
	})
}

// damage cuts the stream's block file by cut bytes (all of it for -1), as
// a disk fault would with the engine stopped; withIndex also removes the
// server's index of the stream (index.db), which otherwise keeps the
// last sequence of what the block lost.
func (s *store) damage(cut int64, withIndex bool) {
	s.t.Helper()
	blk := s.block()
	fi, err := os.Stat(blk)
	if err != nil {
		s.t.Fatal(err)
	}
	size := int64(0)
	if cut >= 0 {
		size = fi.Size() - cut
	}
	if err := os.Truncate(blk, size); err != nil {
		s.t.Fatal(err)
	}
	if withIndex {
		if err := os.Remove(filepath.Join(filepath.Dir(blk), "index.db")); err != nil {
			s.t.Fatal(err)
		}
	}
}

// A block cut short (a disk fault, with the engine stopped) loses the
// last acknowledged add: detected on restart, writes refused naming both
// sequences, reads served; accepted, the lost id is never given again.
// With its index the server keeps the last sequence and the message is
// simply gone; without, the log ends before the mark.
func TestTruncatedStoreIsDetected(t *testing.T) {
	for _, withIndex := range []bool{false, true} {
		t.Run(fmt.Sprint("index removed ", withIndex), func(t *testing.T) {
			s := newStore(t)
			var acked []uint64
			s.run(Config{}, func(e *Engine, c *Client) { acked = addN(t, c, 20) })
			s.damage(100, withIndex)
			s.run(Config{}, func(e *Engine, c *Client) {
				f, _ := e.state.Len()
				if f >= 20 {
					t.Fatalf("all 20 filters are still there after the cut: the test cut nothing")
				}
				expectLoss(t, e, c, e.Seq(), 20, f)
			})
			expectNoReuse(t, s, acked)
		})
	}
}

// An emptied block loses everything: detected the same way, and once
// accepted, ids go on after the mark instead of restarting at 1.
func TestEmptiedStoreIsDetected(t *testing.T) {
	for _, withIndex := range []bool{false, true} {
		t.Run(fmt.Sprint("index removed ", withIndex), func(t *testing.T) {
			s := newStore(t)
			var acked []uint64
			s.run(Config{}, func(e *Engine, c *Client) { acked = addN(t, c, 10) })
			s.damage(-1, withIndex)
			s.run(Config{}, func(e *Engine, c *Client) { expectLoss(t, e, c, e.Seq(), 10, 0) })
			expectNoReuse(t, s, acked)
		})
	}
}

// A server restarted under a running engine on a store that lost the
// log's end: the engine's next write finds the log shorter than its own
// state and refuses, instead of writing at sequences it acknowledged.
func TestLogShrinkingUnderARunningEngineIsDetected(t *testing.T) {
	dir := t.TempDir()
	port := 0
	start := func() *server.Server {
		return testkit.ServerWith(t, dir, func(o *server.Options) {
			if port != 0 {
				o.Port = port
			}
		})
	}
	srv := start()
	port = srv.Addr().(*net.TCPAddr).Port
	nc := testkit.Dial(t, srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	e := startEngine(t, nc)
	c := NewClient(nc)
	acked := addN(t, c, 10)

	srv.Shutdown()
	srv.WaitForShutdown()
	s := &store{t: t, dir: dir}
	s.damage(-1, true)
	start()
	testkit.Eventually(t, "the engine to reconnect", nc.IsConnected)

	_, err := c.AddFilter(context.Background(), events.Filter{Name: "after", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionBlock})
	if !errors.Is(err, ErrLogLoss) {
		t.Fatalf("add after the log lost its end: %v; want FWP_E_LOG_LOSS", err)
	}
	if list, err := c.ListFilters(context.Background(), ListFiltersRequest{}); err != nil {
		t.Fatalf("list: %v", err)
	} else {
		for _, f := range list.Filters {
			if slices.Contains(acked, f.ID) && f.Name == "after" {
				t.Fatalf("filter %d reused an acknowledged id", f.ID)
			}
		}
	}
	if e.Stats().LogLoss == "" {
		t.Fatal("Stats.LogLoss is empty")
	}
}
