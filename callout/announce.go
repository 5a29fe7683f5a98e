package callout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/wfpnats/wfp/events"
)

// announcer keeps the agent in the engines' registries (events' agent
// protocol): an Announcement when the agent registers, every
// events.AnnounceInterval after, at once when an engine probes, and a
// "bye" when it closes, so a cleanly closed agent leaves the engines'
// lists at once and a killed one when its announcements stop (AgentTTL),
// or as soon as an engine asks it directly and nobody answers. It also
// holds the agent id: it answers pings for the id and for its instance.
// It runs on core NATS: liveness, not history.
type announcer struct {
	nc      *nats.Conn
	subj    events.Subjects
	subject string
	log     *slog.Logger
	every   time.Duration

	mu  sync.Mutex // orders publishes against the bye
	ann events.Announcement
	bye bool // sent: no "alive" may follow it
	// quiet holds the announcements back until activate: a replay agent
	// counts for R7 only once it has synced, so adds made while it reads
	// its snapshot do not wait on an agent that cannot answer them yet.
	quiet bool
	// claimed: the id is ours; until then pings are answered "starting",
	// and the other instances heard from are kept in rivals.
	claimed bool
	rivals  map[string]events.Announcement

	subs     []*nats.Subscription
	quit     chan struct{}
	exited   chan struct{}
	started  bool
	stopOnce sync.Once
}

// claimWindow is how long, after its own answer came back, a starting
// instance listens for the answers of others that subscribed at the same
// time; claimTimeout bounds the wait for an answer from a holder.
var (
	claimWindow  = 100 * time.Millisecond
	claimTimeout = 2 * time.Second
)

// claim makes sure no other running instance holds the agent id, and
// holds it: one running agent per id (ErrAgentIDInUse otherwise).
//
// It asks the id's ping subject first: NATS answers "no responders" at
// once when nobody holds it (a killed instance's subscription died with
// its connection, so a restart gets the id at once), while a running
// instance answers. Then it subscribes, and asks again with its own
// announcement, to catch an instance that started at the same moment:
// every instance that subscribed before that second ping hears it and
// answers, and each learns of the other. An instance that has registered
// wins; between two that are starting, the smaller instance id wins, and
// both reach the same verdict. (Engines do not depend on this: they keep
// instances apart, so two that slip through still each have their say.)
//
// The verdict takes a moment (claimWindow) after the first ping showed
// that no running instance holds the id: claim returns then, and settle
// waits for the verdict, so the caller may prepare meanwhile what only a
// simultaneous start could disturb (an error from settle means the id is
// another's: the caller releases the announcer).
func claim(ctx context.Context, nc *nats.Conn, subj events.Subjects, ann events.Announcement, log *slog.Logger) (a *announcer, settle func() error, err error) {
	a = &announcer{
		nc:      nc,
		subj:    subj,
		subject: subj.Agent(ann.CalloutKey, ann.AgentID),
		log:     log,
		every:   events.AnnounceInterval,
		ann:     ann,
		rivals:  map[string]events.Announcement{},
		quit:    make(chan struct{}),
		exited:  make(chan struct{}),
	}
	ping := subj.AgentPing(ann.CalloutKey, ann.AgentID)
	if err := a.askHolder(ctx, ping); err != nil {
		return nil, nil, err
	}
	for _, s := range []string{ping, subj.AgentInstancePing(ann.CalloutKey, ann.AgentID, ann.Instance)} {
		sub, err := nc.Subscribe(s, a.onPing)
		if err != nil {
			a.release()
			return nil, nil, fmt.Errorf("callout: subscribe to %s: %w", s, err)
		}
		a.subs = append(a.subs, sub)
	}
	verdict := make(chan error, 1)
	go func() { verdict <- a.recheck(ctx, ping) }()
	return a, func() error { return <-verdict }, nil
}

// askHolder asks whether an instance holds the id, with an empty ping
// (an instance that only asks is nobody's rival).
func (a *announcer) askHolder(ctx context.Context, ping string) error {
	ctx, cancel := context.WithTimeout(ctx, claimTimeout)
	defer cancel()
	m, err := a.nc.RequestWithContext(ctx, ping, nil)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return nil
	case err != nil:
		return fmt.Errorf("%w: agent id %q of callout %s: no answer on %s (%v): another instance may hold it, or "+
			"this connection may not use that subject or its own inbox (see events.Subjects.AgentInbox)",
			ErrAgentIDInUse, a.ann.AgentID, a.ann.CalloutKey, ping, err)
	}
	var holder events.Announcement
	_ = json.Unmarshal(m.Data, &holder)
	return inUse(a.ann, holder)
}

func inUse(me, holder events.Announcement) error {
	return fmt.Errorf("%w: agent id %q of callout %s is held by a running instance (%s, %s mode, %s); "+
		"stop it first or choose another agent id", ErrAgentIDInUse, me.AgentID, me.CalloutKey, holder.Instance, holder.Mode, holder.Status)
}

