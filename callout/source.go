package callout

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// source yields the messages of the callout's filter subject, in order, to
// the agent's single notify goroutine. next blocks; it returns errStopped
// once stop was called and a terminal error when it cannot go on. release
// runs once the notify goroutine has ended, with the message whose
// handling Close interrupted, if any.
type source interface {
	next() (natsjs.Msg, error)
	stop()
	release(ctx context.Context, unfinished natsjs.Msg)
}

var errStopped = errors.New("callout: source stopped")

// messagesOpts tune the iterators; the library defaults (5 s heartbeat for
// ordered consumers, so about 10 s to notice a lost consumer) suit
// production, tests shorten them.
var messagesOpts []natsjs.PullMessagesOpt

// ordered reads through an ordered consumer. The iterator (Messages), not
// Consume, so that the library resets the consumer inside next, on our
// goroutine: with Consume a reset starts a new callback goroutine that can
// overlap the one still in the handler, and handler calls must stay
// sequential.
type ordered struct {
	stream  natsjs.Stream
	c       natsjs.Consumer
	it      natsjs.MessagesContext
	mu      sync.Mutex
	stopped bool
}

func newOrdered(s natsjs.Stream, c natsjs.Consumer) (*ordered, error) {
	it, err := c.Messages(messagesOpts...)
	if err != nil {
		return nil, err
	}
	return &ordered{stream: s, c: c, it: it}, nil
}

func (o *ordered) next() (natsjs.Msg, error) {
	msg, err := safeNext(o.it)
	if err == nil {
		return msg, nil
	}
	if o.isStopped() {
		return nil, errStopped
	}
	// The ordered iterator recreates its consumer itself on the errors it
	// can recover from; what reaches us is mostly the iterator closing
	// with the connection, which run treats as terminal.
	return nil, err
}

func (o *ordered) isStopped() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.stopped
}

func (o *ordered) stop() {
	o.mu.Lock()
	o.stopped = true
	o.mu.Unlock()
	o.it.Stop()
}

// release deletes the server-side consumer now rather than leaving it to
// expire after its inactive threshold (5 minutes).
func (o *ordered) release(ctx context.Context, _ natsjs.Msg) {
	if info := o.c.CachedInfo(); info != nil {
		_ = o.stream.DeleteConsumer(ctx, info.Name)
	}
}

// durable reads through a durable pull consumer with explicit acks. If the
// consumer is deleted under it, it recreates it at the first sequence not
// yet handled, so the agent is never stuck and skips nothing.
type durable struct {
	stream natsjs.Stream
	cfg    natsjs.ConsumerConfig
	conn   *nats.Conn
	resume func() uint64 // first stream sequence not yet handled
	// pause logs err and waits before the next attempt; false means the
	// agent is closing.
	pause func(err error, b *backoff) bool
	bo    *backoff

	mu      sync.Mutex
	it      natsjs.MessagesContext
	last    natsjs.MessagesContext // the iterator stop stopped
	stopped bool
}

// openDurable resumes the named consumer, or creates it at "now" on first
// use. It also returns the first stream sequence the consumer will deliver.
func openDurable(ctx context.Context, s natsjs.Stream, name, subject, calloutKey string) (natsjs.Consumer, natsjs.ConsumerConfig, uint64, error) {
	cfg := natsjs.ConsumerConfig{
		Durable:       name,
		Description:   "wfp callout agent " + calloutKey,
		DeliverPolicy: natsjs.DeliverNewPolicy,
		AckPolicy:     natsjs.AckExplicitPolicy,
		AckWait:       durableAckWait,
		FilterSubject: subject,
		// One message in flight keeps log order across restarts: with more,
		// a message delivered to a stopped agent and never acked would be
		// redelivered after later ones, e.g. an add after its delete.
		MaxAckPending: 1,
	}
	for attempt := 0; ; attempt++ {
		c, err := s.Consumer(ctx, name)
		if err == nil {
			info := c.CachedInfo()
			subj := info.Config.FilterSubject
			if subj == "" && len(info.Config.FilterSubjects) == 1 {
				subj = info.Config.FilterSubjects[0]
			}
			if subj != subject || info.Config.AckPolicy != natsjs.AckExplicitPolicy || info.Config.MaxAckPending != 1 {
				return nil, cfg, 0, fmt.Errorf("%w: %q reads %q with ack policy %s and max ack pending %d, want %q, explicit, 1",
					ErrDurableConflict, name, subj, info.Config.AckPolicy, info.Config.MaxAckPending, subject)
			}
			return c, cfg, info.AckFloor.Stream + 1, nil
		}
		if !errors.Is(err, natsjs.ErrConsumerNotFound) {
			return nil, cfg, 0, fmt.Errorf("callout: look up durable consumer %q: %w", name, err)
		}
		c, err = s.CreateConsumer(ctx, cfg)
		if errors.Is(err, natsjs.ErrConsumerExists) && attempt == 0 {
			continue // another agent created it first: resume it
		}
		if err != nil {
			return nil, cfg, 0, fmt.Errorf("callout: create durable consumer %q: %w", name, err)
		}
		// A new DeliverNew consumer reports the stream's last sequence as
		// delivered.
		return c, cfg, c.CachedInfo().Delivered.Stream + 1, nil
	}
}

