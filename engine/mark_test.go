package engine

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