// recheck pings the id with our own announcement once we hold its
// subscription, and settles who keeps it (see claim).
func (a *announcer) recheck(ctx context.Context, ping string) error {
	starting := a.ann
	starting.Status = events.AgentStarting
	body, err := json.Marshal(starting)
	if err != nil {
		return err
	}
	inbox := a.nc.NewInbox()
	answers, err := a.nc.SubscribeSync(inbox)
	if err != nil {
		return fmt.Errorf("callout: claim agent id: %w", err)
	}
	defer func() { _ = answers.Unsubscribe() }()
	if err := a.nc.PublishRequest(ping, inbox, body); err != nil {
		return fmt.Errorf("callout: claim agent id: %w", err)
	}
	wait, cancel := context.WithTimeout(ctx, claimTimeout)
	defer cancel()
	var others []events.Announcement
	own := false
	for {
		m, err := answers.NextMsgWithContext(wait)
		if err != nil {
			if own && ctx.Err() == nil {
				return a.settle(others) // the window is over
			}
			return fmt.Errorf("%w: agent id %q of callout %s: own ping not answered (%v): this connection may not "+
				"subscribe to %s or use its own inbox", ErrAgentIDInUse, a.ann.AgentID, a.ann.CalloutKey, err, ping)
		}
		var got events.Announcement
		if json.Unmarshal(m.Data, &got) != nil {
			continue
		}
		if got.Instance != a.ann.Instance {
			others = append(others, got)
		} else if !own {
			// Our ping went round: whoever subscribed before it has it
			// too, and answers within moments.
			own = true
			var c context.CancelFunc
			wait, c = context.WithTimeout(ctx, claimWindow)
			defer c()
		}
	}
}

// settle decides whether the id is ours, from the answers to our ping
// and the pings of other starting instances; see claim.
func (a *announcer) settle(answers []events.Announcement) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range a.rivals {
		answers = append(answers, r)
	}
	for _, o := range answers {
		if o.Status != events.AgentStarting || o.Instance < a.ann.Instance {
			return inUse(a.ann, o)
		}
	}
	a.claimed = true
	a.rivals = nil
	return nil
}

// onPing answers a ping for the id or the instance. A ping that carries
// an announcement comes from another instance claiming the same id: it
// is a rival until the claim is settled.
func (a *announcer) onPing(m *nats.Msg) {
	var from events.Announcement
	if len(m.Data) > 0 && json.Unmarshal(m.Data, &from) == nil && from.Instance != "" {
		a.mu.Lock()
		if !a.claimed && from.Instance != a.ann.Instance {
			a.rivals[from.Instance] = from
		}
		a.mu.Unlock()
	}
	if m.Reply == "" {
		return
	}
	a.mu.Lock()
	ans := a.ann
	if !a.claimed {
		ans.Status = events.AgentStarting
	}
	a.mu.Unlock()
	if data, err := json.Marshal(ans); err == nil {
		_ = m.Respond(data)
	}
}

// start announces the agent, waits until the server has the
// announcement (bounded by ctx), and starts answering probes and
// re-announcing. A quiet announcer sends nothing until activate.
func (a *announcer) start(ctx context.Context, quiet bool) error {
	a.quiet = quiet
	sub, err := a.nc.Subscribe(a.subj.AgentProbe(), func(*nats.Msg) { a.alive() })
	if err != nil {
		return fmt.Errorf("callout: subscribe to agent probes: %w", err)
	}
	a.subs = append(a.subs, sub)
	if err := a.send(events.AgentAlive); err != nil {
		return fmt.Errorf("callout: announce agent: %w", err)
	}
	// The flush also makes the probe subscription known to the server.
	// (FlushWithContext insists on a deadline.)
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, apiTimeout)
		defer cancel()
	}
	if err := a.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("callout: announce agent: %w", err)
	}
	a.started = true
	go a.loop()
	return nil
}

// release gives the id up without a word: for a registration that
// failed before it announced anything.
func (a *announcer) release() {
	for _, s := range a.subs {
		_ = s.Unsubscribe()
	}
	a.subs = nil
}

// hold keeps sub with the agent id: release and stop end it too.
func (a *announcer) hold(sub *nats.Subscription) { a.subs = append(a.subs, sub) }

func (a *announcer) loop() {
	defer close(a.exited)
	t := time.NewTicker(a.every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			a.alive()
		case <-a.quit:
			return
		}
	}
}

// activate ends the quiet and announces at once.
func (a *announcer) activate() {
	a.mu.Lock()
	a.quiet = false
	a.mu.Unlock()
	a.alive()
}

func (a *announcer) alive() {
	if err := a.send(events.AgentAlive); err != nil {
		a.log.Debug("announcement not sent", "err", err)
	}
}

func (a *announcer) send(status string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.bye {
		return nil
	}
	if a.quiet && status == events.AgentAlive {
		return nil
	}
	m := a.ann
	m.Status = status
	a.bye = status == events.AgentBye
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return a.nc.Publish(a.subject, data)
}

// stop ends the announcements with a "bye" and waits (bounded by ctx)
// until the server has it. It reports a bye that could not be sent or
// confirmed: engines then forget the agent only after events.AgentTTL,
// or when an add finds it gone. Idempotent (later calls return nil); on a
// closed connection it only stops.
func (a *announcer) stop(ctx context.Context) error {
	var err error
	a.stopOnce.Do(func() {
		if a.started {
			close(a.quit)
			<-a.exited
		}
		// The id is free once the server has the unsubscribes; the flush
		// below waits for them with the bye. A ping answer still running
		// after the unsubscribe finds bye set.
		a.release()
		if a.nc.IsClosed() {
			err = fmt.Errorf("callout: bye not sent, the connection is closed; engines forget this agent after %v", events.AgentTTL)
			return
		}
		if err = a.send(events.AgentBye); err == nil {
			if _, ok := ctx.Deadline(); !ok { // FlushWithContext insists on one
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, apiTimeout)
				defer cancel()
			}
			err = a.nc.FlushWithContext(ctx)
		}
		if err != nil {
			err = fmt.Errorf("callout: bye not confirmed by the server (%w); engines forget this agent after %v", err, events.AgentTTL)
		}
	})
	return err
}
