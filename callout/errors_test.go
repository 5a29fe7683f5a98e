package callout_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/events"
)

// R7 as the SDK sees it: an AddFilter error (or panic) means the callout
// refuses the filter. It is not held and not retried; later events go on.
func TestR7_RefusedAddIsNotHeldNorRetried(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	rec := newRecorder()
	var calls sync.Map // filter name -> *atomic.Int64
	rec.before = func(_ context.Context, nt callout.NotifyType, f *callout.Filter) error {
		if nt != callout.AddFilter {
			return nil
		}
		n, _ := calls.LoadOrStore(f.Name, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
		switch f.Name {
		case "refused":
			f.Context = "state of a refused filter"
			return errors.New("out of memory")
		case "panics":
			panic("driver bug")
		}
		return nil
	}
	a := e.register(ck, rec)
	bad, boom, good := e.add(ck, "refused"), e.add(ck, "panics"), e.add(ck, "good")
	rec.expect(t, addNote(good, false)) // the refused ones leave no note
	waitStats(t, a, func(s callout.Stats) bool {
		return s.Adds == 1 && s.Refused == 2 && s.HandlerErrors == 2 && s.Held == 1
	})
	for _, f := range []*events.Filter{bad, boom} {
		if _, ok := a.Lookup(f.ID); ok {
			t.Errorf("refused filter %q is held", f.Name)
		}
	}
	for _, name := range []string{"refused", "panics", "good"} {
		n, _ := calls.Load(name)
		if got := n.(*atomic.Int64).Load(); got != 1 {
			t.Errorf("AddFilter of %q called %d times, want 1 (no retry)", name, got)
		}
	}
	if isClosed(a.Done()) {
		t.Fatal("a panicking handler stopped the agent")
	}
}

// R7: an error (or panic) on DeleteFilter does not keep the filter.
func TestDeleteFilterErrorStillDeletes(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	rec := newRecorder()
	rec.before = func(_ context.Context, nt callout.NotifyType, f *callout.Filter) error {
		if nt == callout.DeleteFilter {
			if f.Name == "panics" {
				panic("cleanup bug")
			}
			return errors.New("cleanup failed")
		}
		return nil
	}
	a := e.register(ck, rec)
	f, g := e.add(ck, "fails"), e.add(ck, "panics")
	rec.expect(t, addNote(f, false), addNote(g, false))
	e.del(f)
	e.del(g)
	h := e.add(ck, "after")
	rec.expect(t, addNote(h, false)) // the deletes returned errors: no note
	if _, ok := a.Lookup(f.ID); ok {
		t.Fatal("filter whose DeleteFilter failed is still held")
	}
	if _, ok := a.Lookup(g.ID); ok {
		t.Fatal("filter whose DeleteFilter panicked is still held")
	}
	waitStats(t, a, func(s callout.Stats) bool { return s.Deletes == 2 && s.HandlerErrors == 2 && s.Refused == 0 })
}

func TestRegisterValidation(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cases := []struct {
		name string
		key  string
		h    callout.Handler
		opts []callout.Option
		want error
	}{
		{"bad key", "not-a-uuid", newRecorder(), nil, callout.ErrInvalidCalloutKey},
		{"nil handler", newKey(), nil, nil, callout.ErrNilHandler},
		{"empty agent id", newKey(), newRecorder(), []callout.Option{callout.WithAgentID("")}, callout.ErrInvalidOption},
		{"agent id with a dot", newKey(), newRecorder(), []callout.Option{callout.WithAgentID("a.b")}, callout.ErrInvalidOption},
		{"agent id with a wildcard", newKey(), newRecorder(), []callout.Option{callout.WithAgentID("a*")}, callout.ErrInvalidOption},
		{"empty durable", newKey(), newRecorder(), []callout.Option{callout.WithDurable("")}, callout.ErrInvalidOption},
		{"nil logger", newKey(), newRecorder(), []callout.Option{callout.WithLogger(nil)}, callout.ErrInvalidOption},
		{"bad mode", newKey(), newRecorder(), []callout.Option{callout.WithMode(callout.Mode(9))}, callout.ErrInvalidOption},
		{"stream name with a dot", newKey(), newRecorder(), []callout.Option{callout.WithStream("a.b", "")}, callout.ErrInvalidOption},
		{"prefix with a wildcard", newKey(), newRecorder(), []callout.Option{callout.WithStream("", "wfp.*")}, callout.ErrInvalidOption},
	}
	for _, c := range cases {
		if _, err := callout.Register(ctx, e.js, c.key, c.h, c.opts...); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	_, err := callout.Register(ctx, e.js, newKey(), newRecorder(), callout.WithStream("NOPE", ""))
	if err == nil {
		t.Error("missing stream accepted")
	}
}

// Close waits for the handler in flight (whose ctx it cancels), can be
// called again and from several goroutines, and is not a failure.
func TestCloseWaitsForHandlerAndIsIdempotent(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	inHandler := make(chan struct{})
	var returned atomic.Bool
	h := callout.HandlerFunc(func(ctx context.Context, _ callout.NotifyType, _ *callout.Filter) error {
		close(inHandler)
		<-ctx.Done()
		returned.Store(true)
		return ctx.Err()
	})
	a := e.register(ck, h)
	e.add(ck, "f")
	waitFor(t, inHandler)

	errs := make(chan error, 3)
	for range 3 {
		go func() { errs <- a.Close() }()
	}
	for range 3 {
		if err := waitFor(t, errs); err != nil {
			t.Fatal(err)
		}
	}
	if !returned.Load() {
		t.Fatal("Close returned before the handler did")
	}
	if !isClosed(a.Done()) || a.Err() != nil {
		t.Fatalf("after Close: done=%v err=%v", isClosed(a.Done()), a.Err())
	}
}

// Never stuck, never silent: when the connection goes away for good the
// agent stops and says why.
func TestTerminalFailureClosesDoneWithErr(t *testing.T) {
	e := newEnv(t)
	nc, err := e.srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	js, err := natsjsNew(nc)
	if err != nil {
		t.Fatal(err)
	}
	a, err := callout.Register(context.Background(), js, newKey(), newRecorder(), callout.WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	if a.Err() != nil {
		t.Fatal("Err before failure")
	}
	nc.Close()
	waitClosed(t, a.Done(), "Done")
	if a.Err() == nil {
		t.Fatal("Done closed without Err")
	}
	t.Logf("Err: %v", a.Err())
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
}
