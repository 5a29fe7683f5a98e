package engine

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
)

// The file keeps the highest position stored, survives a reopen, and a
// damaged record is an error, not a mark of 0.
func TestFileMark(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mark")
	m, err := OpenFileMark(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, p := range []Position{{Seq: 5}, {Seq: 9, Removable: true}, {Seq: 7}} {
		if err := m.Store(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	m.Close()
	if m, err = OpenFileMark(path); err != nil {
		t.Fatal(err)
	}
	if p, _ := m.Load(ctx); p != (Position{Seq: 9, Removable: true}) {
		t.Fatalf("reopened mark %+v, want 9, removable", p)
	}
	m.Close()
	data, _ := os.ReadFile(path)
	if err := os.WriteFile(path, []byte(strings.Replace(string(data), "9", "8", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenFileMark(path); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("a mark whose digits changed: %v, want damaged", err)
	}
}

// Engines sharing a stream share its KV mark: each raises it, none
// lowers it, whoever wrote last.
func TestKVMarkOnlyRises(t *testing.T) {
	srv := testkit.Server(t)
	ctx := context.Background()
	open := func() *KVMark {
		m, err := OpenKVMark(ctx, testkit.JetStream(t, testkit.Conn(t, srv)), "WFP_MARK", "WFP", 1)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	a, b := open(), open()
	if err := a.Store(ctx, Position{Seq: 10}); err != nil {
		t.Fatal(err)
	}
	if err := b.Store(ctx, Position{Seq: 7}); err != nil { // b never read a's: its compare-and-set fails, it reads, stops
		t.Fatal(err)
	}
	if err := b.Store(ctx, Position{Seq: 12, Removable: true}); err != nil {
		t.Fatal(err)
	}
	if err := a.Store(ctx, Position{Seq: 11}); err != nil {
		t.Fatal(err)
	}
	if p, err := open().Load(ctx); err != nil || p != (Position{Seq: 12, Removable: true}) {
		t.Fatalf("mark %+v, %v; want 12, removable", p, err)
	}
}

// loadHook is a mark that runs a hook before each Load: another engine
// sharing the mark writing at that moment.
type loadHook struct {
	Mark
	before func()
}

func (m loadHook) Load(ctx context.Context) (Position, error) {
	m.before()
	return m.Mark.Load(ctx)
}

// Engines sharing a mark (one KV key per stream): an engine starting
// while another writes must not take the other's newer mark for a log
// that lost its end. The other engine writes, and raises the mark, just
// as the starting one reads it.
func TestSharedMarkRaisedDuringStartIsNoLoss(t *testing.T) {
	ctx := context.Background()
	srv := testkit.Server(t)
	js := testkit.JetStream(t, testkit.Conn(t, srv))
	shared, err := OpenKVMark(ctx, js, MarkBucket, "WFP", 1)
	if err != nil {
		t.Fatal(err)
	}
	other, err := Start(ctx, testkit.Conn(t, srv), Config{Mark: shared, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)
	c := NewClient(testkit.Conn(t, srv))
	add := func() {
		if _, err := c.AddFilter(ctx, events.Filter{Name: "f", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionBlock}); err != nil {
			t.Fatal(err)
		}
	}
	add()
	mine, err := OpenKVMark(ctx, js, MarkBucket, "WFP", 1)
	if err != nil {
		t.Fatal(err)
	}
	e, err := Start(ctx, testkit.Conn(t, srv), Config{Mark: loadHook{Mark: mine, before: add}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	if st := e.Stats(); st.LogLoss != "" {
		t.Fatalf("a healthy log taken for a loss: %s", st.LogLoss)
	}
}
