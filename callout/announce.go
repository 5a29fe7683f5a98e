package callout

import (
	"context"
	"encoding/json"
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
// lists at once and a killed one when its announcements stop (AgentTTL).
// It runs on core NATS: liveness, not history.
type announcer struct {
	nc      *nats.Conn
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

	sub      *nats.Subscription
	quit     chan struct{}
	exited   chan struct{}
	stopOnce sync.Once
}

// startAnnouncer announces the agent, waits until the server has the
// announcement (bounded by ctx), and starts answering probes and
// re-announcing.
//
// A quiet announcer sends nothing until activate.
func startAnnouncer(ctx context.Context, nc *nats.Conn, subj events.Subjects, ann events.Announcement, quiet bool, log *slog.Logger) (*announcer, error) {
	a := &announcer{
		quiet:   quiet,
		nc:      nc,
		subject: subj.Agent(ann.CalloutKey, ann.AgentID),
		log:     log,
		every:   events.AnnounceInterval,
		ann:     ann,
		quit:    make(chan struct{}),
		exited:  make(chan struct{}),
	}
	sub, err := nc.Subscribe(subj.AgentProbe(), func(*nats.Msg) { a.alive() })
	if err != nil {
		return nil, fmt.Errorf("callout: subscribe to agent probes: %w", err)
	}
	a.sub = sub
	if err := a.send(events.AgentAlive); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("callout: announce agent: %w", err)
	}
	// The flush also makes the probe subscription known to the server.
	// (FlushWithContext insists on a deadline.)
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, apiTimeout)
		defer cancel()
	}
	if err := nc.FlushWithContext(ctx); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("callout: announce agent: %w", err)
	}
	go a.loop()
	return a, nil
}

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
// confirmed: engines then forget the agent only after events.AgentTTL.
// Idempotent (later calls return nil); on a closed connection it only
// stops.
func (a *announcer) stop(ctx context.Context) error {
	var err error
	a.stopOnce.Do(func() {
		close(a.quit)
		<-a.exited
		_ = a.sub.Unsubscribe()
		// A probe answer still running after the unsubscribe finds bye set.
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
