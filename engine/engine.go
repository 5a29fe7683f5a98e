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
//
// It also compacts the log as it writes (see compact.go): a delete rolls
// up its filter's subject and expires after Config.Horizon, so the log
// holds the live state plus recent deletes.
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

	"github.com/wfpnats/wfp/events"
	progresslog "github.com/wfpnats/wfp/internal/progress"
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
	// Horizon is how long a delete stays readable in the log. A delete
	// rolls up its subject at once (the log holds one message per filter)
	// and expires after the horizon, so the log holds the live filters
	// plus the deletes of the last Horizon. A reader away for longer
	// cannot trust the log to show every delete and resyncs from a
	// snapshot (see the callout package). 0 means DefaultHorizon;
	// NoHorizon (any negative value) keeps deletes for ever. Whole
	// seconds. Every engine of a deployment must use the same horizon.
	Horizon time.Duration
	// Archive, if set, names a stream the engine keeps (creating it if
	// missing) that sources the log and keeps its whole history; the
	// engine holds each roll-up back until the archive has what it would
	// drop. See jetstream.ArchiveConfig.
	Archive string
	// Classifier answers classify for callout filters whose callout has
	// registered agents. Default: ask one of those agents that serves
	// classify, over request/reply (agentclassify.go), and
	// InterimClassifier for a callout none of whose agents does.
	Classifier CalloutClassifier

	clock func() time.Time // the session leases' clock; tests set it
	// Mark keeps the engine's high-water mark, the last log sequence it
	// acknowledged, apart from the log (see Mark; nil: none). The engine
	// command always sets one.
	Mark Mark
	// AcceptLogLoss lets an engine whose log ends before its mark (or
	// before its consumers' positions) write again: it first moves the
	// log's sequence past what was lost, so no id is given twice. Without
	// it such an engine refuses writes with ErrLogLoss.
	AcceptLogLoss bool
	// ProgressInterval is how often a long rebuild of the state from the
	// log logs how far it is (default 5s; negative: never).
	ProgressInterval time.Duration
	// StaleReads drops the read barrier: lists and gets answer from the
	// state as it is, which may miss writes another engine acknowledged a
	// moment ago. For measuring what the barrier costs; see read.go.
	StaleReads bool
}

// DefaultWriteTimeout is Config.WriteTimeout's default.
const DefaultWriteTimeout = 5 * time.Second

// DefaultHorizon is Config.Horizon's default: a day of deletes, so an
// agent or an operator's `engine events` that is away for less than a
// day sees every delete, and one away longer resyncs.
const DefaultHorizon = 24 * time.Hour

// NoHorizon, as Config.Horizon, keeps deletes in the log for ever; roll-ups
// still drop the adds they replace.
const NoHorizon time.Duration = -1

// streamConfig is the stream setup the config asks for, defaults applied.
func (c Config) streamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{Name: c.Stream, Prefix: c.Prefix, Replicas: c.Replicas, Horizon: c.ttl()}.WithDefaults()
}

