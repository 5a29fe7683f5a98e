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
)

// sessionEnv is the environment variable that names the session add
// commands join by default; session run sets it for its command.
const sessionEnv = "WFP_SESSION"

// sessionFlag registers --session, defaulting to $WFP_SESSION.
func sessionFlag(fs *flag.FlagSet, id *string) {
	fs.StringVar(id, "session", os.Getenv(sessionEnv),
		"add it in this dynamic session: deleted when the session ends (default $"+sessionEnv+")")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// sessionCmd runs the session subcommands. A dynamic session lives while
// its holder heartbeats, which a CLI process that exits cannot do, so:
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
func sessionCmd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("session needs a verb: open, keepalive, run, close or list\n%s", usage)
	}
	verb, args := args[0], args[1:]
	fs := newFlags("session "+verb, stderr)
	var c conn
	c.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	var cfg engine.SessionConfig
	var dynamic bool
	if verb == "open" || verb == "run" {
		fs.BoolVar(&dynamic, "dynamic", false, "a dynamic session: what is added in it is deleted when it ends (required)")
		fs.StringVar(&cfg.Name, "name", "", "a name for listings")
		fs.DurationVar(&cfg.Lease, "lease", engine.DefaultSessionLease, "how long engines wait without a heartbeat before ending the session")
	}
	var pos []string // positional arguments: a session id, or run's command
	switch verb {
	case "open", "list":
		if err := parse(fs, args); err != nil {
			return err
		}
	case "keepalive", "close":
		if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
			pos, args = args[:1], args[1:]
		}
		if err := parse(fs, args); err != nil {
			return err
		}
		if len(pos) == 0 {
			return fmt.Errorf("usage: engine session %s ID", verb)
		}
	case "run":
		if err := fs.Parse(args); err != nil {
			return err
		}
		if pos = fs.Args(); len(pos) == 0 {
			return fmt.Errorf("usage: engine session run --dynamic [--name N] [--lease D] -- CMD [ARG]...")
		}
	default:
		return fmt.Errorf("unknown command %q\n%s", "session "+verb, usage)
	}
	if (verb == "open" || verb == "run") && !dynamic {
		return fmt.Errorf("session %s: --dynamic is required (objects added without a session are permanent already)", verb)
	}

	nc, err := c.dial()
	if err != nil {
		return err
	}
	defer nc.Close()
	cl := engine.NewClient(nc, engine.WithPrefix(c.prefix))

	switch verb {
	case "open":
		s, err := cl.OpenSession(ctx, cfg)
		if err != nil {
			return err
		}
		s.Detach() // this process exits: the holder is whoever heartbeats it next
		if *asJSON {
			return writeJSON(stdout, s.Info())
		}
		_, err = fmt.Fprintln(stdout, s.ID())
		return err
	case "keepalive":
		return keepalive(ctx, cl, pos[0], stderr)
	case "run":
		return runInSession(ctx, cl, cfg, pos, stdin, stdout, stderr)
	case "close":
		resp, err := cl.CloseSession(ctx, pos[0])
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(stdout, resp)
		}
		_, err = fmt.Fprintf(stdout, "closed session %s: deleted %d filter(s) and %d callout(s)\n", pos[0], resp.DeletedFilters, resp.DeletedCallouts)
		return err
	}
	// list
	resp, err := cl.ListSessions(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, resp.Sessions)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SESSION\tNAME\tLEASE\tFILTERS\tCALLOUTS\tLAST HEARD")
	for _, s := range resp.Sessions {
		fmt.Fprintf(tw, "%s\t%s\t%v\t%d\t%d\t%s\n", s.ID, dash(s.Name), s.Lease(), s.FilterCount, s.CalloutCount,
			s.LastHeartbeat.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(tw, "(%d open sessions as of log sequence %d)\n", len(resp.Sessions), resp.Seq)
	return tw.Flush()
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
func runInSession(ctx context.Context, cl *engine.Client, cfg engine.SessionConfig, argv []string, stdin io.Reader, stdout, stderr io.Writer) error {
	s, err := cl.OpenSession(ctx, cfg)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), sessionEnv+"="+s.ID())
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	runErr := cmd.Run()

	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*engine.DefaultClientTimeout)
	defer cancel()
	resp, err := s.Close(closeCtx)
	if err != nil {
		return errors.Join(runErr, fmt.Errorf("closing session %s: %w", s.ID(), err))
	}
	fmt.Fprintf(stderr, "closed session %s: deleted %d filter(s) and %d callout(s)\n", s.ID(), resp.DeletedFilters, resp.DeletedCallouts)
	var exit *exec.ExitError
	if errors.As(runErr, &exit) {
		return exitCode(cmp.Or(exit.ExitCode(), 1))
	}
	return runErr
}

// exitCode makes the engine command exit with a code and no message.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }
