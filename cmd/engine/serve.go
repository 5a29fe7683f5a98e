package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"

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
	if err := parse(fs, args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))

	var nc *nats.Conn
	var err error
	if *natsURL != "" {
		// Reconnect at once to another server, and every 250 ms to a lone
		// one coming back (nats.go waits 2 s by default): while the engine
		// is away no add is served.
		nc, err = nats.Connect(*natsURL, nats.Name("wfp-engine"), nats.MaxReconnects(-1),
			nats.ReconnectWait(250*time.Millisecond))
		if err != nil {
			return fmt.Errorf("connect to %s: %w", *natsURL, err)
		}
	} else {
		dir, err := filepath.Abs(*data)
		if err != nil {
			return err
		}
		srv, err := embedded.Start(embedded.Options{StoreDir: dir, Listen: *listen})
		if err != nil {
			return err
		}
		defer srv.Shutdown()
		log.Info("embedded nats-server", "url", srv.ClientURL(), "data", dir)
		if nc, err = srv.Connect(nats.Name("wfp-engine")); err != nil {
			return err
		}
	}
	defer nc.Close()

	e, err := engine.Start(ctx, nc, engine.Config{
		Stream: *stream, Prefix: *prefix, Replicas: *replicas,
		Logger: log,
	})
	if err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("shutting down", "seq", e.Seq())
	e.Close()
	return nil
}
