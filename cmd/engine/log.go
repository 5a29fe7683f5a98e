package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/cli"
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
	// Gap marks a gap filler: a sequence skipped after an accepted log
	// loss, no event.
	Gap   bool   `json:"gap,omitempty"`
	Error string `json:"error,omitempty"`
}

// eventsCommand prints the log as JSON lines, one per message, from a
// sequence on: the log up to now, then (with --follow) everything new.
// The log is compacted (a delete replaces its filter's add, and leaves
// after the horizon); --archive reads the archive stream, which keeps
// every event.
//
// It reads with batched direct gets, not a consumer: a read-only operator
// changes nothing on the server, and its permissions need no consumer
// rights (which could not be narrowed to its own consumers). A compacted
// log is read the same way: what a roll-up or a TTL removed is simply not
// there.
func eventsCommand(s streams) *cli.Command {
	return &cli.Command{Name: "events",
		Summary: "Print the event log as JSON lines, each with its stream sequence: all of it, one callout's filters, from a sequence on, or following it.",
		Flags: func(fs *flag.FlagSet) cli.Run {
			var c conn
			c.register(fs)
			stream := fs.String("stream", events.DefaultStream, "`NAME` of the stream holding the event log")
			callout := fs.String("callout", "", "only events of filters naming this callout key, a `UUID`")
			from := fs.Uint64("from-seq", 0, "start at stream sequence `N` (default: the beginning)")
			follow := fs.Bool("follow", false, "keep printing new events until interrupted")
			archive := fs.Bool("archive", false, "read the archive stream (every event, none compacted away), which the engine keeps when served with --archive")
			archiveName := fs.String("archive-stream", "", "`NAME` of the archive stream (default: the log stream's name + \"_ARCHIVE\"; implies --archive)")
			fs.Bool("json", true, "print JSON lines (the only format; accepted for symmetry)")
			return func(ctx context.Context, _ []string) error {
				var opts []jetstreamext.GetBatchOpt
				if *callout != "" {
					key, err := events.ParseKey(*callout)
					if err != nil {
						return cli.Usagef("--callout: %v", err)
					}
					opts = append(opts, jetstreamext.GetBatchSubject(events.Subjects{Prefix: c.prefix}.CalloutFilters(key)))
				}
				r := reading{stream: *stream, from: *from, gap: events.Subjects{Prefix: c.prefix}.Gap()}
				next := max(*from, 1)
				if *archive || *archiveName != "" {
					r.stream, r.archive = cmp.Or(*archiveName, jetstream.ArchiveName(*stream)), true
					next = 1 // archive sequences are not log sequences: r.from filters
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
				return printEvents(ctx, js, r, next, *follow, opts, s)
			}
		}}
}

// printEvents prints the log from sequence next on; with follow, it keeps
// going. A start past the end of the log is said, with where the log ends.
func printEvents(ctx context.Context, js natsjs.JetStream, r reading, next uint64, follow bool, opts []jetstreamext.GetBatchOpt, s streams) error {
	enc := json.NewEncoder(s.stdout)
	first := true
	stream := r.stream
	for {
		n, err := r.printBatch(ctx, js, next, opts, enc)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if n.count > 0 {
			next, first = n.last+1, false
			continue
		}
		if first && next > 1 {
			first = false
			end, err := logEnd(ctx, js, stream)
			switch {
			case err != nil:
				return fmt.Errorf("stream %s: %w", stream, err)
			case next > end+1 && !follow:
				return fmt.Errorf("--from-seq %d is past the end of the log: stream %s ends at sequence %d", next, stream, end)
			case next > end+1:
				fmt.Fprintf(s.stderr, "engine: the log ends at sequence %d; waiting for sequence %d\n", end, next)
			}
		}
		// Caught up with the log.
		if !follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(followPoll):
		}
	}
}

// logEnd is the sequence of the stream's newest message (0: none), asked
// with a direct get, as an operator's permissions allow.
func logEnd(ctx context.Context, js natsjs.JetStream, stream string) (uint64, error) {
	m, err := js.Conn().RequestWithContext(ctx, natsjs.DefaultAPIPrefix+"DIRECT.GET."+stream, []byte(`{"last_by_subj":">"}`))
	if err != nil {
		return 0, err
	}
	if m.Header.Get("Status") == "404" {
		return 0, nil
	}
	seq, err := strconv.ParseUint(m.Header.Get(natsjs.SequenceHeader), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("direct get of the last message: %s %s", m.Header.Get("Status"), m.Header.Get("Description"))
	}
	return seq, nil
}

// followPoll is how often --follow asks for what is new.
const followPoll = 200 * time.Millisecond

// eventsBatch is how many messages one direct get answers at most.
const eventsBatch = 256

type batchRead struct {
	count int
	last  uint64 // stream sequence of the last message read
}

// reading is what `engine events` reads: the log, or its archive.
type reading struct {
	stream  string
	archive bool   // stream is the archive: log sequences are in a header
	from    uint64 // archive: print from this log sequence on
	gap     string // the subject of gap fillers, printed as such (PROTOCOL.md)
}

// printBatch prints up to eventsBatch messages from sequence seq on.
func (r reading) printBatch(ctx context.Context, js natsjs.JetStream, seq uint64, opts []jetstreamext.GetBatchOpt, enc *json.Encoder) (batchRead, error) {
	var b batchRead
	msgs, err := jetstreamext.GetBatch(ctx, js, r.stream, eventsBatch, append([]jetstreamext.GetBatchOpt{jetstreamext.GetBatchSeq(seq)}, opts...)...)
	if err != nil {
		return b, fmt.Errorf("stream %s: %w", r.stream, err)
	}
	for m, err := range msgs {
		if errors.Is(err, jetstreamext.ErrNoMessages) {
			return b, nil
		}
		if err != nil {
			return b, fmt.Errorf("stream %s: %w", r.stream, err)
		}
		b.count++
		b.last = m.Sequence
		line := logLine{Seq: m.Sequence, Subject: m.Subject, Stored: m.Time.UTC()}
		if r.archive {
			line.ArchiveSeq = m.Sequence
			line.Seq, _ = jetstream.SourceSeq(m.Header.Get(jetstream.HeaderStreamSource))
			if line.Seq < r.from {
				continue
			}
		}
		if m.Subject == r.gap {
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
			return b, err
		}
	}
	return b, nil
}

// decodeCommand turns one event payload on stdin into JSON, for
// `nats sub --translate 'engine decode'`.
func decodeCommand(s streams) *cli.Command {
	return &cli.Command{Name: "decode", Args: "< PAYLOAD",
		Summary: "Turn one event payload (msgpack) on stdin into JSON, for nats sub --translate 'engine decode'.",
		Flags: func(*flag.FlagSet) cli.Run {
			return func(context.Context, []string) error { return decode(s.stdin, s.stdout) }
		}}
}

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
