// Package engine turns management commands into validated events on the
// log, and serves the management API (a NATS micro service) over its
// in-memory projection of that log. A Go client for the API lives here too.
//
// The log is the only truth: on start the engine folds it into a
// projection, and it keeps tailing it so writes by other engines on the same
// stream show up. Every write is fenced with Nats-Expected-Last-Sequence =
// the last sequence the engine has folded, so a stale engine cannot write;
// it catches up and validates again. Because nothing interleaves with a
// fenced write, the engine knows the sequence each event gets, and a
// filter's id is the sequence of its add event.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/jetstream"
	"github.com/wfpnats/wfp/projection"
)

// Config configures an engine. The zero value works: stream "WFP", prefix
// "wfp", one replica.
type Config struct {
	// Stream names the stream that holds the log (default
	// events.DefaultStream); the engine creates it if it is missing.
	Stream string
	// Prefix heads every subject of the deployment: events, the API and
	// the agent protocol (default events.DefaultPrefix).
	Prefix string
	// Replicas is the stream's replica count when the engine creates or
	// updates it (default 1; 3 or 5 on a cluster).
	Replicas int
	Logger   *slog.Logger
	// MaxGroup caps how many queued commands one fenced write carries.
	MaxGroup int
	// WriteTimeout bounds one write to JetStream, with the attempts and
	// catch-ups it takes when the stream does not answer or another writer
	// got there first (default DefaultWriteTimeout). Each attempt inside it
	// is bounded by a second, so a write that meets a stream electing a
	// new leader lands soon after the election.
	WriteTimeout time.Duration
}

// DefaultWriteTimeout is Config.WriteTimeout's default.
const DefaultWriteTimeout = 5 * time.Second

// streamConfig is the stream setup the config asks for, defaults applied.
func (c Config) streamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{Name: c.Stream, Prefix: c.Prefix, Replicas: c.Replicas}.WithDefaults()
}

