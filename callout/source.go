package callout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/wfpnats/wfp/jetstream"
)

// source yields the messages of the callout's filter subject, in order, to
// the agent's single notify goroutine. next blocks, for at most wait if
// wait > 0 (then errHoldTimeout); it returns errStopped once stop was
// called and a terminal error when it cannot go on. release runs once the
// notify goroutine has ended, with the last message the agent acked, and
// reports what it could not make sure of.
type source interface {
	next(wait time.Duration) (natsjs.Msg, error)
	stop()
	release(ctx context.Context, lastAcked natsjs.Msg) error
}

var (
	errStopped     = errors.New("callout: source stopped")
	errHoldTimeout = errors.New("callout: no message within the hold timeout")
)

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

func (o *ordered) next(wait time.Duration) (natsjs.Msg, error) {
	msg, err := safeNext(o.it, wait)
	if err == nil {
		return msg, nil
	}
	if o.isStopped() {
		return nil, errStopped
	}
	if wait > 0 && errors.Is(err, nats.ErrTimeout) {
		return nil, errHoldTimeout
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
// A consumer that cannot be deleted is no loss (the server drops it
// itself), so this reports nothing.
func (o *ordered) release(ctx context.Context, _ natsjs.Msg) error {
	if info := o.c.CachedInfo(); info != nil {
		_ = o.stream.DeleteConsumer(ctx, info.Name)
	}
	return nil
}

// durableMaxAckPending is how many messages a durable consumer hands out
// before it waits for acks. The agent holds a transaction's parts unacked
// until it has them all (a transaction is up to jetstream.MaxBatch = 1000
// messages), and the pull iterator reads ahead, so it must be well above
// one transaction, or the consumer would stop delivering in the middle of
// one and the agent would wait for parts that never come.
const durableMaxAckPending = 2 * jetstream.MaxBatch

// durableConfig is the durable consumer the agent wants.
//
// AckAll, because the agent acknowledges units, not messages: the last
// message of a single event or of a whole transaction, once the handler
// is done with all of it. The ack floor then only ever stands at the end
// of a unit, so whatever comes after it is a whole unit or more, and a
// restarted agent re-reads a transaction it was in the middle of from its
// first part.
func durableConfig(name, subject, calloutKey string) natsjs.ConsumerConfig {
	return natsjs.ConsumerConfig{
		Durable:       name,
		Description:   "wfp callout agent " + calloutKey,
		DeliverPolicy: natsjs.DeliverNewPolicy,
		AckPolicy:     natsjs.AckAllPolicy,
		AckWait:       durableAckWait,
		FilterSubject: subject,
		MaxAckPending: durableMaxAckPending,
	}
}

// durable reads through a durable pull consumer acknowledged per unit
// (see durableConfig). With more than one message in flight the server
// would redeliver a lost one only after the ack wait, behind newer ones
// (an add after its delete, half a transaction after the other half), so
// whenever messages may have been lost in flight, the agent does not wait
// for that: it recreates the consumer at the first message it has not
// handled. That is when it starts on a consumer with unacked messages
// (a previous run killed or closed in the middle), when the consumer is
// gone (deleted under it), and when the consumer's delivery sequence
// skips (deliveries lost in a reconnect). So the agent is never stuck,
// skips nothing and sees the log in order.
type durable struct {
	stream natsjs.Stream
	cfg    natsjs.ConsumerConfig
	conn   *nats.Conn
	log    *slog.Logger
	resume func() uint64 // first stream sequence not yet handled
	// pause logs err and waits before the next attempt; false means the
	// agent is closing.
	pause func(err error, b *backoff) bool
	bo    *backoff
	// pastEnd is told how many sequences this agent had handled beyond
	// the log's end, when it finds the log shorter than its position.
	pastEnd func(n uint64)

	// Owned by the notify goroutine.
	dseq uint64 // consumer sequence of the last delivery received
	lost bool   // deliveries were lost: recreate the consumer

	mu      sync.Mutex
	it      natsjs.MessagesContext
	stopped bool
}

// start opens the consumer at registration and returns the first stream
// sequence it will deliver.
func (d *durable) start(ctx context.Context) (uint64, error) {
	c, first, err := d.openConsumer(ctx, 0, false)
	if err != nil {
		return 0, err
	}
	it, err := c.Messages(messagesOpts...)
	if err != nil {
		return 0, fmt.Errorf("callout: read durable consumer %q: %w", d.cfg.Durable, err)
	}
	d.it = it
	return first, nil
}

// openConsumer resumes the named consumer, or creates it. It returns the
// consumer, with d.dseq set to its last delivery, and the first stream
// sequence it will deliver.
//
// An existing consumer that reads another subject is ErrDurableConflict:
// resuming it would skip or mix events. One that reads ours is resumed as
// it is, unless it has delivered messages nobody acknowledged (a previous
// run killed or closed while it held a transaction, or messages read
// ahead), or lost is set, or it predates this configuration (another
// ack policy cannot be changed in place). Then it is recreated, same name
// and filter, to start right after its ack floor, or at start if that is
// further on (start: the first sequence this run has not handled, 0 at
// registration). The server would redeliver those messages only after the
// ack wait, and after newer ones; recreated, the consumer delivers them
// at once and in log order, so a transaction cut short arrives again
// whole.
//
// On first use the consumer is created at "now" (DeliverNew), or at start
// when the agent is recreating one that vanished.
func (d *durable) openConsumer(ctx context.Context, start uint64, lost bool) (natsjs.Consumer, uint64, error) {
	name, subject := d.cfg.Durable, d.cfg.FilterSubject
	for attempt := 0; ; attempt++ {
		c, err := d.stream.Consumer(ctx, name)
		if err == nil {
			info := c.CachedInfo()
			subj := info.Config.FilterSubject
			if subj == "" && len(info.Config.FilterSubjects) == 1 {
				subj = info.Config.FilterSubjects[0]
			}
			if subj != subject {
				return nil, 0, fmt.Errorf("%w: %q reads %q, want %q", ErrDurableConflict, name, subj, subject)
			}
			if err := d.checkEnd(ctx, info, start); err != nil {
				return nil, 0, err
			}
			mp := info.Config.MaxAckPending
			ours := info.Config.AckPolicy == d.cfg.AckPolicy && (mp < 0 || mp >= durableMaxAckPending) // < 0: unlimited
			if ours && !lost && info.NumAckPending == 0 {
				d.dseq = info.Delivered.Consumer
				return c, max(start, info.AckFloor.Stream+1), nil
			}
			from := max(start, info.AckFloor.Stream+1)
			why := "unacknowledged messages"
			switch {
			case lost:
				why = "deliveries lost in flight"
			case !ours:
				why = "configuration of an older agent"
			}
			d.log.Info("recreating the durable consumer to redeliver from its ack floor at once, in order",
				"why", why, "ackPending", info.NumAckPending, "ackFloor", info.AckFloor.Stream,
				"ackPolicy", info.Config.AckPolicy, "maxAckPending", info.Config.MaxAckPending, "from", from)
			if err := d.stream.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, natsjs.ErrConsumerNotFound) {
				return nil, 0, fmt.Errorf("callout: recreate durable consumer %q: delete: %w", name, err)
			}
			start = from
		} else if !errors.Is(err, natsjs.ErrConsumerNotFound) {
			return nil, 0, fmt.Errorf("callout: look up durable consumer %q: %w", name, err)
		}

		cfg := d.cfg
		if start > 0 {
			cfg.DeliverPolicy = natsjs.DeliverByStartSequencePolicy
			cfg.OptStartSeq = start
		}
		c, err = d.stream.CreateConsumer(ctx, cfg)
		if errors.Is(err, natsjs.ErrConsumerExists) && attempt == 0 {
			continue // another agent created it first: look again
		}
		if err != nil {
			return nil, 0, fmt.Errorf("callout: create durable consumer %q: %w", name, err)
		}
		d.dseq = 0
		if start == 0 {
			// A new DeliverNew consumer reports the stream's last sequence
			// as delivered.
			start = c.CachedInfo().Delivered.Stream + 1
		}
		return c, start, nil
	}
}

// checkEnd reports, loudly, a log that ends before this agent's position:
// the log lost events the agent had handled (a damaged or emptied store),
// and the filters it holds may no longer be the engine's. The position is
// the furthest of what this run handled (start-1) and what the consumer
// says. On restart the server clamps a consumer's stream positions to
// what the stream still holds, but not its count of deliveries: more
// deliveries acknowledged than stream sequences up to the ack floor tells
// the same. (Only redeliveries could make that count run ahead otherwise,
// and this agent recreates its consumer rather than wait for them.)
func (d *durable) checkEnd(ctx context.Context, info *natsjs.ConsumerInfo, start uint64) error {
	si, err := d.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("callout: stream info: %w", err)
	}
	last := si.State.LastSeq
	pos := max(info.AckFloor.Stream, info.Delivered.Stream)
	if start > 0 {
		pos = max(pos, start-1)
	}
	clamped := info.AckFloor.Consumer > info.AckFloor.Stream
	if pos <= last && !clamped {
		return nil
	}
	n := max(pos-min(pos, last), info.AckFloor.Consumer-min(info.AckFloor.Consumer, info.AckFloor.Stream), 1)
	d.log.Error("THE LOG LOST EVENTS THIS AGENT HAD HANDLED: its durable position is past the end of the log; the filters it holds may differ from the engine's",
		"durable", d.cfg.Durable, "position", pos, "acknowledgedDeliveries", info.AckFloor.Consumer, "logLastSeq", last)
	if d.pastEnd != nil {
		d.pastEnd(n)
	}
	return nil
}

