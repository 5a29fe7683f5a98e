package callout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/wfpnats/wfp/jetstream"
)

var errStopped = errors.New("callout: source stopped")

// messagesOpts tune the iterators: a heartbeat every 5 s, as nats.go's
// ordered consumers have, so a consumer lost without a word (deleted while
// no pull was waiting) is noticed within about 10 s. Tests shorten it.
var messagesOpts = []natsjs.PullMessagesOpt{natsjs.PullHeartbeat(5 * time.Second)}

// pullBatch is how many messages a live or replay agent's consumer asks
// for at once, for a read of n messages (a snapshot, a catch-up): at most
// nats.go's default of 500, for a large snapshot's speed, and about a
// thirty-second of a small one (32 at least). nats-server keeps each connection's write
// vectors sized for the largest burst it ever sent it (up to 1,024
// buffers), for as long as the connection lives: an agent that read its
// thousand filters in bursts of 500 left about 70 KB behind on the
// server, one that read them in bursts of 64 about 30 KB (measured).
func pullBatch(n uint64) int { return int(min(max(n/32, 32), 500)) }

// durableMaxAckPending is how many messages a durable consumer hands out
// before it waits for acks. The agent holds a transaction's parts unacked
// until it has them all (a transaction is up to jetstream.MaxBatch = 1000
// messages), and the pull iterator reads ahead, so it must be well above
// one transaction, or the consumer would stop delivering in the middle of
// one and the agent would wait for parts that never come.
const durableMaxAckPending = 2 * jetstream.MaxBatch

// agentConsumerInactive is how long the server keeps a live or replay
// agent's consumer after the agent stopped pulling (killed): as long as
// nats.go's ordered consumers, which these replace.
const agentConsumerInactive = 5 * time.Minute

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

// agentConfig is the consumer of a live (DeliverNew) or replay
// (DeliverLastPerSubject) agent: what nats.go's ordered consumers set up
// (no acks, kept in memory, dropped when idle), under a fixed name
// (events.AgentConsumer) instead of a random one, so that permissions
// can name it.
func agentConfig(name, subject, calloutKey, agentID string, policy natsjs.DeliverPolicy) natsjs.ConsumerConfig {
	return natsjs.ConsumerConfig{
		Name:              name,
		Description:       "wfp callout agent " + calloutKey + " " + agentID,
		DeliverPolicy:     policy,
		AckPolicy:         natsjs.AckNonePolicy,
		FilterSubject:     subject,
		InactiveThreshold: agentConsumerInactive,
		MemoryStorage:     true,
		Replicas:          1,
	}
}

// reader yields the messages of the callout's filter subject, in order,
// to the agent's single notify goroutine, through a consumer of a fixed
// name that it creates, watches and recreates itself.
//
// Whenever messages may have been lost in flight, it recreates the
// consumer, same name and filter, at the first message the agent has not
// handled: when the consumer is gone (deleted under it, or dropped by a
// server restart), when its delivery sequence skips (deliveries lost in
// a reconnect or a slow client), and when heartbeats stop. A durable
// consumer is also recreated when it starts with unacknowledged messages
// (see openConsumer). So the agent is never stuck, skips nothing and
// sees the log in order; a recreated consumer may repeat messages the
// agent held but had not handled (transaction parts), which the agent
// de-duplicates.
//
// A durable reader resumes a durable consumer where a previous run left
// it; any other starts afresh under the agent's name, replacing whatever
// a previous instance of the same agent id left (Register made sure that
// instance is gone).
//
// Its pump, a goroutine of its own, reads the consumer and decodes each
// message (consumed) before it hands it to the notify goroutine, so the
// two overlap; it reports a terminal error on errs and ends. release runs
// once the notify goroutine has ended, with the last message the agent
// acked, and reports what it could not make sure of.
type reader struct {
	js      natsjs.JetStream
	stream  string
	cfg     natsjs.ConsumerConfig
	durable bool
	conn    *nats.Conn
	log     *slog.Logger
	resume  func() uint64 // first stream sequence not yet handled
	// pause logs err and waits before the next attempt; false means the
	// agent is closing.
	pause func(err error, b *backoff) bool
	bo    *backoff
	// pastEnd is told how many sequences a durable agent had handled
	// beyond the log's end, when it finds the log shorter than its
	// position (checkEnd).
	pastEnd func(n uint64)

	// Owned by the pump.
	gen   uint64 // consumers created so far: a new one after a reset
	dseq  uint64 // consumer sequence of the last delivery received
	batch int    // pullBatch of a live or replay agent's read; 0: nats.go's default

	lost atomic.Bool // deliveries were lost: recreate the consumer

	out  chan *delivery // to the notify goroutine
	errs chan error     // the pump's terminal error
	quit chan struct{}  // closed by stop
	once sync.Once

	mu      sync.Mutex
	it      natsjs.MessagesContext
	stopped bool
	// reconnected: the connection came back (watchReconnects) and the
	// iterator was stopped so the consumer is made anew.
	reconnected bool
	// suspended: suspend stopped the iterator so the consumer is made anew.
	suspended bool
	status    chan nats.Status
}

