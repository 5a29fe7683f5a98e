package engine

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
)

// defaultWait is how long a raw request waits for the engine: long
// enough for a busy machine, and only ever reached when the test fails.
const defaultWait = 10 * time.Second

// testLogger logs text lines to w, for tests that read the engine's log.
func testLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

func startEngine(t testing.TB, nc *nats.Conn) *Engine {
	t.Helper()
	return startEngineConfig(t, nc, Config{})
}

func startEngineConfig(t testing.TB, nc *nats.Conn, cfg Config) *Engine {
	t.Helper()
	e, err := Start(context.Background(), nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

func TestAddListDeleteAndErrors(t *testing.T) {
	ctx := context.Background()
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	startEngine(t, nc)
	c := NewClient(nc)

	co, err := c.AddCallout(ctx, events.Callout{Key: "0C8E7F1D-7C55-4D0E-A2E1-6F3B9D2F4E10", Name: "inspect"})
	if err != nil {
		t.Fatal(err)
	}
	if co.Key != "0c8e7f1d-7c55-4d0e-a2e1-6f3b9d2f4e10" {
		t.Fatalf("callout key not canonical: %s", co.Key)
	}
	if _, err := c.AddCallout(ctx, events.Callout{Key: co.Key, Name: "again"}); !errors.Is(err, ErrAlreadyExists) {
		t.Fatalf("second add: %v, want FWP_E_ALREADY_EXISTS", err)
	}
	f, err := c.AddFilter(ctx, events.Filter{Name: "f1", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionCalloutInspection, CalloutKey: co.Key,
		Conditions: []events.Condition{{Field: "IP_REMOTE_PORT", Value: "23"}}})
	if err != nil {
		t.Fatal(err)
	}
	if f.ID != 2 || f.Conditions[0].Match != events.MatchEqual {
		t.Fatalf("filter %+v: want id 2 (the add's sequence) and match defaulted", f)
	}
	if _, err := c.AddFilter(ctx, events.Filter{Key: f.Key, Name: "dup", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionBlock}); !errors.Is(err, ErrAlreadyExists) {
		t.Fatalf("dup filter: %v", err)
	}
	if _, err := c.AddFilter(ctx, events.Filter{Name: "x", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionCalloutTerminating,
		CalloutKey: "5b1f0c0e-8a43-4b8e-9d7c-3c2f2d1a0b01"}); !errors.Is(err, ErrCalloutNotFound) {
		t.Fatalf("missing callout: %v", err)
	}
	var we *Error
	if _, err := c.AddFilter(ctx, events.Filter{Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionBlock}); !errors.As(err, &we) || we.Code != CodeInvalidParameter || we.Message != "name is required" {
		t.Fatalf("no name: %v", err)
	}
	if err := c.DeleteCallout(ctx, co.Key); !errors.Is(err, ErrInUse) {
		t.Fatalf("delete in-use callout: %v", err)
	}
	list, err := c.ListFilters(ctx, ListFiltersRequest{CalloutKey: co.Key})
	if err != nil || len(list.Filters) != 1 || list.Seq != 2 {
		t.Fatalf("list: %+v, %v", list, err)
	}
	if err := c.DeleteFilter(ctx, FilterRef{FilterID: f.ID}); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteFilter(ctx, FilterRef{FilterKey: f.Key}); !errors.Is(err, ErrFilterNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	if err := c.DeleteCallout(ctx, co.Key); err != nil {
		t.Fatal(err)
	}
	cl, err := c.ListCallouts(ctx)
	if err != nil || len(cl.Callouts) != 0 {
		t.Fatalf("callouts after delete: %+v %v", cl, err)
	}
}