func (d *durable) next(wait time.Duration) (natsjs.Msg, error) {
	for {
		it, err := d.iterator()
		if err != nil {
			return nil, err
		}
		msg, err := safeNext(it, wait)
		if err == nil {
			meta, merr := msg.Metadata()
			if merr != nil {
				return msg, nil // dispatch skips it
			}
			if meta.Sequence.Consumer != d.dseq+1 {
				// The consumer handed out deliveries we never got (lost in
				// a reconnect, or to a pull request of ours that is gone).
				// The server would redeliver them only after the ack wait,
				// after this one: start over from what we have handled.
				d.log.Warn("deliveries lost in flight; recreating the durable consumer",
					"expectedDelivery", d.dseq+1, "gotDelivery", meta.Sequence.Consumer, "seq", meta.Sequence.Stream)
				d.lost = true
				d.drop(it)
				continue
			}
			d.dseq = meta.Sequence.Consumer
			d.bo.reset()
			return msg, nil
		}
		if d.isStopped() {
			return nil, errStopped
		}
		if wait > 0 && errors.Is(err, nats.ErrTimeout) {
			return nil, errHoldTimeout
		}
		d.drop(it)
		if d.conn.IsClosed() {
			return nil, err
		}
		// Consumer deleted, bad request, ...: reopen after a pause.
		if !d.pause(err, d.bo) {
			return nil, errStopped
		}
	}
}

