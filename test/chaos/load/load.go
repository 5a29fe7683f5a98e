// Package load drives the management API the way the fault suites need:
// callers adding filters with fresh keys and deleting their own, each
// call's outcome recorded for package check, with the times the fault
// suites measure failover from; and reads the log back (ReadLog).
package load

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/engine"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/jetstream"
	"github.com/wfpnats/wfp/test/chaos/check"
)

// Filter is the filter every caller adds: an inspection filter naming co,
// or, with co empty, a block filter no callout is told about (its add
// waits for no agent, so it shows whether the engine and the stream
// serve, whatever the agents do).
func Filter(key, co string) events.Filter {
	if co == "" {
		return events.Filter{Key: key, Name: "f", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionBlock}
	}
	return events.Filter{Key: key, Name: "f", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionCalloutInspection, CalloutKey: co}
}

// OutcomeOf classifies a management call's error: a WFP refusal is
// definite, a timeout or a lost connection leaves the outcome unknown.
// FWP_E_TIMEOUT is both: an add whose agents did not answer in time was
// taken back ("... was not added"), which is definite; the engine not
// answering, or a write it could not confirm, is unknown.
func OutcomeOf(err error) check.Outcome {
	var e *engine.Error
	switch {
	case err == nil:
		return check.Acked
	case errors.As(err, &e) && e.Code == engine.CodeTimeout && strings.Contains(e.Message, "was not added"):
		return check.Refused
	case errors.Is(err, engine.ErrTimeout), errors.Is(err, engine.ErrInternal):
		return check.Unknown
	case errors.As(err, &e):
		return check.Refused
	}
	return check.Unknown
}

// Ack is an acknowledged add: when it was sent and when the answer came.
type Ack struct {
	Sent, Done time.Time
}

// Load runs management callers and records what they were told.
type Load struct {
	mu    sync.Mutex
	ops   []check.Op
	acks  []Ack
	errs  map[string]int
	acked atomic.Int64
	stop  chan struct{}
	wg    sync.WaitGroup
}

// New returns a load with no callers yet.
func New() *Load { return &Load{stop: make(chan struct{}), errs: map[string]int{}} }

// Run starts a caller on client: adds with fresh keys to one of callouts
// at random ("" for a filter naming none, see Filter), and now and then a
// delete of a filter it added, each call bounded by timeout, until Halt.
func (l *Load) Run(client *engine.Client, callouts []string, seed uint64, timeout time.Duration) {
	l.wg.Go(func() {
		r := rand.New(rand.NewPCG(seed, 12))
		var mine []uint64
		for {
			select {
			case <-l.stop:
				return
			default:
			}
			if len(mine) > 0 && r.IntN(4) == 0 {
				i := r.IntN(len(mine))
				op := check.Op{Delete: true, ID: mine[i]}
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				err := client.DeleteFilter(ctx, engine.FilterRef{FilterID: op.ID})
				cancel()
				if op.Outcome = OutcomeOf(err); op.Outcome != check.Unknown {
					mine = append(mine[:i], mine[i+1:]...)
				}
				l.record(op, err, time.Time{})
				continue
			}
			if id, ok := l.Add(client, callouts[r.IntN(len(callouts))], timeout); ok {
				mine = append(mine, id)
			}
		}
	})
}

// Add adds one filter to co, records the outcome and reports the id if it
// was acknowledged.
func (l *Load) Add(client *engine.Client, co string, timeout time.Duration, opts ...engine.CallOption) (uint64, bool) {
	op := check.Op{Key: uuid.NewString()}
	sent := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	f, err := client.AddFilter(ctx, Filter(op.Key, co), opts...)
	cancel()
	if op.Outcome = OutcomeOf(err); op.Outcome == check.Acked {
		op.ID = f.ID
	}
	l.record(op, err, sent)
	return op.ID, op.Outcome == check.Acked
}

// Record notes an operation made outside the callers.
func (l *Load) Record(op check.Op) { l.record(op, nil, time.Time{}) }

func (l *Load) record(op check.Op, err error, sent time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops = append(l.ops, op)
	if err != nil {
		l.errs[err.Error()]++
	}
	if op.Outcome == check.Acked && !op.Delete {
		l.acked.Add(1)
		if !sent.IsZero() {
			l.acks = append(l.acks, Ack{Sent: sent, Done: time.Now()})
		}
	}
}