func (c Config) withDefaults() Config {
	sc := c.streamConfig()
	c.Stream, c.Prefix, c.Replicas = sc.Name, sc.Prefix, sc.Replicas
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MaxGroup <= 0 {
		c.MaxGroup = 256
	}
	if c.MaxGroup > jetstream.MaxBatch {
		c.MaxGroup = jetstream.MaxBatch
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	return c
}

// Engine is a running filter engine.
type Engine struct {
	cfg    Config
	log    *slog.Logger
	subj   events.Subjects
	nc     *nats.Conn
	js     natsjs.JetStream
	stream natsjs.Stream

	mu    sync.RWMutex // guards state; only the writer loop takes it for writing
	state *projection.State

	cmds    chan *request
	tail    chan tailMsg
	folded  atomic.Uint64 // state.Seq(), for the tail's callback to read
	tailCtx natsjs.ConsumeContext
	svc     micro.Service

	agents *registry
	waits  *waits
	taken  *taken // requests being answered, for Shutdown
	subs   []*nats.Subscription

	// replicated is set when the stream has more than one replica. Then
	// a group of commands is written as one atomic batch instead of a
	// publish chain: nats-server (2.15.2) checks a chain's
	// Nats-Expected-Last-Msg-Id only when a replica applies the message,
	// and a refusal there is a "critical write error" after which the
	// stream applies nothing more: one lost fence would wedge the log. On a
	// replicated stream an atomic batch is checked before it is proposed
	// and costs about what a chain does (no fsync'ed staging, unlike R1).
	replicated bool

	skipped    atomic.Uint64 // log messages that were not events we act on
	rejected   atomic.Uint64 // adds an agent refused (R7)
	unanswered atomic.Uint64 // adds taken back because an agent did not answer
	written    atomic.Uint64 // events this engine wrote
	fenced     atomic.Uint64 // writes refused by the fence and retried

	stop     context.CancelFunc
	loopDone chan struct{}
	closed   sync.Once
}

// request is a command waiting for the writer loop, with where its answer
// goes.
type request struct {
	cmd command
	// reply gets the command's events as written, from sequence seq on.
	reply func(evs []*events.Event, seq uint64, err error)
}

// Start folds the log into the engine's state and serves the API on nc.
// It returns once the state reflects the whole log as it was at start.
func Start(ctx context.Context, nc *nats.Conn, cfg Config) (*Engine, error) {
	cfg = cfg.withDefaults()
	js, err := natsjs.New(nc)
	if err != nil {
		return nil, err
	}
	stream, err := jetstream.EnsureStream(ctx, js, cfg.streamConfig())
	if err != nil {
		return nil, err
	}
	e := &Engine{
		cfg:      cfg,
		log:      cfg.Logger,
		subj:     events.Subjects{Prefix: cfg.Prefix},
		nc:       nc,
		js:       js,
		stream:   stream,
		state:    projection.New(),
		agents:   newRegistry(),
		waits:    newWaits(),
		taken:    newTaken(),
		cmds:     make(chan *request, 4*cfg.MaxGroup),
		tail:     make(chan tailMsg, 4096),
		loopDone: make(chan struct{}),
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("engine: stream info: %w", err)
	}
	e.replicated = info.Config.Replicas > 1
	if err := e.startTail(ctx); err != nil {
		return nil, err
	}
	// Rebuild: fold until we have seen the log's last message as of now.
	if err := e.catchUp(ctx, info.State.LastSeq, nil); err != nil {
		e.tailCtx.Stop()
		return nil, fmt.Errorf("engine: rebuilding state from the log: %w", err)
	}
	loopCtx, stop := context.WithCancel(context.Background())
	e.stop = stop
	go e.loop(loopCtx)
	if err := e.listen(); err != nil {
		e.Close()
		return nil, fmt.Errorf("engine: agent registry: %w", err)
	}
	if err := e.serve(); err != nil {
		e.Close()
		return nil, err
	}
	// The loop runs now and may be folding another engine's writes: read
	// the state under its lock.
	st := e.Stats()
	e.log.Info("engine ready", "stream", cfg.Stream, "prefix", cfg.Prefix,
		"seq", st.Seq, "filters", st.Filters, "callouts", st.Callouts, "skipped", st.Skipped)
	return e, nil
}

// tailHeartbeat is how often the server tells the tail it is there. Two
// missed heartbeats make the ordered consumer start over on another
// server; at nats.go's default (5 s) an engine whose tail sat on a dead
// server would fold nothing, and so could not confirm a write it was not
// acknowledged, for 10 s.
const tailHeartbeat = time.Second

// startTail opens an ordered consumer on the whole stream from the message
// after the state's position. Its messages are folded by the writer loop (or
// by catchUp before the loop starts).
func (e *Engine) startTail(ctx context.Context) error {
	cons, err := e.js.OrderedConsumer(ctx, e.cfg.Stream, natsjs.OrderedConsumerConfig{
		DeliverPolicy: natsjs.DeliverByStartSequencePolicy,
		OptStartSeq:   e.state.Seq() + 1,
	})
	if err != nil {
		return fmt.Errorf("engine: tail consumer: %w", err)
	}
	e.tailCtx, err = cons.Consume(e.decodeTail,
		natsjs.PullHeartbeat(tailHeartbeat),
		natsjs.ConsumeErrHandler(func(_ natsjs.ConsumeContext, err error) {
			e.log.Warn("engine: tail consumer", "err", err)
		}))
	if err != nil {
		return fmt.Errorf("engine: tail consumer: %w", err)
	}
	return nil
}

// Close stops serving and writing at once. Commands still queued are
// answered with an error; adds waiting for agents are answered when their
// wait ends, but a refused one can no longer be taken back. See Shutdown.
func (e *Engine) Close() {
	e.closed.Do(func() {
		if e.svc != nil {
			_ = e.svc.Stop()
		}
		for _, s := range e.subs {
			_ = s.Unsubscribe()
		}
		if e.stop != nil {
			e.stop()
			<-e.loopDone
		}
		if e.tailCtx != nil {
			e.tailCtx.Stop()
		}
	})
}

// Seq is the stream sequence of the last log message the state reflects.
func (e *Engine) Seq() uint64 {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.state.Seq()
}

// Stats are the engine's counters.
type Stats struct {
	Seq      uint64 `json:"seq"`
	Filters  int    `json:"filters"`
	Callouts int    `json:"callouts"`
	Written  uint64 `json:"written"`
	Fenced   uint64 `json:"fenced"`
	Skipped  uint64 `json:"skipped"`
	// Rejected counts adds an agent refused; Unanswered, adds taken back
	// because an agent did not answer in time (R7).
	Rejected   uint64 `json:"rejected"`
	Unanswered uint64 `json:"unanswered"`
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	e.mu.RLock()
	f, c := e.state.Len()
	seq := e.state.Seq()
	e.mu.RUnlock()
	return Stats{Seq: seq, Filters: f, Callouts: c, Written: e.written.Load(),
		Fenced: e.fenced.Load(), Skipped: e.skipped.Load(), Rejected: e.rejected.Load(), Unanswered: e.unanswered.Load()}
}

// View runs fn with read access to the state. fn must not keep pointers
// it gets from the state past its return without cloning them.
func (e *Engine) View(fn func(s *projection.State)) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	fn(e.state)
}

// submit queues cmd for the writer loop and waits for its answer.
func (e *Engine) submit(ctx context.Context, cmd command) ([]*events.Event, uint64, error) {
	type answer struct {
		evs []*events.Event
		seq uint64
		err error
	}
	ch := make(chan answer, 1)
	if err := e.enqueue(ctx, cmd, func(evs []*events.Event, seq uint64, err error) { ch <- answer{evs, seq, err} }); err != nil {
		return nil, 0, err
	}
	select {
	case a := <-ch:
		return a.evs, a.seq, a.err
	case <-ctx.Done():
		// The command may still be written; the caller learns the outcome
		// by reading the state, as after any timeout.
		return nil, 0, errorf(CodeTimeout, "no answer before the deadline: %v", ctx.Err())
	}
}

// enqueue hands cmd to the writer loop; reply is called exactly once, from
// the loop.
func (e *Engine) enqueue(ctx context.Context, cmd command, reply func([]*events.Event, uint64, error)) error {
	select {
	case e.cmds <- &request{cmd: cmd, reply: reply}:
		return nil
	case <-ctx.Done():
		return errorf(CodeTimeout, "engine busy: %v", ctx.Err())
	case <-e.loopDone:
		return errorf(CodeInternal, "engine is closed")
	}
}

// errClosed answers commands caught by Close.
var errClosed = errors.New("engine is closed")