func (d *durable) isStopped() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stopped
}

// drop stops the iterator it and forgets it, so the next call opens one.
func (d *durable) drop(it natsjs.MessagesContext) {
	d.mu.Lock()
	if d.it == it {
		d.it = nil
	}
	d.mu.Unlock()
	it.Stop()
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
	c, _, err := d.openConsumer(ctx, d.resume(), d.lost)
	if err != nil {
		return nil, fmt.Errorf("callout: reopen durable consumer %q: %w", d.cfg.Durable, err)
	}
	d.lost = false
	return c.Messages(messagesOpts...)
}

// release makes sure the server has applied our acks. The server applies
// a consumer's acks in order but off the connection's read loop, so a
// flush would not do: the next agent on this durable reads the ack floor
// to know where to start (see openConsumer), and a floor lagging behind
// would hand it messages handled already. So it acks the last acked
// message once more, as a request: the server answers (for AckAll even
// an ack below the floor) once it has applied it, and so every ack before
// it. (Msg.DoubleAck would refuse: the client remembers the first ack.)
// Messages delivered and not acknowledged (a unit Close cut short,
// messages read ahead) stay pending; the next agent recreates the
// consumer at the ack floor to get them at once.
func (d *durable) release(ctx context.Context, lastAcked natsjs.Msg) error {
	if lastAcked == nil || lastAcked.Reply() == "" {
		return nil // nothing acked this run
	}
	if d.conn.IsClosed() {
		return errors.New("callout: acks not confirmed, the connection is closed; the next run may get the last unit again")
	}
	if _, err := d.conn.RequestWithContext(ctx, lastAcked.Reply(), []byte("+ACK")); err != nil {
		return fmt.Errorf("callout: acks not confirmed by the server (%w); the next run may get the last unit again", err)
	}
	return nil
}

func (d *durable) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopped = true
	if d.it != nil {
		d.it.Stop()
	}
}

// safeNext turns a panic inside the client library into an error: nats.go
// v1.55.0 can panic in an ordered consumer's reset when the iterator is
// stopped while the reset is backing off, and the agent must not crash.
func safeNext(it natsjs.MessagesContext, wait time.Duration) (msg natsjs.Msg, err error) {
	defer func() {
		if r := recover(); r != nil {
			msg, err = nil, fmt.Errorf("callout: consumer library panicked: %v", r)
		}
	}()
	if wait > 0 {
		return it.Next(natsjs.NextMaxWait(wait))
	}
	return it.Next()
}
