// Command callout-agent registers a callout agent and prints one JSON line
// per notification on stdout, so the SDK's behaviour can be watched (and
// tested) from a shell:
//
//	callout-agent --callout 0c8e7f1d-7c55-4d0e-a2e1-6f3b9d2f4e10 --mode replay
//
// --reject-adds SUBSTRING makes it refuse the adds of filters whose name
// contains SUBSTRING (R7: the engine takes them back), --post-commit asks
// for post-commit notifications of transactions (R8), --agent-id names it
// to the engines.
//
// It serves classify: each filter's context, made at add, counts the
// classify calls about the filter; the answer says the count in its note
// ("hits=3", shown by engine classify), and the delete line hands it back
// ("hits":3), as R6 has it. Inspection and unknown callouts say continue,
// terminating ones permit.
//
// It connects with the nats CLI's connection flags and environment
// variables (--server, --creds, --nkey, --user with --password-file,
// --token-file, --tlsca, --tlscert, --tlskey; see internal/natsconn) and
// with the agent's own inbox prefix, so that it can run with exactly the
// permissions `engine permissions --agent` prints.
//
// Logs go to stderr (--log-level, --log-format text|json); --metrics-addr
// serves the agent's Prometheus metrics. SIGINT or SIGTERM closes the
// agent and exits 0; an unreachable server, an agent id another running
// instance holds or a terminal failure exits 1 with one line on stderr; a
// bad flag exits 2 with one line and a hint (--help lists the flags).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/cli"
	"github.com/wfpnats/wfp/internal/natsconn"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(cli.Exit("callout-agent", err, os.Stderr))
}

const notes = `Connection flags: --server URL (default $NATS_URL, else nats://127.0.0.1:4222), and the nats
CLI's credentials: --creds, --nkey, --user with --password-file or $NATS_PASSWORD, --token-file or
$NATS_TOKEN, --tlsca, --tlscert, --tlskey (and their NATS_* variables).

Exit status: 0 stopped by SIGINT or SIGTERM; 1 failed (an unreachable server, an agent id another
running instance holds, a terminal failure); 2 the command line is wrong.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	p := &cli.Program{
		Name:    "callout-agent",
		Summary: "a callout agent that prints one JSON line per notification",
		Stdout:  stdout,
		Groups:  []cli.Group{{Name: "connection flags", Flags: natsconn.FlagNames}},
		Notes:   notes,
		Commands: []*cli.Command{{
			Summary: "Register an agent for a callout and print each notification it gets as a JSON line on stdout; logs go to stderr.",
			Flags: func(fs *flag.FlagSet) cli.Run {
				var c config
				c.register(fs)
				return func(ctx context.Context, _ []string) error {
					if err := c.check(); err != nil {
						return cli.Usagef("%w", err)
					}
					return runAgent(ctx, c, stdout, stderr)
				}
			},
		}},
	}
	return p.Run(ctx, args)
}

type config struct {
	natsconn.Flags
	callout, durable    string
	agentID, rejectAdds string
	stream, prefix      string
	postCommit          bool
	modeName            string
	mode                callout.Mode
	metricsAddr         string
	logs                cli.LogFlags
}

func (c *config) register(fs *flag.FlagSet) {
	fs.StringVar(&c.callout, "callout", "", "callout key to register for, a `UUID` (required)")
	fs.StringVar(&c.modeName, "mode", "live", "`live|replay`: from now on, or current filters first")
	fs.StringVar(&c.durable, "durable", "", "durable consumer `NAME`: a live agent resumes where its last run stopped")
	c.Flags.Register(fs)
	fs.StringVar(&c.stream, "stream", events.DefaultStream, "`NAME` of the event-log stream")
	fs.StringVar(&c.prefix, "prefix", events.DefaultPrefix, "event subject `PREFIX`")
	fs.StringVar(&c.agentID, "agent-id", "", "agent `ID` announced to engines (one subject token; default: a new UUID)")
	fs.StringVar(&c.rejectAdds, "reject-adds", "", "refuse the add of every filter whose name contains `TEXT` (R7)")
	fs.BoolVar(&c.postCommit, "post-commit", false, "ask for add-post-commit notifications after each transaction (R8)")
	cli.MetricsFlag(fs, &c.metricsAddr)
	c.logs.Register(fs)
}

// check validates the flags and fills in what they imply.
func (c *config) check() error {
	var err error
	if c.callout, err = events.ParseKey(c.callout); err != nil {
		return fmt.Errorf("--callout: %w", err)
	}
	if err := events.ValidPrefix(c.prefix); err != nil {
		return fmt.Errorf("--prefix: %w", err)
	}
	if c.mode, err = callout.ParseMode(c.modeName); err != nil {
		return err
	}
	if c.durable != "" && c.mode == callout.Replay {
		return errors.New("--durable is for live mode: replay rebuilds from the log every time")
	}
	if c.agentID == "" {
		c.agentID = uuid.NewString()
	} else if err := events.ValidName("--agent-id", c.agentID); err != nil {
		return err
	}
	if c.durable != "" {
		if err := events.ValidName("--durable", c.durable); err != nil {
			return err
		}
	}
	return nil
}

func runAgent(ctx context.Context, cfg config, stdout, stderr io.Writer) error {
	log := cfg.logs.Logger(stderr)

	nc, err := cfg.Connect("callout-agent "+cfg.callout+" "+cfg.agentID,
		// Its own inbox, so that NATS permissions can give each agent its
		// replies and deliveries and nobody else's (engine permissions).
		nats.CustomInboxPrefix(events.Subjects{Prefix: cfg.prefix}.AgentInbox(cfg.callout, cfg.agentID)),
		nats.MaxReconnects(-1), // ride through server restarts; the SDK resets its consumer
		// and come back every 250 ms, not nats.go's 2 s: adds wait for
		// this agent's answers (R7) while it is away.
		nats.ReconnectWait(250*time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: our own Close at shutdown, nothing to warn about
				log.Warn("disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("reconnected", "server", nc.ConnectedUrl()) }),
	)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		return err
	}

	out := newPrinter(stdout)
	opts := []callout.Option{callout.WithMode(cfg.mode), callout.WithStream(cfg.stream, cfg.prefix), callout.WithLogger(log),
		callout.WithAgentID(cfg.agentID), callout.WithClassifier(classifier())}
	if cfg.durable != "" {
		opts = append(opts, callout.WithDurable(cfg.durable))
	}
	if cfg.postCommit {
		opts = append(opts, callout.WithPostCommit())
	}
	regCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	agent, err := callout.Register(regCtx, js, cfg.callout, handler(out, log, cfg.rejectAdds), opts...)
	cancel()
	if err != nil {
		return err
	}
	if err := cli.ServeMetrics(ctx, cfg.metricsAddr, log, agent.Collector()); err != nil {
		agent.Close()
		return err
	}
	go func() {
		select {
		case <-agent.Synced():
			out.synced()
		case <-agent.Done():
		}
	}()

	select {
	case <-ctx.Done():
		log.Info("signal received; closing")
		return agent.Close()
	case <-agent.Done():
		return agent.Err()
	}
}
