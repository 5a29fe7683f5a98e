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
