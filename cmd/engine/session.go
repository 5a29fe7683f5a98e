package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wfpnats/wfp/engine"
	"github.com/wfpnats/wfp/internal/cli"
)

// sessionEnv is the environment variable that names the session add
// commands join by default; session run sets it for its command.
const sessionEnv = "WFP_SESSION"

// sessionFlag registers --session, defaulting to $WFP_SESSION.
func sessionFlag(fs *flag.FlagSet, id *string) {
	fs.StringVar(id, "session", os.Getenv(sessionEnv),
		"add it in the dynamic session `ID`: deleted when the session ends (default $"+sessionEnv+")")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// The session commands. A dynamic session lives while its holder
// heartbeats, which a CLI process that exits cannot do, so:
//
//	open       opens one and prints its id; something must then keep it
//	           alive (keepalive, or a program heartbeating the id), or it
//	           ends after its lease
//	keepalive  heartbeats a session until interrupted (then it ends after
//	           its lease), or until the session has ended
//	run        opens one, runs a command with $WFP_SESSION set, heartbeats
//	           while it runs and closes the session when it exits: the
//	           command's dynamic objects live exactly as long as it does
//	close      ends a session now; list shows the open ones

// sessionConfig registers the flags of a session that open and run make.
func sessionConfig(fs *flag.FlagSet) func(verb string) (engine.SessionConfig, error) {
	var cfg engine.SessionConfig
	var dynamic bool
	fs.BoolVar(&dynamic, "dynamic", false, "a dynamic session: what is added in it is deleted when it ends (required)")
	fs.StringVar(&cfg.Name, "name", "", "a `NAME` for listings")
	fs.DurationVar(&cfg.Lease, "lease", engine.DefaultSessionLease, "how long engines wait without a heartbeat before ending the session, a `DURATION`")
	return func(verb string) (engine.SessionConfig, error) {
		if !dynamic {
			return cfg, cli.Usagef("session %s: --dynamic is required (objects added without a session are permanent already)", verb)
		}
		return cfg, nil
	}
}

func sessionOpen(s streams) *cli.Command {
	return &cli.Command{Name: "session open",
		Summary: "Open a dynamic session and print its id; keep it alive with session keepalive, or it ends after its lease.",
		Flags: func(fs *flag.FlagSet) cli.Run {
			var c client
			c.register(fs, s)
			config := sessionConfig(fs)
			return func(ctx context.Context, _ []string) error {
				cfg, err := config("open")
				if err != nil {
					return err
				}
				return c.do(func(cl *engine.Client) error {
					ss, err := cl.OpenSession(ctx, cfg)
					if err != nil {
						return err
					}
					ss.Detach() // this process exits: the holder is whoever heartbeats it next
					if c.asJSON {
						return writeJSON(s.stdout, ss.Info())
					}
					_, err = fmt.Fprintln(s.stdout, ss.ID())
					return err
				})
			}
		}}
}

func sessionKeepalive(s streams) *cli.Command {
	return &cli.Command{Name: "session keepalive", Args: "ID", NArgs: 1,
		Summary: "Heartbeat an open session until interrupted (it then ends after its lease) or until it has ended.",
		Flags: func(fs *flag.FlagSet) cli.Run {
			var c conn
			c.register(fs)
			return func(ctx context.Context, args []string) error {
				return (&client{conn: c}).do(func(cl *engine.Client) error { return keepalive(ctx, cl, args[0], s.stderr) })
			}
		}}
}

func sessionRun(s streams) *cli.Command {
	return &cli.Command{Name: "session run", Args: "-- CMD [ARG]...", NArgs: cli.Trailing,
		Summary: "Open a dynamic session, run CMD with $" + sessionEnv + " set to it while heartbeating, and close the session when CMD exits; exit as CMD did.",
		Flags: func(fs *flag.FlagSet) cli.Run {
			var c conn
			c.register(fs)
			config := sessionConfig(fs)
			return func(ctx context.Context, argv []string) error {
				cfg, err := config("run")
				if err != nil {
					return err
				}
				return (&client{conn: c}).do(func(cl *engine.Client) error { return runInSession(ctx, cl, cfg, argv, s) })
			}
		}}
}

func sessionClose(s streams) *cli.Command {
	return &cli.Command{Name: "session close", Args: "ID", NArgs: 1,
		Summary: "End a session now: what was added in it is deleted.",
		Flags: func(fs *flag.FlagSet) cli.Run {
			var c client
			c.register(fs, s)
			return func(ctx context.Context, args []string) error {
				return c.do(func(cl *engine.Client) error {
					resp, err := cl.CloseSession(ctx, args[0])
					if err != nil {
						return err
					}
					if c.asJSON {
						return writeJSON(s.stdout, resp)
					}
					_, err = fmt.Fprintf(s.stdout, "closed session %s: deleted %d filter(s) and %d callout(s)\n", args[0], resp.DeletedFilters, resp.DeletedCallouts)
					return err
				})
			}
		}}
}

func sessionList(s streams) *cli.Command {
	return &cli.Command{Name: "session list", Summary: "List the open sessions.",
		Flags: func(fs *flag.FlagSet) cli.Run {
			var c client
			c.register(fs, s)
			return func(ctx context.Context, _ []string) error {
				return c.do(func(cl *engine.Client) error {
					resp, err := cl.ListSessions(ctx)
					if err != nil {
						return err
					}
					if c.asJSON {
						return writeJSON(s.stdout, resp.Sessions)
					}
					tw := tabwriter.NewWriter(s.stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "SESSION\tNAME\tLEASE\tFILTERS\tCALLOUTS\tLAST HEARD")
					for _, ss := range resp.Sessions {
						fmt.Fprintf(tw, "%s\t%s\t%v\t%d\t%d\t%s\n", ss.ID, cli.Printable(dash(ss.Name)), ss.Lease(), ss.FilterCount, ss.CalloutCount,
							ss.LastHeartbeat.UTC().Format(time.RFC3339))
					}
					fmt.Fprintf(tw, "(%d open sessions as of log sequence %d)\n", len(resp.Sessions), resp.Seq)
					return tw.Flush()
				})
			}
		}}
}

// keepalive heartbeats session id every third of its lease until ctx ends
// or the session is no longer open.
func keepalive(ctx context.Context, cl *engine.Client, id string, stderr io.Writer) error {
	lease, err := openLease(ctx, cl, id)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "engine: keeping session %s alive (lease %v); interrupt to stop (it then ends after its lease)\n", id, lease)
	t := time.NewTicker(lease / 3)
	defer t.Stop()
	for n := 0; ; n++ {
		if err := cl.Heartbeat(id); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if n%3 == 2 { // once a lease, see that it is still open
			if _, err := openLease(ctx, cl, id); err != nil && ctx.Err() == nil {
				return err
			}
		}
	}
}

