package jetstream

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/events"
)

// Defaults of StreamConfig: the wire contract's (package events).
const (
	DefaultStreamName = events.DefaultStream
	DefaultPrefix     = events.DefaultPrefix
	// DuplicateWindow is how long Nats-Msg-Id is remembered: a retried
	// publish inside it is recognised instead of being stored twice.
	DuplicateWindow = 2 * time.Minute
)

// StreamConfig names the event-log stream and its subject prefix.
type StreamConfig struct {
	Name     string // default "WFP"
	Prefix   string // subject prefix, default "wfp"
	Replicas int    // default 1
	// Horizon is how long a tombstone stays in the log before the server
	// removes it (its Nats-TTL), recorded in the stream's metadata
	// (events.MetaHorizon) for readers. 0 keeps tombstones for ever.
	// Whole seconds: it is rounded up.
	Horizon time.Duration
	// MaxConsumers caps the consumers on the stream (default
	// DefaultMaxConsumers). Set explicitly because nats-server otherwise
	// caps a stream at 1,000 (JSDefaultMaxConsumersPerStream; -1 does not
	// opt out). Durable agents hold one each; live and replay agents one
	// while they read a snapshot or catch up, none once live.
	MaxConsumers int
}

// DefaultMaxConsumers is StreamConfig.MaxConsumers' default.
const DefaultMaxConsumers = 100_000

