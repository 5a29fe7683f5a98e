package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/wfpnats/wfp/engine"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/cli"
)

// txApply applies a transaction file: {"ops":[...]} or just the ops
// array. It exits with exitRejected when an agent rejected one of the
// transaction's filters.
func txApply(s streams) *cli.Command {
	return &cli.Command{Name: "tx apply", Args: "FILE.json", NArgs: 1,
		Summary: "Apply a transaction atomically: {\"ops\":[...]} or the array of operations, from FILE.json or - for stdin. " +
			"Exits 3 when it committed but an agent rejected one of its filters (R7).",
		Flags: func(fs *flag.FlagSet) cli.Run {
			var c client
			c.register(fs, s)
			notifyTimeout := fs.Duration("notify-timeout", engine.DefaultNotifyTimeout, "how long to wait for callout agents to accept the added filters, a `DURATION`")
			var session string
			sessionFlag(fs, &session)
			return func(ctx context.Context, args []string) error {
				req, err := readTx(args[0], s.stdin)
				if err != nil {
					return err
				}
				var resp *engine.TxResponse
				err = c.do(func(cl *engine.Client) (err error) {
					resp, err = cl.ApplyTx(ctx, req.Ops, engine.WithNotifyTimeout(*notifyTimeout), engine.WithSession(cmp.Or(req.SessionID, session)))
					return err
				})
				if err != nil {
					return err
				}
				if c.asJSON {
					err = writeJSON(s.stdout, resp)
				} else {
					err = printTx(s.stdout, resp)
				}
				if err == nil && len(resp.Rejected) > 0 {
					return cli.ExitCode(exitRejected)
				}
				return err
			}
		}}
}

// loadCommand applies a file of any number of operations, in
// transactions of at most engine.MaxTxOps, several in flight: a bulk
// load. A refused transaction stops it; what was loaded before stays, and
// is reported.
func loadCommand(s streams) *cli.Command {
	return &cli.Command{Name: "load", Args: "FILE.json", NArgs: 1,
		Summary: "Bulk-load any number of operations ({\"ops\":[...]} or the array, from FILE.json or - for stdin) in transactions of " +
			"up to 1000, in order, several in flight. A refused transaction stops the load, naming it; those before it stay.",
		Flags: func(fs *flag.FlagSet) cli.Run {
			var c client
			c.register(fs, s)
			inFlight := fs.Int("in-flight", engine.DefaultLoadInFlight, "transactions sent and not yet answered at once, `N`")
			notifyTimeout := fs.Duration("notify-timeout", engine.DefaultNotifyTimeout, "how long to wait for callout agents to accept the added filters of each transaction, a `DURATION`")
			return func(ctx context.Context, args []string) error {
				req, err := readTx(args[0], s.stdin)
				if err != nil {
					return err
				}
				var res *engine.LoadResult
				err = c.do(func(cl *engine.Client) (err error) {
					res, err = cl.Load(ctx, req.Ops, *inFlight, engine.WithNotifyTimeout(*notifyTimeout))
					return err
				})
				if res != nil && res.Transactions > 0 {
					if c.asJSON {
						if werr := writeJSON(s.stdout, res); werr != nil {
							return werr
						}
					} else {
						fmt.Fprintf(s.stdout, "loaded %d operation(s) in %d transaction(s) at log sequences %d-%d\n", res.Ops, res.Transactions, res.FirstSeq, res.LastSeq)
						printRejected(s.stdout, res.Rejected)
					}
				}
				return err
			}
		}}
}

func printTx(w io.Writer, resp *engine.TxResponse) error {
	fmt.Fprintf(w, "committed %d operation(s) at log sequences %d-%d\n", len(resp.Events), resp.FirstSeq, resp.FirstSeq+uint64(len(resp.Events))-1)
	for _, ev := range resp.Events {
		switch ev.Type {
		case events.FilterAdded:
			fmt.Fprintf(w, "  added filter %s id %d\n", ev.Filter.Key, ev.Filter.ID)
		case events.FilterDeleted:
			fmt.Fprintf(w, "  deleted filter %s id %d\n", ev.Filter.Key, ev.Filter.ID)
		case events.CalloutAdded:
			fmt.Fprintf(w, "  added callout %s %q\n", ev.Callout.Key, ev.Callout.Name)
		case events.CalloutDeleted:
			fmt.Fprintf(w, "  deleted callout %s\n", ev.Callout.Key)
		}
	}
	printRejected(w, resp.Rejected)
	return nil
}

// printRejected lists the filters an agent rejected (R7), which the
// engine deleted again.
func printRejected(w io.Writer, rejected []engine.Rejection) {
	for _, r := range rejected {
		fmt.Fprintf(w, "  rejected filter %s id %d: %s: agent %s: %s (deleted again)\n", r.FilterKey, r.FilterID, r.Code,
			cli.Printable(r.AgentID), cli.Printable(r.Error))
	}
}

// readTx reads a transaction from a file, or stdin for "-". It takes the
// API's {"ops":[...]} object or a bare array of operations, strictly: an
// unknown field or anything after the JSON is refused (engine.ParseTx).
func readTx(file string, stdin io.Reader) (engine.TxRequest, error) {
	var data []byte
	var err error
	if file == "-" {
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return engine.TxRequest{}, err
	}
	req, err := engine.ParseTx(data)
	if err != nil {
		return req, fmt.Errorf("%s: not a transaction (want {\"ops\":[...]} or [...]): %w", file, err)
	}
	return req, nil
}
