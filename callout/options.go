package callout

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/progress"
)

// Option configures Register.
type Option func(*options) error

type options struct {
	mode       Mode
	durable    string
	agentID    string
	postCommit bool
	classifier Classifier
	stream     string
	prefix     string
	log        *slog.Logger
	backoffMin time.Duration
	backoffMax time.Duration
	// progressInterval is how often a long replay logs how far it is.
	progressInterval time.Duration
}

func defaultOptions() options {
	return options{
		mode:   Live,
		stream: events.DefaultStream,
		prefix: events.DefaultPrefix,
		log:    slog.Default(),
		// Between attempts to get a lost consumer back.
		backoffMin: 100 * time.Millisecond,
		backoffMax: 5 * time.Second,

		progressInterval: progress.DefaultInterval,
	}
}

// WithMode selects Live (default) or Replay.
func WithMode(m Mode) Option {
	return func(o *options) error {
		if m != Live && m != Replay {
			return fmt.Errorf("%w: unknown mode %d", ErrInvalidOption, int(m))
		}
		o.mode = m
		return nil
	}
}

// WithDurable makes a live agent read through a durable consumer of that
// name, so a restarted agent resumes where it stopped instead of at "now".
// Replay rebuilds from the log every time and has nothing to resume, so the
// combination is refused. One durable name serves one running agent: a
// second agent registering under the same name takes the consumer over.
// The name follows events.ValidName (it appears in permissions).
func WithDurable(name string) Option {
	return func(o *options) error {
		if err := events.ValidName("durable name", name); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidOption, err)
		}
		o.durable = name
		return nil
	}
}

// WithAgentID names the agent in its announcements and notify results
// (events.Announcement, events.NotifyResult), its subjects, its inbox
// prefix and its consumer's name (events.AgentConsumer); engines list
// agents by it. One running instance per id: Register fails with
// ErrAgentIDInUse while another holds it. It follows events.ValidName.
// Default: a new UUID per Register.
func WithAgentID(id string) Option {
	return func(o *options) error {
		if err := events.ValidName("agent id", id); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidOption, err)
		}
		o.agentID = id
		return nil
	}
}

// WithPostCommit asks for AddFilterPostCommit (R8): once every notification
// of a transaction has been delivered, the handler is called again with
// AddFilterPostCommit for each filter the transaction added that the agent
// holds. The agent says so in its announcements.
func WithPostCommit() Option {
	return func(o *options) error {
		o.postCommit = true
		return nil
	}
}

// WithStream names the event-log stream and the prefix of its subjects, as
// the engine was started with; an empty string keeps the default
// (events.DefaultStream "WFP", events.DefaultPrefix "wfp").
func WithStream(name, prefix string) Option {
	return func(o *options) error {
		if name != "" {
			if err := events.ValidStreamName(name); err != nil {
				return fmt.Errorf("%w: %v", ErrInvalidOption, err)
			}
			o.stream = name
		}
		if prefix != "" {
			if err := events.ValidPrefix(prefix); err != nil {
				return fmt.Errorf("%w: %v", ErrInvalidOption, err)
			}
			o.prefix = prefix
		}
		return nil
	}
}

// WithLogger sets where the agent logs; default slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return fmt.Errorf("%w: nil logger", ErrInvalidOption)
		}
		o.log = l
		return nil
	}
}

// WithProgressInterval sets how often a replay that takes long logs how
// far it is: snapshot messages done of total, and the rate (default 5 s;
// 0 or less: never).
func WithProgressInterval(d time.Duration) Option {
	return func(o *options) error {
		o.progressInterval = d
		return nil
	}
}

// backoff yields the successive waits min, 2·min, ... capped at max.
type backoff struct{ min, next, max time.Duration }

func (o *options) newBackoff() *backoff {
	return &backoff{min: o.backoffMin, next: o.backoffMin, max: o.backoffMax}
}

func (b *backoff) wait() time.Duration {
	d := b.next
	b.next = min(2*b.next, b.max)
	return d
}

func (b *backoff) reset() { b.next = b.min }