// ttl is the Nats-TTL of a tombstone: the horizon, or 0 for none.
func (c Config) ttl() time.Duration {
	switch {
	case c.Horizon == 0:
		return DefaultHorizon
	case c.Horizon < 0:
		return 0
	}
	return c.Horizon
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
	if c.clock == nil {
		c.clock = time.Now
	}
	if c.ProgressInterval == 0 {
		c.ProgressInterval = progresslog.DefaultInterval
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

	cmds   chan *request
	tail   chan tailMsg
	folded atomic.Uint64 // state.Seq(), for the tail's callback to read
	// progress is signalled each time the state moves, for reads waiting
	// for it (read.go).
	progress *progress
	tailMu   sync.Mutex // guards tailCtx: a rebuild replaces it
	tailCtx  natsjs.ConsumeContext
	tailGen  atomic.Uint64 // the current tail consumer; older ones' messages are dropped
	svc      *apiService
	metrics  *metrics

	comp    compaction // owned by the writer loop
	janitor *janitor

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
	purged     atomic.Uint64 // subjects of plain tombstones the janitor purged
	// caught: every message stored before it (Unix ns) has been folded;
	// needRebuild: the engine may have missed deletes (stale.go).
	caught      atomic.Int64
	needRebuild atomic.Bool
	wake        chan struct{} // wakes the writer loop to rebuild
	rebuilds    atomic.Uint64
	retried     atomic.Uint64 // writes retried after a failure with an unknown outcome
	refused     atomic.Uint64 // writes the server refused to store (answered at once)
	warn        *rateLog      // warnings that can repeat, at most one a second per cause
	markErrors  atomic.Uint64 // high-water marks that could not be stored
	// lost, when set, answers every write: the log lost acknowledged
	// events and the loss was not accepted (logloss.go).
	lost atomic.Pointer[Error]
	// readsWaiting counts reads waiting for the state to reach the log;
	// catchingUp is set while the writer loop waits for it.
	readsWaiting atomic.Int64
	catchingUp   atomic.Bool

	// Classify (classify.go) and dynamic sessions (session.go).
	classifiers     layerCache
	registered      registered
	classifying     chan struct{} // a slot per classify being answered
	calloutsAsked   atomic.Uint64
	leases          *leases
	heartbeats      atomic.Uint64
	sessionsExpired atomic.Uint64
	sweeps          atomic.Uint64 // session sweeps done, for tests
	expiring        atomic.Uint64 // abandoned sessions a sweep set out to end
	// agentDropped counts agent messages dropped unread (dropAgentMsg);
	// agentsGone, agent instances forgotten because a ping found them gone.
	agentDropped atomic.Uint64
	agentsGone   atomic.Uint64

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
	if cfg.Archive != "" {
		if _, err := jetstream.EnsureArchive(ctx, js, jetstream.ArchiveConfig{Name: cfg.Archive, Log: cfg.streamConfig()}); err != nil {
			return nil, err
		}
	}
	e := &Engine{
		cfg:      cfg,
		log:      cfg.Logger,
		subj:     events.Subjects{Prefix: cfg.Prefix},
		nc:       nc,
		js:       js,
		stream:   stream,
		progress: newProgress(),
		warn:     newRateLog(cfg.Logger, time.Second),
		state:    projection.New(), // sized below, once the stream's size is known
		agents:   newRegistry(),
		waits:    newWaits(),
		taken:    newTaken(),
		metrics:  newMetrics(),
		cmds:     make(chan *request, 4*cfg.MaxGroup),
		tail:     make(chan tailMsg, 4096),
		loopDone: make(chan struct{}),
		wake:     make(chan struct{}, 1),
		comp:     compaction{ttl: cfg.ttl(), archive: cfg.Archive},

		classifying: make(chan struct{}, maxClassifying),
		leases:      newLeases(cfg.clock),
	}
	e.registered = registered{agents: e.agents, ask: cfg.Classifier, asked: &e.calloutsAsked}
	if cfg.Classifier == nil {
		e.registered.ask = &agentClassifier{e: e, wait: events.AgentClassifyTimeout, fallback: InterimClassifier}
	}
	e.janitor = newJanitor(stream, js, cfg.Archive, cfg.Logger, cfg.WriteTimeout, func() { e.purged.Add(1) })
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("engine: stream info: %w", err)
	}
	// The log holds about one message per live filter (compaction), so its
	// message count sizes the state's maps.
	e.state = projection.NewSized(int(min(info.State.Msgs, 1<<24)))
	e.replicated = info.Config.Replicas > 1
	loss, err := e.checkLog(ctx)
	if err != nil {
		return nil, err
	}
	if loss != nil && cfg.AcceptLogLoss {
		if err := e.acceptLoss(ctx, loss); err != nil {
			return nil, err
		}
		if info, err = stream.Info(ctx); err != nil {
			return nil, fmt.Errorf("engine: stream info: %w", err)
		}
	} else if loss != nil {
		e.refuseWrites(loss)
	}
	// A fresh state misses no delete stored before its tail starts: the
	// roll-up took the add with it (see stale.go).
	e.caught.Store(time.Now().UnixNano())
	if err := e.startTail(ctx); err != nil {
		return nil, err
	}
	// Rebuild: fold until we have seen the log's last message as of now.
	rebuild := time.Now()
	stopProgress := progresslog.Start(e.log, "engine: rebuilding state from the log", info.State.LastSeq, cfg.ProgressInterval, e.folded.Load)
	err = e.catchUp(ctx, info.State.LastSeq, nil)
	stopProgress()
	if err != nil {
		e.stopTail()
		e.janitor.stop()
		return nil, fmt.Errorf("engine: rebuilding state from the log: %w", err)
	}
	loopCtx, stop := context.WithCancel(context.Background())
	e.stop = stop
	go e.loop(loopCtx)
	if err := e.listen(); err != nil {
		e.Close()
		return nil, fmt.Errorf("engine: agent registry: %w", err)
	}
	if err := e.listenSessions(); err != nil {
		e.Close()
		return nil, fmt.Errorf("engine: session heartbeats: %w", err)
	}
	if err := e.serve(); err != nil {
		e.Close()
		return nil, err
	}
	// Ready means the API's subscriptions have reached the server: a
	// request sent by anyone once Start returns finds an engine.
	if err := nc.FlushTimeout(cfg.WriteTimeout); err != nil {
		e.Close()
		return nil, fmt.Errorf("engine: registering the API with the server: %w", err)
	}
	go e.keepForListings()
	// The loop runs now and may be folding another engine's writes: read
	// the state under its lock.
	st := e.Stats()
	e.log.Info("engine ready", "stream", cfg.Stream, "prefix", cfg.Prefix,
		"seq", st.Seq, "filters", st.Filters, "callouts", st.Callouts, "skipped", st.Skipped,
		"rebuild", time.Since(rebuild).Round(time.Millisecond))
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
	_, err := e.openTail(ctx, natsjs.OrderedConsumerConfig{
		DeliverPolicy: natsjs.DeliverByStartSequencePolicy,
		OptStartSeq:   e.state.Seq() + 1,
	})
	return err
}