func (d *durable) next() (natsjs.Msg, error) {
	for {
		it, err := d.iterator()
		if err != nil {
			return nil, err
		}
		msg, err := safeNext(it)
		if err == nil {
			d.bo.reset()
			return msg, nil
		}
		d.mu.Lock()
		stopped := d.stopped
		d.it = nil
		d.mu.Unlock()
		it.Stop()
		if stopped {
			return nil, errStopped
		}
		if d.conn.IsClosed() {
			return nil, err
		}
		// Consumer deleted, bad request, ...: reopen after a pause.
		if !d.pause(err, d.bo) {
			return nil, errStopped
		}
	}
}

// iterator returns the current iterator, opening one (and recreating the
// consumer if it is gone) when there is none. The lock is not held across
// network calls, so stop never waits for them.
func (d *durable) iterator() (natsjs.MessagesContext, error) {
	for {
		d.mu.Lock()
		it, stopped := d.it, d.stopped
		d.mu.Unlock()
		if stopped {
			return nil, errStopped
		}
		if it != nil {
			return it, nil
		}
		it, err := d.open()
		if err == nil {
			d.mu.Lock()
			if d.stopped {
				d.mu.Unlock()
				it.Stop()
				return nil, errStopped
			}
			d.it = it
			d.mu.Unlock()
			return it, nil
		}
		if d.conn.IsClosed() {
			return nil, err
		}
		if !d.pause(err, d.bo) {
			return nil, errStopped
		}
	}
}

func (d *durable) open() (natsjs.MessagesContext, error) {
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	c, err := d.stream.Consumer(ctx, d.cfg.Durable)
	if errors.Is(err, natsjs.ErrConsumerNotFound) {
		cfg := d.cfg
		cfg.DeliverPolicy = natsjs.DeliverByStartSequencePolicy
		cfg.OptStartSeq = d.resume()
		c, err = d.stream.CreateConsumer(ctx, cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("callout: reopen durable consumer %q: %w", d.cfg.Durable, err)
	}
	return c.Messages(messagesOpts...)
}

// release naks the message Close interrupted, so the next agent on this
// durable gets it at once rather than after the ack wait, and pushes the
// acks out. The nak must reach the server after our pull request's
// inbox is unsubscribed: while the server sees interest it would hand the
// message straight back to that dead request.
func (d *durable) release(ctx context.Context, unfinished natsjs.Msg) {
	if d.conn.IsClosed() {
		return
	}
	if unfinished != nil {
		d.mu.Lock()
		last := d.last
		d.mu.Unlock()
		if waitUnsubscribed(ctx, last) {
			_ = unfinished.Nak()
		} else {
			// Cannot tell: give the unsubscribe a head start instead.
			_ = unfinished.NakWithDelay(250 * time.Millisecond)
		}
	}
	_ = d.conn.FlushWithContext(ctx)
}

// waitUnsubscribed waits until the stopped iterator's inbox subscription
// is gone. nats.go's pull iterator has Closed, which reports that only
// when asked after the fact (Messages never closes the channel it
// returns), so ask again until it does.
func waitUnsubscribed(ctx context.Context, it natsjs.MessagesContext) bool {
	c, ok := it.(interface{ Closed() <-chan struct{} })
	if !ok {
		return false
	}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-c.Closed():
			return true
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

func (d *durable) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopped = true
	if d.it != nil {
		d.last = d.it
		d.it.Stop()
	}
}

// safeNext turns a panic inside the client library into an error: nats.go
// v1.55.0 can panic in an ordered consumer's reset when the iterator is
// stopped while the reset is backing off, and the agent must not crash.
func safeNext(it natsjs.MessagesContext) (msg natsjs.Msg, err error) {
	defer func() {
		if r := recover(); r != nil {
			msg, err = nil, fmt.Errorf("callout: consumer library panicked: %v", r)
		}
	}()
	return it.Next()
}