// watchReconnects makes a reader whose consumer the server keeps in
// memory (live and replay) recreate it after the connection comes back,
// as nats.go's ordered consumers do: a server restart loses such a
// consumer, and pulls on it would wait out the heartbeats first. A
// durable consumer survives restarts, and its reader carries on.
func (d *reader) watchReconnects() {
	if d.durable {
		return
	}
	d.status = d.conn.StatusChanged(nats.CONNECTED)
	go func() {
		for range d.status {
			d.mu.Lock()
			it := d.it
			d.it, d.reconnected = nil, it != nil && !d.stopped
			d.mu.Unlock()
			if it != nil {
				it.Stop()
			}
		}
	}()
}

// name is the consumer's name.
func (d *reader) name() string {
	if d.durable {
		return d.cfg.Durable
	}
	return d.cfg.Name
}

// start opens the consumer at registration. It returns the first stream
// sequence it will deliver (for a replay consumer 1: its snapshot may
// reach back anywhere) and the consumer's info at creation.
func (d *reader) start(ctx context.Context) (uint64, *natsjs.ConsumerInfo, error) {
	c, first, err := d.openConsumer(ctx, 0, false)
	if err != nil {
		return 0, nil, err
	}
	if !d.durable {
		d.batch = pullBatch(c.CachedInfo().NumPending)
	}
	it, err := c.Messages(d.messagesOpts()...)
	if err != nil {
		return 0, nil, fmt.Errorf("callout: read consumer %q: %w", d.name(), err)
	}
	d.it = it
	d.watchReconnects()
	return first, c.CachedInfo(), nil
}

// openConsumer opens the consumer and returns it, with d.dseq set to its
// last delivery, and the first stream sequence it will deliver. start is
// the first sequence this run has not handled, 0 at registration.
func (d *reader) openConsumer(ctx context.Context, start uint64, lost bool) (natsjs.Consumer, uint64, error) {
	if d.durable {
		return d.openDurable(ctx, start, lost, true)
	}
	name := d.cfg.Name
	if err := d.js.DeleteConsumer(ctx, d.stream, name); err != nil && !errors.Is(err, natsjs.ErrConsumerNotFound) {
		return nil, 0, fmt.Errorf("callout: replace consumer %q: delete: %w", name, err)
	}
	return d.create(ctx, start, true)
}

// openDurable resumes the named durable consumer, or creates it.
//
// An existing consumer that reads another subject is ErrDurableConflict:
// resuming it would skip or mix events. One that reads ours is resumed as
// it is, unless it has delivered messages nobody acknowledged (a previous
// run killed or closed while it held a transaction, or messages read
// ahead), or lost is set, or it predates this configuration (another
// ack policy cannot be changed in place). Then it is recreated, same name
// and filter, to start right after its ack floor, or at start if that is
// further on. The server would redeliver those messages only after the
// ack wait, and after newer ones; recreated, the consumer delivers them
// at once and in log order, so a transaction cut short arrives again
// whole.
//
// On first use the consumer is created at "now" (DeliverNew), or at start
// when the agent is recreating one that vanished.
func (d *reader) openDurable(ctx context.Context, start uint64, lost, retry bool) (natsjs.Consumer, uint64, error) {
	name, subject := d.cfg.Durable, d.cfg.FilterSubject
	c, err := d.js.Consumer(ctx, d.stream, name)
	if err == nil {
		info := c.CachedInfo()
		subj := info.Config.FilterSubject
		if subj == "" && len(info.Config.FilterSubjects) == 1 {
			subj = info.Config.FilterSubjects[0]
		}
		if subj != subject {
			return nil, 0, fmt.Errorf("%w: %q reads %q, want %q", ErrDurableConflict, name, subj, subject)
		}
		d.checkEnd(ctx, info, start)
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
		if err := d.js.DeleteConsumer(ctx, d.stream, name); err != nil && !errors.Is(err, natsjs.ErrConsumerNotFound) {
			return nil, 0, fmt.Errorf("callout: recreate durable consumer %q: delete: %w", name, err)
		}
		start = from
	} else if !errors.Is(err, natsjs.ErrConsumerNotFound) {
		return nil, 0, fmt.Errorf("callout: look up durable consumer %q: %w", name, err)
	}
	return d.create(ctx, start, retry)
}

