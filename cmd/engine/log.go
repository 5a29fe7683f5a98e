package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/jetstream"
)

// logLine is one log message as `engine events` prints it: the decoded
// event with where it sits in the stream, or why it could not be decoded.
// Read from the archive, Seq is still the event's sequence in the log
// (its filter id, for an add) and ArchiveSeq its place in the archive.
type logLine struct {
	Seq        uint64    `json:"seq"`
	ArchiveSeq uint64    `json:"archiveSeq,omitempty"`
	Subject    string    `json:"subject"`
	Stored     time.Time `json:"stored"`
	*events.Event
	Error string `json:"error,omitempty"`
}

// idleCheck is how long `engine events` waits for the next message before
// it asks the server whether any is left: messages counted at the start
// may have left since (a delete rolled them up, the horizon passed).
const idleCheck = 250 * time.Millisecond

// eventsCmd prints the log as JSON lines, one per message, from a sequence
// on: the log up to now, then (with --follow) everything new. The log is
// compacted (a delete replaces its filter's add, and leaves after the
// horizon); --archive reads the archive stream, which keeps every event.
func eventsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("events", stderr)
	var c conn
	c.register(fs)
	stream := fs.String("stream", events.DefaultStream, "stream holding the event log")
	callout := fs.String("callout", "", "only events of filters naming this callout key")
	from := fs.Uint64("from-seq", 0, "start at this log sequence (default: the beginning)")
	follow := fs.Bool("follow", false, "keep printing new events until interrupted")
	archive := fs.Bool("archive", false, "read the archive stream (every event, none compacted away), which the engine keeps when served with --archive")
	archiveName := fs.String("archive-stream", "", "the archive stream's name (default: the log stream's name + \"_ARCHIVE\")")
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
	read := *stream
	cfg := natsjs.OrderedConsumerConfig{FilterSubjects: filter, DeliverPolicy: natsjs.DeliverAllPolicy}
	if *archive || *archiveName != "" {
		read = jetstream.ArchiveName(*stream)
		if *archiveName != "" {
			read = *archiveName
		}
		// Archive sequences are not log sequences: --from-seq filters below.
	} else if *from > 0 {
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
	cons, err := js.OrderedConsumer(ctx, read, cfg)
	if err != nil {
		return fmt.Errorf("stream %s: %w", read, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	defer it.Stop()
	go func() { <-ctx.Done(); it.Stop() }()

	enc := json.NewEncoder(stdout)
	// The consumer's pending count at creation is how much log there is
	// to print; without --follow we stop after that many, or sooner when
	// the server has nothing left (some of them left the stream meanwhile).
	remaining := uint64(1)
	if info := cons.CachedInfo(); info != nil {
		remaining = info.NumPending
	}
	for *follow || remaining > 0 {
		m, err := it.Next(natsjs.NextMaxWait(idleCheck))
		if errors.Is(err, nats.ErrTimeout) {
			if !*follow && drained(ctx, cons) {
				return nil
			}
			continue
		}
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
			if meta.NumPending == 0 {
				remaining = 0
			}
		}
		if read != *stream {
			line.ArchiveSeq = line.Seq
			line.Seq, _ = jetstream.SourceSeq(m.Headers().Get(jetstream.HeaderStreamSource))
			if line.Seq < *from {
				continue
			}
		}
		if ev, err := events.Decode(m.Data()); err != nil {
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

// drained reports whether the consumer has nothing left to deliver.
func drained(ctx context.Context, cons natsjs.Consumer) bool {
	info, err := cons.Info(ctx)
	return err == nil && info.NumPending == 0
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