// openTail opens the tail consumer cfg asks for, as a new generation: the
// loop drops whatever an earlier one still delivers.
func (e *Engine) openTail(ctx context.Context, cfg natsjs.OrderedConsumerConfig) (natsjs.Consumer, error) {
	cons, err := e.js.OrderedConsumer(ctx, e.cfg.Stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("engine: tail consumer: %w", err)
	}
	gen := e.tailGen.Add(1)
	cc, err := cons.Consume(func(m natsjs.Msg) { e.decodeTail(gen, m) },
		natsjs.PullHeartbeat(tailHeartbeat),
		natsjs.ConsumeErrHandler(func(_ natsjs.ConsumeContext, err error) {
			e.warn.warn("engine: tail consumer", "err", err)
		}))
	if err != nil {
		return nil, fmt.Errorf("engine: tail consumer: %w", err)
	}
	e.tailMu.Lock()
	e.tailCtx = cc
	e.tailMu.Unlock()
	return cons, nil
}

// stopTail stops the tail consumer and drops what it delivered and the
// loop has not folded.
func (e *Engine) stopTail() {
	e.tailMu.Lock()
	cc := e.tailCtx
	e.tailCtx = nil
	e.tailMu.Unlock()
	e.tailGen.Add(1)
	if cc != nil {
		cc.Stop()
		// Its callback may be waiting to hand over a message: take them
		// until it has stopped.
	wait:
		for {
			select {
			case <-cc.Closed():
				break wait
			case <-e.tail:
			}
		}
	}
	for {
		select {
		case <-e.tail:
		default:
			return
		}
	}
}

