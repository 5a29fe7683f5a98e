package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
)

// A full store is a definite answer: every add is refused at once with
// FWP_E_STORAGE saying nothing was written, on its first attempt (no
// retry loop runs for the write timeout), and the engine's log says so a
// few times, not once per refusal.
func TestFullStoreIsRefusedAtOnceAndLoggedSparingly(t *testing.T) {
	srv := testkit.ServerWith(t, t.TempDir(), func(o *server.Options) { o.JetStreamMaxStore = 128 << 10 })
	nc := testkit.Dial(t, srv.ClientURL())
	var logs testkit.SyncBuffer
	e, err := Start(context.Background(), nc, Config{Logger: testLogger(&logs), WriteTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	c := NewClient(nc)
	ctx := context.Background()
	add := func(i int) error {
		_, err := c.AddFilter(ctx, events.Filter{Name: fmt.Sprint("filter ", i, strings.Repeat(".", 200)), Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionBlock})
		return err
	}
	// Fill the store.
	for i := 0; ; i++ {
		err := add(i)
		if errors.Is(err, ErrStorage) {
			break
		}
		if err != nil {
			t.Fatalf("add %d before the store was full: %v", i, err)
		}
		if i > 10_000 {
			t.Fatal("the store never filled up")
		}
	}

	const attempts = 50
	before, lines := e.Stats(), strings.Count(logs.String(), "\n")
	errs := make(chan error, 2*attempts)
	for i := range attempts { // one after the other: each its own write
		errs <- add(i)
	}
	var wg sync.WaitGroup
	for i := range attempts { // concurrently: refused in groups
		wg.Go(func() { errs <- add(i) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		var we *Error
		if !errors.As(err, &we) || we.Code != CodeStorage || !strings.Contains(we.Message, "nothing was written") {
			t.Fatalf("add to a full store: %v; want FWP_E_STORAGE saying nothing was written", err)
		}
	}
	// A transaction too.
	_, err = c.ApplyTx(ctx, []TxOp{{Op: OpFilterAdd, Filter: &events.Filter{Name: "tx", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionBlock}}})
	if !errors.Is(err, ErrStorage) {
		t.Fatalf("transaction on a full store: %v", err)
	}
	after := e.Stats()
	if after.Retried != before.Retried || after.Written != before.Written {
		t.Fatalf("the refused writes were retried %d times (wrote %d): the answer waited for a retry loop", after.Retried-before.Retried, after.Written-before.Written)
	}
	if after.Refused == before.Refused {
		t.Fatal("no write counted as refused")
	}
	if n := strings.Count(logs.String(), "\n") - lines; n >= 10 {
		t.Fatalf("%d log lines for %d refused writes; want them rate-limited:\n%s", n, 2*attempts+1, logs.String())
	}
}

// A write that fails fast with an unknown outcome (here no stream answers
// for the subject any more: someone changed the stream's subjects) is
// retried with a backoff, not in a tight loop until the write timeout.
func TestRetriesBackOff(t *testing.T) {
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	var logs testkit.SyncBuffer
	e, err := Start(context.Background(), nc, Config{Logger: testLogger(&logs), WriteTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	js := testkit.JetStream(t, nc)
	s, err := js.Stream(context.Background(), events.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.Subjects = []string{events.DefaultPrefix + ".callout.>"}
	if _, err := js.UpdateStream(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	_, err = NewClient(nc).AddFilter(context.Background(), events.Filter{Name: "f", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionBlock})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("add no stream stores: %v, want FWP_E_TIMEOUT", err)
	}
	// Doubling from 5 ms to at most 500 ms fits about 8 retries in a
	// second; a tight loop thousands.
	if n := e.Stats().Retried; n == 0 || n > 20 {
		t.Fatalf("%d retries in a write timeout of 1s", n)
	}
	if n := strings.Count(logs.String(), "write failed"); n >= 10 {
		t.Fatalf("%d warnings about the failed write", n)
	}
}
