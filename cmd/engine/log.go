package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/events"
)

// logLine is one log message as `engine events` prints it: the decoded
// event with where it sits in the stream, or why it could not be decoded.
type logLine struct {
	Seq     uint64    `json:"seq"`
	Subject string    `json:"subject"`
	Stored  time.Time `json:"stored"`
	*events.Event
	// Gap marks a gap filler: a sequence skipped after an accepted log
	// loss, no event.
	Gap   bool   `json:"gap,omitempty"`
	Error string `json:"error,omitempty"`
}

// eventsCmd prints the log as JSON lines, one per message, from a sequence
// on: the log up to now, then (with --follow) everything new.
func eventsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("events", stderr)
	var c conn
	c.register(fs)
	stream := fs.String("stream", events.DefaultStream, "stream holding the event log")
	callout := fs.String("callout", "", "only events of filters naming this callout key")
	from := fs.Uint64("from-seq", 0, "start at this stream sequence (default: the beginning)")
	follow := fs.Bool("follow", false, "keep printing new events until interrupted")
	fs.Bool("json", true, "print JSON lines (the only format; accepted for symmetry)")
	if err := parse(fs, args); err != nil {
		return err
	}
	subj := events.Subjects{Prefix: c.prefix}
	filter := subj.Stream()
	if *callout != "" {
		key, err := events.ParseKey(*callout)
		if err != nil {
			return fmt.Errorf("--callout: %v", err)
		}
		filter = []string{subj.CalloutFilters(key)}
	}
	cfg := natsjs.OrderedConsumerConfig{FilterSubjects: filter, DeliverPolicy: natsjs.DeliverAllPolicy}
	if *from > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = natsjs.DeliverByStartSequencePolicy, *from
	}

	nc, err := c.dial()
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		return err
	}
	cons, err := js.OrderedConsumer(ctx, *stream, cfg)
	if err != nil {
		return fmt.Errorf("stream %s: %w", *stream, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	defer it.Stop()
	// The consumer's pending count at creation is how much log there is to
	// print; without --follow we stop after that many.
	var remaining uint64
	if info := cons.CachedInfo(); info != nil {
		remaining = info.NumPending
	}
	go func() { <-ctx.Done(); it.Stop() }()

	enc := json.NewEncoder(stdout)
	for *follow || remaining > 0 {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		remaining--
		line := logLine{Subject: m.Subject()}
		if meta, err := m.Metadata(); err == nil {
			line.Seq, line.Stored = meta.Sequence.Stream, meta.Timestamp.UTC()
		}
		if m.Subject() == subj.Gap() {
			line.Gap = true
		} else if ev, err := events.Decode(m.Data()); err != nil {
			line.Error = err.Error()
		} else {
			line.Event = ev
			if !ev.Known() {
				line.Error = "unknown event type or schema"
			}
		}
		if err := enc.Encode(line); err != nil {
			return err
		}
	}
	return nil
}

// decode turns one event payload on stdin into JSON, for
// `nats sub --translate 'engine decode'`.
func decode(stdin io.Reader, stdout io.Writer) error {
	data, err := io.ReadAll(stdin)
	if err != nil {
		return err
	}
	ev, err := events.Decode(data)
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(ev)
}
