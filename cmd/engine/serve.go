package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/engine"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/jetstream/embedded"
)

// serve runs the engine until ctx ends: on an embedded nats-server by
// default, or on an external one with --nats-url.
func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	listen := fs.String("listen", "127.0.0.1:4222", "address the embedded nats-server listens on")
	data := fs.String("data", "./data", "directory the embedded nats-server stores JetStream in")
	natsURL := fs.String("nats-url", "", "use this nats-server instead of an embedded one")
	stream := fs.String("stream", events.DefaultStream, "stream holding the event log")
	prefix := fs.String("prefix", events.DefaultPrefix, "subject prefix of events and API")
	replicas := fs.Int("replicas", 1, "stream replicas (on a clustered external server)")
	var sync syncPolicy
	fs.Var(&sync, "sync", `when the embedded server fsyncs the log: "always" (before each write is acknowledged) or an interval such as 1s (default `+defaultSync+`)`)
	acceptLoss := fs.Bool("accept-log-loss", false, "start writing even though the log lost events this engine acknowledged (it goes on past them, so no id is reused)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if sync.s == "" {
		_ = sync.Set(defaultSync)
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))

	var nc *nats.Conn
	var mark engine.Mark
	var err error
	if *natsURL != "" {
		nc, err = nats.Connect(*natsURL, nats.Name("wfp-engine"), nats.MaxReconnects(-1))
		if err != nil {
			return fmt.Errorf("connect to %s: %w", *natsURL, err)
		}
		// The mark lives on the server, in its own stream: it survives this
		// host, and the engines sharing the log share it.
		js, err := natsjs.New(nc)
		if err != nil {
			return err
		}
		if mark, err = engine.OpenKVMark(ctx, js, markBucket, *stream, *replicas); err != nil {
			return err
		}
	} else {
		dir, err := filepath.Abs(*data)
		if err != nil {
			return err
		}
		srv, err := embedded.Start(embedded.Options{StoreDir: dir, Listen: *listen, SyncAlways: sync.always, SyncInterval: sync.every})
		if err != nil {
			return err
		}
		defer srv.Shutdown()
		log.Info("embedded nats-server", "url", srv.ClientURL(), "data", dir, "sync", sync.String())
		// The mark is a file beside the store, fsynced on each write: the
		// data directory is this engine's alone (embedded.Start locks it).
		fm, err := engine.OpenFileMark(filepath.Join(dir, "engine-"+*stream+".mark"))
		if err != nil {
			return err
		}
		defer fm.Close()
		mark = fm
		if nc, err = srv.Connect(nats.Name("wfp-engine")); err != nil {
			return err
		}
	}
	defer nc.Close()

	e, err := engine.Start(ctx, nc, engine.Config{
		Stream: *stream, Prefix: *prefix, Replicas: *replicas,
		Logger: log, Mark: mark, AcceptLogLoss: *acceptLoss,
	})
	if err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("shutting down", "seq", e.Seq())
	e.Close()
	return nil
}

// markBucket is the KV bucket where engines on an external server keep
// their high-water marks, one key per stream.
const markBucket = "WFP_MARKS"

// defaultSync is the embedded server's fsync policy unless --sync says
// otherwise; BENCHMARKS.md has the measurements behind it.
const defaultSync = "always"

// syncPolicy is the --sync flag: "always", or an interval.
type syncPolicy struct {
	s      string
	always bool
	every  time.Duration
}

func (p *syncPolicy) String() string { return p.s }

func (p *syncPolicy) Set(v string) error {
	if v == "always" {
		*p = syncPolicy{s: v, always: true}
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return fmt.Errorf(`want "always" or a positive interval such as 1s, got %q`, v)
	}
	*p = syncPolicy{s: v, every: d}
	return nil
}
