package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// taken counts the requests the API has taken and not answered yet, so
// that Shutdown can let them finish. Requests are taken only while the
// service runs; Shutdown stops it first, so the count only falls after.
type taken struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed and replaced each time n drops to 0
}

func newTaken() *taken { return &taken{idle: make(chan struct{})} }

func (t *taken) add() {
	t.mu.Lock()
	t.n++
	t.mu.Unlock()
}

func (t *taken) done() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n--; t.n == 0 {
		close(t.idle)
		t.idle = make(chan struct{})
	}
}

// wait returns when no request is open, or with how many are when ctx
// ends first.
func (t *taken) wait(ctx context.Context) (open int) {
	for {
		t.mu.Lock()
		n, idle := t.n, t.idle
		t.mu.Unlock()
		if n == 0 {
			return 0
		}
		select {
		case <-idle:
		case <-ctx.Done():
			return n
		}
	}
}

// Shutdown stops the engine gracefully, as http.Server.Shutdown does: it
// stops taking requests, lets every request it took finish (writes land
// and are answered; adds wait for their callout's agents and take back
// what they refuse), then stops writing and reading the log. If ctx ends
// first it stops anyway, like Close, and says how many requests were left
// unanswered (their callers see a timeout; list to learn the outcome).
func (e *Engine) Shutdown(ctx context.Context) error {
	var errs []error
	if e.svc != nil {
		if err := e.svc.stop(); err != nil {
			errs = append(errs, fmt.Errorf("engine: stop the API: %w", err))
		}
		_ = e.nc.FlushTimeout(time.Second) // no new request is routed here
	}
	if n := e.taken.wait(ctx); n > 0 {
		errs = append(errs, fmt.Errorf("engine: %d request(s) left unanswered: %w", n, ctx.Err()))
	}
	e.Close()
	return errors.Join(errs...)
}