// checkEnd reports, loudly, a log that ends before this durable agent's
// position: the log lost events the agent had handled (a damaged or
// emptied store), and the filters it holds may no longer be the engine's.
// The position is the furthest of what this run handled (start-1) and
// what the consumer says; the message there was on the callout's subject,
// so the newest message on that subject (asked with a direct get, which
// the agent's permissions allow for its own callout) must be at least as
// far. On restart the server clamps a consumer's stream positions to what
// the stream still holds, but not its count of deliveries: more
// deliveries acknowledged than stream sequences up to the ack floor tells
// the same. (Only redeliveries could make that count run ahead otherwise,
// and this agent recreates its consumer rather than wait for them.)
func (d *reader) checkEnd(ctx context.Context, info *natsjs.ConsumerInfo, start uint64) {
	last, err := lastSeqOn(ctx, d.conn, d.js, d.stream, d.cfg.FilterSubject)
	if err != nil {
		d.log.Warn("cannot read the log's end to check the durable position against it", "err", err)
		return
	}
	pos := max(info.AckFloor.Stream, info.Delivered.Stream)
	if start > 0 {
		pos = max(pos, start-1)
	}
	clamped := info.AckFloor.Consumer > info.AckFloor.Stream
	if pos <= last && !clamped {
		return
	}
	n := max(pos-min(pos, last), info.AckFloor.Consumer-min(info.AckFloor.Consumer, info.AckFloor.Stream), 1)
	d.log.Error("THE LOG LOST EVENTS THIS AGENT HAD HANDLED: its durable position is past the end of the log; the filters it holds may differ from the engine's",
		"durable", d.cfg.Durable, "position", pos, "acknowledgedDeliveries", info.AckFloor.Consumer, "logLastSeq", last)
	if d.pastEnd != nil {
		d.pastEnd(n)
	}
}

// create makes the consumer: from start, or (start 0) with its
// configured deliver policy. When a consumer of the name exists by then
// (another agent on the same durable name got there first), a durable one
// is looked at again and any other replaced, once (retry).
func (d *reader) create(ctx context.Context, start uint64, retry bool) (natsjs.Consumer, uint64, error) {
	cfg := d.cfg
	if start > 0 {
		cfg.DeliverPolicy = natsjs.DeliverByStartSequencePolicy
		cfg.OptStartSeq = start
	}
	c, err := d.js.CreateConsumer(ctx, d.stream, cfg)
	switch {
	case errors.Is(err, natsjs.ErrConsumerExists) && retry && d.durable:
		return d.openDurable(ctx, start, false, false)
	case errors.Is(err, natsjs.ErrConsumerExists) && retry:
		if err := d.js.DeleteConsumer(ctx, d.stream, cfg.Name); err != nil && !errors.Is(err, natsjs.ErrConsumerNotFound) {
			return nil, 0, fmt.Errorf("callout: replace consumer %q: delete: %w", cfg.Name, err)
		}
		return d.create(ctx, start, false)
	case errors.Is(err, natsjs.ErrStreamNotFound):
		return nil, 0, fmt.Errorf("callout: stream %q: %w", d.stream, err)
	case err != nil:
		return nil, 0, fmt.Errorf("callout: create consumer %q: %w", d.name(), err)
	}
	d.dseq = 0
	d.gen++
	switch {
	case start > 0:
	case cfg.DeliverPolicy == natsjs.DeliverByStartSequencePolicy:
		start = cfg.OptStartSeq
	case cfg.DeliverPolicy == natsjs.DeliverNewPolicy:
		// A new DeliverNew consumer reports the stream's last sequence as
		// delivered: "now" as an explicit sequence, so that a consumer
		// recreated before its first message starts there, not at a later
		// "now".
		start = c.CachedInfo().Delivered.Stream + 1
	default:
		start = 1
	}
	return c, start, nil
}

// pump hands the consumer's messages to the notify goroutine until the
// reader stops, or reports why it cannot go on.
func (d *reader) pump() {
	for {
		dl, err := d.next()
		if err != nil {
			if !errors.Is(err, errStopped) {
				select {
				case d.errs <- err:
				case <-d.quit:
				}
			}
			return
		}
		select {
		case d.out <- dl:
		case <-d.quit:
			return
		}
	}
}

