package main

import (
	"context"
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
	"github.com/wfpnats/wfp/internal/cli"
	"github.com/wfpnats/wfp/internal/natsconn"
	"github.com/wfpnats/wfp/jetstream"
	"github.com/wfpnats/wfp/jetstream/embedded"
)

// serveCommand runs the engine until interrupted, on an external
// nats-server or an embedded one:
//
//   - --nats-url URL: the external server at URL;
//   - --listen, --data, --server-config or --sync: the embedded server;
//   - none of these: the external server at $NATS_URL if it is set, else
//     the embedded server on 127.0.0.1:4222 with its data in ./data.
//
// The credential flags (natsconn) are the engine's own identity on
// either; the embedded server asks for them when its configuration file
// has users.
func serveCommand(s streams) *cli.Command {
	return &cli.Command{
		Name:    "serve",
		Summary: "Serve the engine: fold the log, answer the management API, write what it validates. The default command.",
		Flags: func(fs *flag.FlagSet) cli.Run {
			var o serveOptions
			fs.StringVar(&o.listen, "listen", embedded.DefaultListen, "`ADDR` the embedded nats-server listens on")
			fs.StringVar(&o.data, "data", "./data", "`DIR` the embedded nats-server stores JetStream in")
			fs.StringVar(&o.serverConfig, "server-config", "", "nats-server configuration `FILE` for the embedded server (users, accounts, permissions, TLS)")
			fs.StringVar(&o.natsURL, "nats-url", "", "use the nats-server at `URL` instead of an embedded one (default $"+natsconn.EnvURL+" when no embedded-server flag is given)")
			fs.StringVar(&o.stream, "stream", events.DefaultStream, "`NAME` of the stream holding the event log")
			fs.StringVar(&o.prefix, "prefix", events.DefaultPrefix, "subject `PREFIX` of events and API")
			fs.IntVar(&o.replicas, "replicas", 1, "stream replicas `N` (on a clustered external server)")
			fs.DurationVar(&o.horizon, "horizon", engine.DefaultHorizon, "how long a delete stays in the log before it expires, a `DURATION` in whole seconds (0 keeps deletes for ever); an agent away longer resyncs from a snapshot")
			fs.BoolVar(&o.archive, "archive", false, "keep an archive stream that sources the log and keeps every event (read it with engine events --archive)")
			fs.StringVar(&o.archiveName, "archive-stream", "", "`NAME` of the archive stream (default: the log stream's name + \"_ARCHIVE\"; implies --archive)")
			fs.Var(&o.sync, "sync", "when the embedded server fsyncs the log, `always|INTERVAL`: before each write is acknowledged, or every interval such as 1s (default "+defaultSync+")")
			fs.BoolVar(&o.acceptLoss, "accept-log-loss", false, "start writing even though the log lost events this engine acknowledged (it goes on past them, so no id is reused)")
			fs.BoolVar(&o.serverLog, "server-log", false, "log the embedded nats-server's notices too (its startup banner); its warnings and errors are always logged")
			cli.MetricsFlag(fs, &o.metricsAddr)
			o.logs.Register(fs)
			o.auth.RegisterAuth(fs)
			return func(ctx context.Context, _ []string) error {
				o.given = map[string]bool{}
				fs.Visit(func(f *flag.Flag) { o.given[f.Name] = true })
				return serve(ctx, o, s.stderr)
			}
		},
	}
}

// serveOptions are serve's flags.
type serveOptions struct {
	listen, data, serverConfig, natsURL string
	stream, prefix                      string
	replicas                            int
	horizon                             time.Duration
	archive                             bool
	archiveName                         string
	sync                                syncPolicy
	acceptLoss, serverLog               bool
	metricsAddr                         string
	logs                                cli.LogFlags
	auth                                natsconn.Flags
	given                               map[string]bool // the flags given on the command line
}

func serve(ctx context.Context, o serveOptions, stderr io.Writer) error {
	if o.sync.s == "" {
		_ = o.sync.Set(defaultSync)
	}
	log := o.logs.Logger(stderr)
	if o.horizon < 0 {
		return cli.Usagef("--horizon %v: want 0 (for ever) or a positive duration", o.horizon)
	}
	horizon := o.horizon
	if horizon == 0 {
		horizon = engine.NoHorizon
	}
	archive := o.archiveName
	if archive == "" && o.archive {
		archive = jetstream.ArchiveName(o.stream)
	}

	embeddedFlag := o.given["listen"] || o.given["data"] || o.given["server-config"] || o.given["sync"]
	url := o.natsURL
	switch {
	case url != "" && embeddedFlag:
		return cli.Usagef("--nats-url names an external server; --listen, --data, --server-config and --sync are for the embedded one: give one or the other")
	case url == "" && !embeddedFlag:
		if url = os.Getenv(natsconn.EnvURL); url != "" {
			log.Info("serving on the server at $"+natsconn.EnvURL+"; give --listen or --data for the embedded server instead",
				"url", natsconn.Redact(url))
		}
	}

	var nc *nats.Conn
	var mark engine.Mark
	if url != "" {
		o.auth.URL = url
		// Reconnect at once to another server, and every 250 ms to a lone
		// one coming back (nats.go waits 2 s by default): while the engine
		// is away no add is served.
		c, err := o.auth.Connect("wfp-engine", nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
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
		if mark, err = engine.OpenKVMark(ctx, js, engine.MarkBucket, o.stream, o.replicas); err != nil {
			nc.Close()
			return err
		}
	} else {
		dir, err := filepath.Abs(o.data)
		if err != nil {
			return err
		}
		// The server's notices (a 28-line banner) only when asked for;
		// its warnings and errors always, in the engine's log format.
		quiet := slog.LevelWarn
		if o.serverLog {
			quiet = slog.LevelInfo
		}
		opts := embedded.Options{StoreDir: dir, ConfigFile: o.serverConfig, SyncAlways: o.sync.always, SyncInterval: o.sync.every,
			Logger: slog.New(o.logs.Handler(stderr, quiet)).With("component", "nats-server")}
		if o.serverConfig == "" || o.given["listen"] {
			opts.Listen = o.listen
		}
		srv, err := embedded.Start(opts)
		if err != nil {
			return err
		}
		defer srv.Shutdown()
		log.Info("embedded nats-server", "url", srv.ClientURL(), "data", dir, "sync", o.sync.String())
		// The mark is a file beside the store, fsynced on each write: the
		// data directory is this engine's alone (embedded.Start locks it).
		fm, err := engine.OpenFileMark(filepath.Join(dir, "engine-"+o.stream+".mark"))
		if err != nil {
			return err
		}
		defer fm.Close()
		mark = fm
		// In process there is no network to protect: credentials, no TLS.
		own, err := o.auth.AuthOptions()
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
		Stream: o.stream, Prefix: o.prefix, Replicas: o.replicas,
		Horizon: horizon, Archive: archive,
		Logger: log, Mark: mark, AcceptLogLoss: o.acceptLoss,
	})
	if err != nil {
		return err
	}
	if err := cli.ServeMetrics(ctx, o.metricsAddr, log, e.Collector()); err != nil {
		e.Close()
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