// Close stops serving and writing at once. Commands still queued are
// answered with an error; adds waiting for agents are answered when their
// wait ends, but a refused one can no longer be taken back. See Shutdown.
func (e *Engine) Close() {
	e.closed.Do(func() {
		if e.svc != nil {
			_ = e.svc.stop()
		}
		for _, s := range e.subs {
			_ = s.Unsubscribe()
		}
		// Once Close returns the server routes no more requests here (they
		// would go unanswered): the unsubscriptions must have reached it.
		// A closed connection has nothing to flush.
		_ = e.nc.FlushTimeout(time.Second)
		if e.stop != nil {
			e.stop()
			<-e.loopDone
		}
		e.stopTail()
		e.janitor.stop()
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
	// Purged counts subjects of plain tombstones purged after the horizon;
	// PendingPurges, those waiting for it (see Config.Horizon).
	Purged        uint64 `json:"purged"`
	PendingPurges int    `json:"pendingPurges"`
	// Rebuilds counts the times the engine, away from the log for longer
	// than the horizon, rebuilt its state from a snapshot of the log.
	Rebuilds uint64 `json:"rebuilds"`
	// ClassifyCompiles counts compiles of a layer for classify (one per
	// layer change that a classify followed); CalloutsAsked, registered
	// callouts asked by classify.
	ClassifyCompiles uint64 `json:"classifyCompiles"`
	CalloutsAsked    uint64 `json:"calloutsAsked"`
	// Heartbeats counts session heartbeats heard; SessionsExpired, sessions
	// this engine ended as abandoned.
	Heartbeats      uint64 `json:"heartbeats"`
	SessionsExpired uint64 `json:"sessionsExpired"`
	// Retried counts writes tried again after a failure whose outcome was
	// unknown (a timeout, a lost connection); Refused, writes the server
	// refused to store (a full store), answered at once with ErrStorage.
	Retried uint64 `json:"retried"`
	Refused uint64 `json:"refused"`
	// LogLoss, when not empty, says which acknowledged events the log
	// lost: the engine refuses writes until the loss is accepted.
	LogLoss string `json:"logLoss,omitempty"`
	// MarkErrors counts high-water marks that could not be stored.
	MarkErrors uint64 `json:"markErrors"`
	// ReadsWaiting is the number of reads waiting, now, for the state to
	// fold writes the log already holds (the read barrier).
	ReadsWaiting int64 `json:"readsWaiting"`
	// CatchingUp is true while the writer waits for the state to fold
	// what the log already holds (after losing the fence, or before
	// refusing a command on a state that may be stale).
	CatchingUp bool `json:"catchingUp"`
	// AgentDropped counts agent messages the engine dropped: a body that
	// disagrees with its subject (an agent speaking for another callout or
	// agent id), a result that names no pending add of its callout, or
	// one malformed. AgentsGone counts agent instances forgotten because a
	// ping found them gone (killed, or replaced by a restart).
	AgentDropped uint64 `json:"agentDropped"`
	AgentsGone   uint64 `json:"agentsGone"`
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	e.mu.RLock()
	f, c := e.state.Len()
	seq := e.state.Seq()
	e.mu.RUnlock()
	st := Stats{Seq: seq, Filters: f, Callouts: c, Written: e.written.Load(),
		Fenced: e.fenced.Load(), Skipped: e.skipped.Load(), Rejected: e.rejected.Load(), Unanswered: e.unanswered.Load(),
		ReadsWaiting: e.readsWaiting.Load(), CatchingUp: e.catchingUp.Load(), Retried: e.retried.Load(), Refused: e.refused.Load(),
		MarkErrors:       e.markErrors.Load(),
		ClassifyCompiles: e.classifiers.compiles.Load(), CalloutsAsked: e.calloutsAsked.Load(),
		Heartbeats: e.heartbeats.Load(), SessionsExpired: e.sessionsExpired.Load(),
		AgentDropped: e.agentDropped.Load(), AgentsGone: e.agentsGone.Load(),
		Purged: e.purged.Load(), PendingPurges: e.janitor.pending(), Rebuilds: e.rebuilds.Load()}
	if l := e.lost.Load(); l != nil {
		st.LogLoss = l.Message
	}
	return st
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
	if l := e.lost.Load(); l != nil {
		return l
	}
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