// openLease returns the lease of open session id, or an error saying it is
// not open.
func openLease(ctx context.Context, cl *engine.Client, id string) (time.Duration, error) {
	resp, err := cl.ListSessions(ctx)
	if err != nil {
		return 0, err
	}
	for _, s := range resp.Sessions {
		if strings.EqualFold(s.ID, id) {
			return s.Lease(), nil
		}
	}
	return 0, &engine.Error{Code: engine.CodeSessionAborted, Message: "session " + id + " is not open"}
}

// runInSession opens a dynamic session, runs argv with $WFP_SESSION set to
// it while heartbeating, and closes the session when the command exits.
// It exits as the command did.
func runInSession(ctx context.Context, cl *engine.Client, cfg engine.SessionConfig, argv []string, s streams) error {
	ss, err := cl.OpenSession(ctx, cfg)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), sessionEnv+"="+ss.ID())
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s.stdin, s.stdout, s.stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	runErr := cmd.Run()

	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*engine.DefaultClientTimeout)
	defer cancel()
	resp, err := ss.Close(closeCtx)
	if err != nil {
		return errors.Join(runErr, fmt.Errorf("closing session %s: %w", ss.ID(), err))
	}
	fmt.Fprintf(s.stderr, "closed session %s: deleted %d filter(s) and %d callout(s)\n", ss.ID(), resp.DeletedFilters, resp.DeletedCallouts)
	var exit *exec.ExitError
	if errors.As(runErr, &exit) {
		return cli.ExitCode(cmp.Or(exit.ExitCode(), 1))
	}
	return runErr
}
