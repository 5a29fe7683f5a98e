package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/nats-io/nats.go"

	"github.com/wfpnats/wfp/engine"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/natsconn"
	"github.com/wfpnats/wfp/jetstream/embedded"
)

// serve runs the engine until ctx ends, on an external nats-server or an
// embedded one:
//
//   - --nats-url URL: the external server at URL;
//   - --listen, --data or --server-config: the embedded server;
//   - none of these: the external server at $NATS_URL if it is set, else
//     the embedded server on 127.0.0.1:4222 with its data in ./data.
//
// The credential flags (natsconn) are the engine's own identity on
// either; the embedded server asks for them when its configuration file
// has users.
func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	listen := fs.String("listen", embedded.DefaultListen, "address the embedded nats-server listens on")
	data := fs.String("data", "./data", "directory the embedded nats-server stores JetStream in")
	serverConfig := fs.String("server-config", "", "nats-server configuration file for the embedded server (users, accounts, permissions, TLS)")
	natsURL := fs.String("nats-url", "", "use this nats-server instead of an embedded one (default $"+natsconn.EnvURL+" when no embedded-server flag is given)")
	stream := fs.String("stream", events.DefaultStream, "stream holding the event log")
	prefix := fs.String("prefix", events.DefaultPrefix, "subject prefix of events and API")
	replicas := fs.Int("replicas", 1, "stream replicas (on a clustered external server)")
	var auth natsconn.Flags
	auth.RegisterAuth(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))

	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	embeddedFlag := given["listen"] || given["data"] || given["server-config"]
	url := *natsURL
	switch {
	case url != "" && embeddedFlag:
		return errors.New("--nats-url names an external server; --listen, --data and --server-config are for the embedded one: give one or the other")
	case url == "" && !embeddedFlag:
		if url = os.Getenv(natsconn.EnvURL); url != "" {
			log.Info("serving on the server at $"+natsconn.EnvURL+"; give --listen or --data for the embedded server instead",
				"url", natsconn.Redact(url))
		}
	}

	var nc *nats.Conn
	if url != "" {
		auth.URL = url
		c, err := auth.Connect("wfp-engine", nats.MaxReconnects(-1))
		if err != nil {
			return err
		}
		nc = c
	} else {
		dir, err := filepath.Abs(*data)
		if err != nil {
			return err
		}
		opts := embedded.Options{StoreDir: dir, ConfigFile: *serverConfig}
		if *serverConfig == "" || given["listen"] {
			opts.Listen = *listen
		}
		srv, err := embedded.Start(opts)
		if err != nil {
			return err
		}
		defer srv.Shutdown()
		log.Info("embedded nats-server", "url", srv.ClientURL(), "data", dir)
		// In process there is no network to protect: credentials, no TLS.
		own, err := auth.AuthOptions()
		if err != nil {
			return err
		}
		if nc, err = srv.Connect(append(own, nats.Name("wfp-engine"))...); err != nil {
			return fmt.Errorf("%w (with --server-config, the engine connects as one of its users: give its --user "+
				"and --password-file, --nkey or --creds)", err)
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
