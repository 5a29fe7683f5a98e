package callout_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/events"
)

// Shutdown lets the AddFilter in flight finish with its ctx intact: the
// filter is taken, not interrupted.
func TestShutdownLetsTheHandlerFinish(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	entered, release := make(chan struct{}), make(chan struct{})
	ctxErr := make(chan error, 1)
	a := e.register(ck, callout.HandlerFunc(func(ctx context.Context, nt callout.NotifyType, f *callout.Filter) error {
		if nt == callout.AddFilter {
			close(entered)
			<-release
			ctxErr <- ctx.Err()
		}
		return nil
	}))
	anns := e.announcements()
	e.add(ck, "slow")
	waitClosed(t, entered, "the handler to start")

	done := make(chan error, 1)
	go func() { done <- a.Shutdown(context.Background()) }()
	for waitFor(t, anns).Status != events.AgentBye {
	}
	// Shutdown has said bye and now waits for the handler.
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) while the handler was still running", err)
	default:
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-ctxErr; err != nil {
		t.Fatalf("the handler's ctx ended during a graceful shutdown: %v", err)
	}
	if s := a.Stats(); s.Adds != 1 || s.Refused != 0 {
		t.Fatalf("stats %+v: want the add taken", s)
	}
}

// When Shutdown's ctx ends first, the handler's ctx is cancelled and the
// error says the handler was cut short.
func TestShutdownDeadlineCancelsTheHandler(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	entered := make(chan struct{})
	a := e.register(ck, callout.HandlerFunc(func(ctx context.Context, nt callout.NotifyType, f *callout.Filter) error {
		if nt == callout.AddFilter {
			close(entered)
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}))
	e.add(ck, "stuck")
	waitClosed(t, entered, "the handler to start")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Shutdown(ctx) }()
	cancel()
	err := <-done
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "handler cut short") {
		t.Fatalf("Shutdown: %v, want the handler reported cut short", err)
	}
	if s := a.Stats(); s.Refused != 0 {
		t.Fatalf("an add cut short by Shutdown counted as refused: %+v", s)
	}
	if again := a.Shutdown(context.Background()); again == nil || again.Error() != err.Error() {
		t.Fatalf("second Shutdown: %v, want the first one's error", again)
	}
}

// A bye the server did not confirm is reported: engines keep counting on
// the agent until its announcements time out.
func TestShutdownReportsAnUnconfirmedBye(t *testing.T) {
	e := newEnv(t)
	a := e.register(newKey(), newRecorder())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := a.Shutdown(ctx)
	if err == nil || !strings.Contains(err.Error(), "bye") || !strings.Contains(err.Error(), events.AgentTTL.String()) {
		t.Fatalf("Shutdown with a spent ctx: %v, want the bye reported unconfirmed", err)
	}
}
