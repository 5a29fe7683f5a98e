package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/events"
)

// ArchiveConfig is a stream that keeps the log's full history: it sources
// the event-log stream and neither rolls up nor expires anything, so
// every event stays, also the adds a delete rolled up in the log and the
// tombstones the horizon removed. It is for audit and `engine events
// --archive`; nothing in the system reads it to decide anything.
//
// A sourced copy keeps each message's subject, payload and headers
// (Nats-Rollup and Nats-TTL included: the archive ignores them, because it
// allows neither) and adds Nats-Stream-Source; the fence and batch
// headers are dropped by the server. It gets its own sequences: an event's
// sequence in the log (and so a filter's id) is in its payload and its
// Wfp-Filter-Id header, not in the archive's sequence.
type ArchiveConfig struct {
	Name string       // the archive stream; required
	Log  StreamConfig // the event-log stream it sources
}

func (c ArchiveConfig) natsConfig() natsjs.StreamConfig {
	lc := c.Log.WithDefaults()
	return natsjs.StreamConfig{
		Name:        c.Name,
		Description: "WFP event log archive: every event of " + lc.Name + ", never compacted",
		Sources:     []*natsjs.StreamSource{{Name: lc.Name}},
		Retention:   natsjs.LimitsPolicy,
		Storage:     natsjs.FileStorage,
		Replicas:    lc.Replicas,
		Discard:     natsjs.DiscardOld,
		MaxMsgs:     -1,
		MaxBytes:    -1,
		MaxAge:      0,
		// History is the point: no roll-ups, no TTLs, no deletes, no purge.
		AllowRollup: false,
		AllowMsgTTL: false,
		DenyDelete:  true,
		DenyPurge:   true,
		AllowDirect: true,
	}
}

// EnsureArchive creates the archive stream if it is missing. An existing
// stream of that name must source the log and allow neither roll-ups nor
// TTLs (or it would not be an archive); other settings are the
// operator's. It never deletes or purges anything.
func EnsureArchive(ctx context.Context, js natsjs.JetStream, cfg ArchiveConfig) (natsjs.Stream, error) {
	if err := events.ValidStreamName(cfg.Name); err != nil {
		return nil, fmt.Errorf("jetstream: archive: %w", err)
	}
	lc := cfg.Log.WithDefaults()
	if cfg.Name == lc.Name {
		return nil, fmt.Errorf("jetstream: archive %q: it cannot be the log itself", cfg.Name)
	}
	want := cfg.natsConfig()
	s, err := js.Stream(ctx, cfg.Name)
	if errors.Is(err, natsjs.ErrStreamNotFound) {
		s, err = js.CreateStream(ctx, want)
		if errors.Is(err, natsjs.ErrStreamNameAlreadyInUse) {
			s, err = js.Stream(ctx, cfg.Name)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("jetstream: archive %q: %w", cfg.Name, err)
	}
	have := s.CachedInfo().Config
	sourced := false
	for _, src := range have.Sources {
		sourced = sourced || (src != nil && src.Name == lc.Name && src.FilterSubject == "" && len(src.SubjectTransforms) == 0)
	}
	switch {
	case !sourced:
		return nil, fmt.Errorf("jetstream: stream %q exists but does not source all of %q: not an archive", cfg.Name, lc.Name)
	case have.AllowRollup || have.AllowMsgTTL:
		return nil, fmt.Errorf("jetstream: stream %q allows roll-ups (%v) or message TTLs (%v): it would compact like the log, not keep history",
			cfg.Name, have.AllowRollup, have.AllowMsgTTL)
	}
	return s, nil
}

// HeaderStreamSource is the header the server puts on a sourced message:
// "<stream> <sequence> ..." with the message's stream and sequence at the
// origin.
const HeaderStreamSource = "Nats-Stream-Source"

// ArchivedThrough is the log sequence the archive has sourced up to: the
// origin sequence of its newest message, 0 when it is empty. Everything
// the log held at or below it when the archive read it is in the archive.
//
// A roll-up in the log must wait for it: sourcing is a consumer that reads
// the log after the fact, so an add that a delete rolls up before the
// archive read it never reaches the archive (measured: a burst of 20,000
// add-then-delete pairs left 147 of the adds in an archive that sourced
// them live).
func ArchivedThrough(ctx context.Context, js natsjs.JetStream, archive string) (uint64, error) {
	s, err := js.Stream(ctx, archive)
	if err != nil {
		return 0, fmt.Errorf("jetstream: archive %q: %w", archive, err)
	}
	last := s.CachedInfo().State.LastSeq
	if last == 0 {
		return 0, nil
	}
	m, err := s.GetMsg(ctx, last)
	if errors.Is(err, natsjs.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("jetstream: archive %q: %w", archive, err)
	}
	return SourceSeq(m.Header.Get(HeaderStreamSource))
}

// ArchiveName is the archive's name by convention: the log's, with
// "_ARCHIVE" after it.
func ArchiveName(log string) string { return log + "_ARCHIVE" }

// SourceSeq reads the origin sequence of a Nats-Stream-Source value.
func SourceSeq(v string) (uint64, error) {
	f := strings.Fields(v)
	if len(f) < 2 {
		return 0, fmt.Errorf("jetstream: %s %q: no sequence", HeaderStreamSource, v)
	}
	n, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("jetstream: %s %q: %w", HeaderStreamSource, v, err)
	}
	return n, nil
}
