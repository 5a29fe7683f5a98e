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
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

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
	var sync syncPolicy
	fs.Var(&sync, "sync", `when the embedded server fsyncs the log: "always" (before each write is acknowledged) or an interval such as 1s (default `+defaultSync+`)`)
	acceptLoss := fs.Bool("accept-log-loss", false, "start writing even though the log lost events this engine acknowledged (it goes on past them, so no id is reused)")
	var auth natsconn.Flags
	auth.RegisterAuth(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if sync.s == "" {
		_ = sync.Set(defaultSync)
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))

	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	embeddedFlag := given["listen"] || given["data"] || given["server-config"] || given["sync"]
	url := *natsURL
	switch {
	case url != "" && embeddedFlag:
		return errors.New("--nats-url names an external server; --listen, --data, --server-config and --sync are for the embedded one: give one or the other")
	case url == "" && !embeddedFlag:
		if url = os.Getenv(natsconn.EnvURL); url != "" {
			log.Info("serving on the server at $"+natsconn.EnvURL+"; give --listen or --data for the embedded server instead",
				"url", natsconn.Redact(url))
		}
	}

	var nc *nats.Conn
	var mark engine.Mark
	if url != "" {
		auth.URL = url
		// Reconnect at once to another server, and every 250 ms to a lone
		// one coming back (nats.go waits 2 s by default): while the engine
		// is away no add is served.
		c, err := auth.Connect("wfp-engine", nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
		if err != nil {
			return err
		}
		nc = c
		// The mark lives on the server, in its own stream: it survives this
		// host, and the engines sharing the log share it.
		js, err := natsjs.New(nc)
		if err != nil {
			nc.Close()
			return err
		}
		if mark, err = engine.OpenKVMark(ctx, js, engine.MarkBucket, *stream, *replicas); err != nil {
			nc.Close()
			return err
		}
	} else {
		dir, err := filepath.Abs(*data)
		if err != nil {
			return err
		}
		opts := embedded.Options{StoreDir: dir, ConfigFile: *serverConfig, SyncAlways: sync.always, SyncInterval: sync.every}
		if *serverConfig == "" || given["listen"] {
			opts.Listen = *listen
		}
		srv, err := embedded.Start(opts)
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
