package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

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
//
// It reads with batched direct gets, not a consumer: a read-only operator
// changes nothing on the server, and its permissions need no consumer
// rights (which could not be narrowed to its own consumers).
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
	var opts []jetstreamext.GetBatchOpt
	if *callout != "" {
		key, err := events.ParseKey(*callout)
		if err != nil {
			return fmt.Errorf("--callout: %v", err)
		}
		opts = append(opts, jetstreamext.GetBatchSubject(events.Subjects{Prefix: c.prefix}.CalloutFilters(key)))
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
	enc := json.NewEncoder(stdout)
	next := max(*from, 1)
	for {
		n, err := printBatch(ctx, js, *stream, next, opts, events.Subjects{Prefix: c.prefix}.Gap(), enc)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if n.count > 0 {
			next = n.last + 1
			continue
		}
		// Caught up with the log.
		if !*follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(followPoll):
		}
	}
}

// followPoll is how often --follow asks for what is new.
const followPoll = 200 * time.Millisecond

// eventsBatch is how many messages one direct get answers at most.
const eventsBatch = 256

type batchRead struct {
	count int
	last  uint64 // stream sequence of the last message printed
}

// printBatch prints up to eventsBatch messages from sequence seq on.
// gap is the subject of gap fillers, printed as such (PROTOCOL.md).
func printBatch(ctx context.Context, js natsjs.JetStream, stream string, seq uint64, opts []jetstreamext.GetBatchOpt, gap string, enc *json.Encoder) (batchRead, error) {
	var r batchRead
	msgs, err := jetstreamext.GetBatch(ctx, js, stream, eventsBatch, append([]jetstreamext.GetBatchOpt{jetstreamext.GetBatchSeq(seq)}, opts...)...)
	if err != nil {
		return r, fmt.Errorf("stream %s: %w", stream, err)
	}
	for m, err := range msgs {
		if errors.Is(err, jetstreamext.ErrNoMessages) {
			return r, nil
		}
		if err != nil {
			return r, fmt.Errorf("stream %s: %w", stream, err)
		}
		line := logLine{Seq: m.Sequence, Subject: m.Subject, Stored: m.Time.UTC()}
		if m.Subject == gap {
			line.Gap = true
		} else if ev, err := events.Decode(m.Data); err != nil {
			line.Error = err.Error()
		} else {
			line.Event = ev
			if !ev.Known() {
				line.Error = "unknown event type or schema"
			}
		}
		if err := enc.Encode(line); err != nil {
			return r, err
		}
		r.count++
		r.last = m.Sequence
	}
	return r, nil
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