// next returns the next message, decoded.
func (d *reader) next() (*delivery, error) {
	for {
		it, err := d.iterator()
		if err != nil {
			return nil, err
		}
		msg, err := safeNext(it)
		if err == nil {
			dl := consumed(msg, d.gen)
			if errors.Is(dl.err, errNoMetadata) {
				return dl, nil // dispatch skips it
			}
			if dl.dseq != d.dseq+1 {
				// The consumer handed out deliveries we never got (lost in
				// a reconnect, to a pull request of ours that is gone, or
				// dropped by a slow client). A durable consumer would
				// redeliver them only after the ack wait, after this one;
				// any other never: start over from what we have handled.
				d.log.Warn("deliveries lost in flight; recreating the consumer",
					"expectedDelivery", d.dseq+1, "gotDelivery", dl.dseq, "seq", dl.seq)
				d.lost.Store(true)
				d.drop(it)
				continue
			}
			d.dseq = dl.dseq
			d.bo.reset()
			return dl, nil
		}
		if d.isStopped() {
			return nil, errStopped
		}
		d.drop(it)
		if d.conn.IsClosed() {
			return nil, err
		}
		d.mu.Lock()
		reconnected, suspended := d.reconnected, d.suspended
		d.reconnected, d.suspended = false, false
		d.mu.Unlock()
		if reconnected || suspended {
			if reconnected {
				d.log.Info("reconnected; recreating the consumer at the first message not handled", "consumer", d.name())
			}
			d.lost.Store(true)
			continue
		}
		// Consumer deleted, heartbeats missed, bad request, ...: reopen
		// after a pause.
		if !d.pause(err, d.bo) {
			return nil, errStopped
		}
	}
}

func (d *reader) isStopped() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stopped
}

// drop stops the iterator it and forgets it, so the next call opens one.
func (d *reader) drop(it natsjs.MessagesContext) {
	d.mu.Lock()
	if d.it == it {
		d.it = nil
	}
	d.mu.Unlock()
	it.Stop()
}

// iterator returns the current iterator, opening one (and recreating the
// consumer) when there is none. The lock is not held across network
// calls, so stop never waits for them.
func (d *reader) iterator() (natsjs.MessagesContext, error) {
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

func (d *reader) open() (natsjs.MessagesContext, error) {
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	c, _, err := d.openConsumer(ctx, d.resume(), d.lost.Load())
	if err != nil {
		return nil, fmt.Errorf("callout: reopen consumer %q: %w", d.name(), err)
	}
	d.lost.Store(false)
	return c.Messages(d.messagesOpts()...)
}

// release, for a durable reader, makes sure the server has applied our
// acks. The server applies a consumer's acks in order but off the
// connection's read loop, so a flush would not do: the next agent on this
// durable reads the ack floor to know where to start (see openDurable),
// and a floor lagging behind would hand it messages handled already. So
// it acks the last acked message once more, as a request: the server
// answers (for AckAll even an ack below the floor) once it has applied
// it, and so every ack before it. (Msg.DoubleAck would refuse: the client
// remembers the first ack.) Messages delivered and not acknowledged (a
// unit Close cut short, messages read ahead) stay pending; the next agent
// recreates the consumer at the ack floor to get them at once.
//
// Any other reader deletes its consumer now rather than leave it to
// expire when idle. A consumer that cannot be deleted is no loss (the
// server drops it itself, or the next instance replaces it), so that
// reports nothing.
func (d *reader) release(ctx context.Context, lastAcked natsjs.Msg) error {
	if !d.durable {
		_ = d.js.DeleteConsumer(ctx, d.stream, d.cfg.Name)
		return nil
	}
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

// suspend lets go of the consumer: the next call to next makes it anew,
// same name and filter, at the first message not handled (resume). The
// resync uses it, on the notify goroutine, to read a snapshot under the
// agent's consumer name and to go on from the snapshot's end.
func (d *reader) suspend() {
	d.lost.Store(true)
	d.mu.Lock()
	it := d.it
	d.it = nil
	d.suspended = it != nil
	d.mu.Unlock()
	if it != nil {
		it.Stop()
	}
}

// messagesOpts are the pull options of the reader's iterators.
func (d *reader) messagesOpts() []natsjs.PullMessagesOpt {
	if d.batch == 0 {
		return messagesOpts
	}
	return append(slices.Clone(messagesOpts), natsjs.PullMaxMessages(d.batch))
}

func (d *reader) stop() {
	d.once.Do(func() { close(d.quit) })
	d.mu.Lock()
	d.stopped = true
	if d.it != nil {
		d.it.Stop()
	}
	d.mu.Unlock()
	if d.status != nil {
		d.conn.RemoveStatusListener(d.status)
	}
}

// safeNext turns a panic inside the client library into an error (the
// agent must not crash on a library bug; nats.go v1.55.0 could panic in
// an ordered consumer's reset).
func safeNext(it natsjs.MessagesContext) (msg natsjs.Msg, err error) {
	defer func() {
		if r := recover(); r != nil {
			msg, err = nil, fmt.Errorf("callout: consumer library panicked: %v", r)
		}
	}()
	return it.Next()
}