// WithDefaults returns c with every zero field set to its default.
func (c StreamConfig) WithDefaults() StreamConfig {
	if c.Name == "" {
		c.Name = DefaultStreamName
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.Horizon < 0 {
		c.Horizon = 0
	}
	if c.MaxConsumers <= 0 {
		c.MaxConsumers = DefaultMaxConsumers
	}
	return c
}

// horizonMeta is the stream metadata value that records c.Horizon.
func (c StreamConfig) horizonMeta() string {
	if c.Horizon <= 0 {
		return "0"
	}
	return events.FormatTTL(c.Horizon)
}

// Subjects returns the stream's subjects (events.Subjects.Stream).
func (c StreamConfig) Subjects() []string {
	c = c.WithDefaults()
	return events.Subjects{Prefix: c.Prefix}.Stream()
}

func (c StreamConfig) validate() error {
	if err := events.ValidStreamName(c.Name); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if err := events.ValidPrefix(c.Prefix); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	return nil
}

// natsConfig is the full stream configuration we want. The log is the
// truth, so nothing may age it out or cap it: no limits, limits retention,
// discard old (never reached without limits, but the least surprising if an
// operator adds one). MaxMsgsPerSubject stays unlimited on purpose: with
// last-per-subject consumers it triggers a linear scan (nats-server #7821).
//
// Compaction is the writer's doing, message by message: a tombstone
// carries Nats-Rollup: sub (AllowRollup; the server refuses roll-ups on a
// stream that denies purge, so DenyPurge is owned too, and off; who may
// purge is left to permissions: only the engine's set has the stream API)
// and, with a horizon, Nats-TTL (AllowMsgTTL, which the server never lets a
// stream turn off again, so it is on whatever the horizon).
//
// Message delete is denied: nothing of ours deletes single messages (the
// janitor purges whole subjects), and an API client that could would cut
// a filter's history silently (the server then refuses it even to a user
// with the API right; it cannot be undone on a stream).
func (c StreamConfig) natsConfig() natsjs.StreamConfig {
	subj := events.Subjects{Prefix: c.Prefix}
	return natsjs.StreamConfig{
		Name:               c.Name,
		Description:        "WFP event log: filter and callout events (source of truth)",
		Subjects:           c.Subjects(),
		Retention:          natsjs.LimitsPolicy,
		Storage:            natsjs.FileStorage,
		Replicas:           c.Replicas,
		Discard:            natsjs.DiscardOld,
		MaxMsgs:            -1,
		MaxBytes:           -1,
		MaxAge:             0,
		MaxMsgsPerSubject:  -1,
		Duplicates:         DuplicateWindow,
		AllowAtomicPublish: true, // group commit and user transactions
		AllowDirect:        true, // cheap GetMsg / last-by-subject reads
		AllowRollup:        true, // a tombstone replaces its subject's history
		DenyPurge:          false,
		DenyDelete:         true,
		AllowMsgTTL:        true, // tombstones expire after the horizon
		Metadata:           map[string]string{events.MetaHorizon: c.horizonMeta()},
		MaxConsumers:       c.MaxConsumers,
		// Live agents read their callout's events as they are stored, on
		// core subscriptions, without a consumer each (events.Subjects.LiveFilters).
		RePublish: &natsjs.RePublish{Source: subj.LiveSource(), Destination: subj.LiveDestination()},
	}
}

// EnsureStream creates the stream, or updates it if it exists with
// different settings, idempotently. Only the settings this package owns are
// compared and imposed (see natsConfig); anything else an operator set on an
// existing stream (description, placement, deny-purge, ...) is kept.
// If the server refuses the update (for instance the storage type cannot
// change), the error says which settings differ.
func EnsureStream(ctx context.Context, js natsjs.JetStream, cfg StreamConfig) (natsjs.Stream, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	want := cfg.natsConfig()

	// Two processes may race to create the stream; the loser re-reads and
	// goes down the update path, so one retry is enough.
	for attempt := 0; ; attempt++ {
		s, err := js.Stream(ctx, cfg.Name)
		if errors.Is(err, natsjs.ErrStreamNotFound) {
			s, err = js.CreateStream(ctx, want)
			if errors.Is(err, natsjs.ErrStreamNameAlreadyInUse) && attempt == 0 {
				continue
			}
			if isAPIError(err, jsErrCodeSubjectsOverlap) {
				return nil, fmt.Errorf("jetstream: create stream %q: another stream already captures some of %v: %w",
					cfg.Name, want.Subjects, err)
			}
			if err != nil {
				return nil, fmt.Errorf("jetstream: create stream %q: %w", cfg.Name, err)
			}
			return s, nil
		}
		if err != nil {
			return nil, fmt.Errorf("jetstream: look up stream %q: %w", cfg.Name, err)
		}

		have := s.CachedInfo().Config
		diffs := configDiff(have, want)
		if len(diffs) == 0 {
			return s, nil
		}
		merged := have
		imposeOwned(&merged, want)
		s, err = js.UpdateStream(ctx, merged)
		if err != nil {
			hint := ""
			if have.DenyPurge {
				hint = " (compaction rolls up subjects, and roll-ups need the purge permission, which the server never gives back to a stream created with deny_purge: recreate the stream, or copy it into a new one)"
			}
			return nil, fmt.Errorf("jetstream: stream %q exists with different settings (%s) and the update was refused%s: %w",
				cfg.Name, strings.Join(diffs, "; "), hint, err)
		}
		return s, nil
	}
}

// jsErrCodeSubjectsOverlap is the server's "subjects overlap with an
// existing stream" (nats.go has no constant for it).
const jsErrCodeSubjectsOverlap natsjs.ErrorCode = 10065

func isAPIError(err error, code natsjs.ErrorCode) bool {
	var apiErr *natsjs.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == code
}

// imposeOwned copies the settings this package owns from want into dst.
func imposeOwned(dst *natsjs.StreamConfig, want natsjs.StreamConfig) {
	dst.Subjects = want.Subjects
	dst.Retention = want.Retention
	dst.Storage = want.Storage
	dst.Replicas = want.Replicas
	dst.Discard = want.Discard
	dst.MaxMsgs = want.MaxMsgs
	dst.MaxBytes = want.MaxBytes
	dst.MaxAge = want.MaxAge
	dst.MaxMsgsPerSubject = want.MaxMsgsPerSubject
	dst.Duplicates = want.Duplicates
	dst.AllowAtomicPublish = want.AllowAtomicPublish
	dst.AllowDirect = want.AllowDirect
	dst.AllowRollup = want.AllowRollup
	dst.DenyPurge = want.DenyPurge
	dst.DenyDelete = want.DenyDelete
	dst.MaxConsumers = want.MaxConsumers
	dst.RePublish = want.RePublish
	dst.AllowMsgTTL = want.AllowMsgTTL
	// Only our key: the server and operators keep metadata of their own.
	md := make(map[string]string, len(dst.Metadata)+1)
	maps.Copy(md, dst.Metadata)
	md[events.MetaHorizon] = want.Metadata[events.MetaHorizon]
	dst.Metadata = md
}

// configDiff lists, readably, the owned settings where have differs from
// want. The server normalises "unlimited" to -1, so 0 and -1 compare equal
// for the limits.
func configDiff(have, want natsjs.StreamConfig) []string {
	var d []string
	// check compares two values of one comparable type (as interfaces).
	check := func(name string, h, w any) {
		if h != w {
			d = append(d, fmt.Sprintf("%s %v, want %v", name, h, w))
		}
	}
	unl := func(v int64) int64 {
		if v <= 0 {
			return -1
		}
		return v
	}
	hs, ws := slices.Sorted(slices.Values(have.Subjects)), slices.Sorted(slices.Values(want.Subjects))
	if !slices.Equal(hs, ws) {
		d = append(d, fmt.Sprintf("subjects %v, want %v", hs, ws))
	}
	check("retention", have.Retention, want.Retention)
	check("storage", have.Storage, want.Storage)
	check("replicas", have.Replicas, want.Replicas)
	check("discard", have.Discard, want.Discard)
	check("max_msgs", unl(have.MaxMsgs), unl(want.MaxMsgs))
	check("max_bytes", unl(have.MaxBytes), unl(want.MaxBytes))
	check("max_msgs_per_subject", unl(have.MaxMsgsPerSubject), unl(want.MaxMsgsPerSubject))
	check("max_age", have.MaxAge, want.MaxAge)
	check("duplicate_window", have.Duplicates, want.Duplicates)
	check("allow_atomic", have.AllowAtomicPublish, want.AllowAtomicPublish)
	check("allow_direct", have.AllowDirect, want.AllowDirect)
	check("allow_rollup_hdrs", have.AllowRollup, want.AllowRollup)
	check("deny_purge", have.DenyPurge, want.DenyPurge)
	check("deny_delete", have.DenyDelete, want.DenyDelete)
	check("max_consumers", have.MaxConsumers, want.MaxConsumers)
	check("republish", fmt.Sprint(have.RePublish), fmt.Sprint(want.RePublish))
	check("allow_msg_ttl", have.AllowMsgTTL, want.AllowMsgTTL)
	check("metadata "+events.MetaHorizon, have.Metadata[events.MetaHorizon], want.Metadata[events.MetaHorizon])
	return d
}

// Horizon reads the tombstone horizon a stream records in its metadata
// (0: tombstones are kept for ever). Readers use it to know how long they
// may be away and still trust the log to show every delete.
func Horizon(info *natsjs.StreamInfo) (time.Duration, error) {
	if info == nil {
		return 0, nil
	}
	return events.ParseHorizon(info.Config.Metadata[events.MetaHorizon])
}