// Acked is how many adds have been acknowledged.
func (l *Load) Acked() int64 { return l.acked.Load() }

// WaitAcked waits until n adds in all have been acknowledged, at most
// within.
func (l *Load) WaitAcked(n int64, within time.Duration) error {
	deadline := time.Now().Add(within)
	for l.acked.Load() < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d adds acknowledged after %v; errors: %s", l.acked.Load(), n, within, l.Errors())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// AddUntilAcked adds a filter to co until one add is acknowledged (a
// timeout leaves the outcome open: it tries again with a new key) and
// returns its id.
func (l *Load) AddUntilAcked(client *engine.Client, co string, timeout time.Duration) (uint64, error) {
	for range 10 {
		if id, ok := l.Add(client, co, timeout); ok {
			return id, nil
		}
	}
	return 0, fmt.Errorf("no add acknowledged in 10 tries; errors: %s", l.Errors())
}

// Halt stops the callers and waits for their calls in flight. Safe to
// call more than once.
func (l *Load) Halt() {
	l.mu.Lock()
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.mu.Unlock()
	l.wg.Wait()
}

// Ops is every call made so far, with its outcome.
func (l *Load) Ops() []check.Op {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]check.Op(nil), l.ops...)
}

// Acks is every acknowledged add of the callers, in the order answered.
func (l *Load) Acks() []Ack {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Ack(nil), l.acks...)
}

// Errors lists the error texts seen, with counts.
func (l *Load) Errors() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for e, n := range l.errs {
		fmt.Fprintf(&b, "\n  %d× %s", n, e)
	}
	return b.String()
}

// Recovery measures a fault at t: the time from t to the first add
// acknowledged after it, and to the first acknowledged add that was also
// sent after it (one a caller could only have made once the system served
// again). ok is false if there is none yet.
func Recovery(acks []Ack, t time.Time) (anyAck, newAdd time.Duration, ok bool) {
	var firstAny, firstNew time.Time
	for _, a := range acks {
		if a.Done.After(t) && (firstAny.IsZero() || a.Done.Before(firstAny)) {
			firstAny = a.Done
		}
		if a.Sent.After(t) && (firstNew.IsZero() || a.Done.Before(firstNew)) {
			firstNew = a.Done
		}
	}
	if firstAny.IsZero() || firstNew.IsZero() {
		return 0, 0, false
	}
	return firstAny.Sub(t), firstNew.Sub(t), true
}

// ReadLog reads the whole log back, in order: what every check is held
// against. It reads through an ordered consumer's iterator (not
// Consumer.Next: on a cluster, one-off fetches from an ordered consumer
// placed on another server answer "no responders" now and then, nats.go
// 1.55) and starts over where it stopped if the consumer fails.
func ReadLog(js natsjs.JetStream) ([]check.Entry, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := js.Stream(ctx, jetstream.DefaultStreamName)
	if err != nil {
		return nil, err
	}
	last := s.CachedInfo().State.LastSeq
	var out []check.Entry
	next := uint64(1)
	var lastErr error
	for attempt := 0; next <= last; attempt++ {
		if attempt > 0 {
			// A cluster that just healed can answer "temporarily
			// unavailable" for a while: try again until the deadline.
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("reading the log: stuck at %d of %d: %v", next, last, lastErr)
			case <-time.After(100 * time.Millisecond):
			}
		}
		cons, err := js.OrderedConsumer(ctx, jetstream.DefaultStreamName, natsjs.OrderedConsumerConfig{
			DeliverPolicy: natsjs.DeliverByStartSequencePolicy, OptStartSeq: next})
		if err != nil {
			lastErr = err
			continue
		}
		it, err := cons.Messages()
		if err != nil {
			lastErr = err
			continue
		}
		for next <= last {
			m, err := it.Next(natsjs.NextMaxWait(5 * time.Second))
			if err != nil {
				lastErr = err
				break
			}
			meta, err := m.Metadata()
			if err != nil {
				break
			}
			ev, err := events.Decode(m.Data())
			if err != nil {
				ev = nil
			}
			out = append(out, check.Entry{Seq: meta.Sequence.Stream, Event: ev})
			next = meta.Sequence.Stream + 1
		}
		it.Stop()
	}
	return out, nil
}
