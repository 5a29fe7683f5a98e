package jetstream

import (
	"context"
	"errors"
	"fmt"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/events"
)

// MirrorConfig describes a site's read-only copy of the event log: a
// JetStream mirror, on a leaf node in its own JetStream domain, of the
// stream the engine writes in the hub's domain. Agents at the site read
// the mirror exactly as they would read the log (a mirror keeps the
// origin's subjects and sequence numbers, so filter ids and the SDK's
// start positions mean the same), and snapshots and live traffic stay on
// the site's side of the leaf connection.
type MirrorConfig struct {
	// Name is the mirror stream at the site; default: the origin's name,
	// so agents there need no WithStream option.
	Name string
	// Origin is the stream mirrored; default DefaultStreamName.
	Origin string
	// OriginDomain is the JetStream domain of the origin (the hub's
	// jetstream.domain); required: without it the site would mirror a
	// stream of its own domain.
	OriginDomain string
	// Replicas of the mirror at the site (default 1).
	Replicas int
}

// WithDefaults returns c with every zero field set to its default.
func (c MirrorConfig) WithDefaults() MirrorConfig {
	if c.Origin == "" {
		c.Origin = DefaultStreamName
	}
	if c.Name == "" {
		c.Name = c.Origin
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	return c
}

func (c MirrorConfig) natsConfig() natsjs.StreamConfig {
	return natsjs.StreamConfig{
		Name:              c.Name,
		Description:       fmt.Sprintf("WFP event log: mirror of %s in domain %s", c.Origin, c.OriginDomain),
		Mirror:            &natsjs.StreamSource{Name: c.Origin, Domain: c.OriginDomain},
		Retention:         natsjs.LimitsPolicy,
		Storage:           natsjs.FileStorage,
		Replicas:          c.Replicas,
		Discard:           natsjs.DiscardOld,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxMsgsPerSubject: -1,
		AllowDirect:       true,
		// The log compacts (see LogConfig): a mirror applies a delete's
		// roll-up and expires its TTL only when it allows them too, and
		// would otherwise keep every add a delete replaced. (The engine's
		// janitor purges on the origin are not mirrored: a plain
		// tombstone stays at the site with the add before it, which a
		// last-per-subject read reads as the delete it is.)
		AllowRollup: true,
		AllowMsgTTL: true,
	}
}

// ErrNotAMirror is returned (wrapped) by EnsureMirror when a stream of the
// mirror's name exists at the site and is not a mirror of the origin: it
// is never converted.
var ErrNotAMirror = errors.New("jetstream: stream exists and is not that mirror")

// EnsureMirror creates the mirror at the site js reaches (a connection to
// the leaf node, in the site's domain), or checks the one there. An
// existing mirror of the same origin is kept, its replica count updated if
// it differs; any other stream of that name is ErrNotAMirror.
func EnsureMirror(ctx context.Context, js natsjs.JetStream, cfg MirrorConfig) (natsjs.Stream, error) {
	cfg = cfg.WithDefaults()
	if cfg.OriginDomain == "" {
		return nil, errors.New("jetstream: a mirror needs the origin's JetStream domain")
	}
	for _, name := range []string{cfg.Name, cfg.Origin} {
		if err := events.ValidStreamName(name); err != nil {
			return nil, fmt.Errorf("jetstream: %w", err)
		}
	}
	want := cfg.natsConfig()
	s, err := js.Stream(ctx, cfg.Name)
	if errors.Is(err, natsjs.ErrStreamNotFound) {
		s, err = js.CreateStream(ctx, want)
		if err != nil {
			return nil, fmt.Errorf("jetstream: create mirror %q of %q in domain %q: %w", cfg.Name, cfg.Origin, cfg.OriginDomain, err)
		}
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("jetstream: look up stream %q: %w", cfg.Name, err)
	}
	have := s.CachedInfo().Config
	if m := have.Mirror; m == nil || m.Name != cfg.Origin || m.External == nil || m.External.APIPrefix != "$JS."+cfg.OriginDomain+".API" {
		return nil, fmt.Errorf("%w: %q is not a mirror of %q in domain %q", ErrNotAMirror, cfg.Name, cfg.Origin, cfg.OriginDomain)
	}
	if have.Replicas == cfg.Replicas && have.AllowRollup && have.AllowMsgTTL && !have.DenyPurge {
		return s, nil
	}
	old := have
	have.Replicas, have.AllowRollup, have.AllowMsgTTL, have.DenyPurge = cfg.Replicas, true, true, false
	if s, err = js.UpdateStream(ctx, have); err != nil {
		return nil, fmt.Errorf("jetstream: mirror %q: replicas %d, want %d; roll-ups and TTLs allowed: %v, %v, want both; the update was refused: %w",
			cfg.Name, old.Replicas, cfg.Replicas, old.AllowRollup, old.AllowMsgTTL, err)
	}
	return s, nil
}
