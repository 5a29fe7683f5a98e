package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/wfpnats/wfp/engine"
	"github.com/wfpnats/wfp/events"
)

// txCmd applies a transaction file: {"ops":[...]} or just the ops array.
func txCmd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "apply" {
		return fmt.Errorf("usage: engine tx apply FILE.json (- for stdin)")
	}
	fs := newFlags("tx apply", stderr)
	var c conn
	c.register(fs)
	asJSON := fs.Bool("json", false, "print the result as JSON")
	notifyTimeout := fs.Duration("notify-timeout", engine.DefaultNotifyTimeout, "how long to wait for callout agents to accept the added filters")
	var session string
	sessionFlag(fs, &session)
	req, err := parseFileArgs(fs, args[1:], "engine tx apply", stdin)
	if err != nil {
		return err
	}

	nc, err := c.dial()
	if err != nil {
		return err
	}
	defer nc.Close()
	resp, err := engine.NewClient(nc, engine.WithPrefix(c.prefix)).ApplyTx(ctx, req.Ops, engine.WithNotifyTimeout(*notifyTimeout),
		engine.WithSession(cmp.Or(req.SessionID, session)))
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, resp)
	}
	fmt.Fprintf(stdout, "committed %d operation(s) at log sequences %d-%d\n", len(resp.Events), resp.FirstSeq, resp.FirstSeq+uint64(len(resp.Events))-1)
	for _, ev := range resp.Events {
		switch ev.Type {
		case events.FilterAdded:
			fmt.Fprintf(stdout, "  added filter %s id %d\n", ev.Filter.Key, ev.Filter.ID)
		case events.FilterDeleted:
			fmt.Fprintf(stdout, "  deleted filter %s id %d\n", ev.Filter.Key, ev.Filter.ID)
		case events.CalloutAdded:
			fmt.Fprintf(stdout, "  added callout %s %q\n", ev.Callout.Key, ev.Callout.Name)
		case events.CalloutDeleted:
			fmt.Fprintf(stdout, "  deleted callout %s\n", ev.Callout.Key)
		}
	}
	for _, r := range resp.Rejected {
		fmt.Fprintf(stdout, "  rejected filter %s id %d: %s: agent %s: %s (deleted again)\n", r.FilterKey, r.FilterID, r.Code, printable(r.AgentID), printable(r.Error))
	}
	return nil
}

// parseFileArgs parses "FILE [flags]" (flags first work too) and reads
// the operations from FILE, or stdin for "-".
func parseFileArgs(fs *flag.FlagSet, args []string, cmd string, stdin io.Reader) (engine.TxRequest, error) {
	var file string
	if len(args) > 0 && (args[0] == "-" || !strings.HasPrefix(args[0], "-")) {
		file, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return engine.TxRequest{}, err
	}
	if file == "" && fs.NArg() == 1 {
		file = fs.Arg(0)
	} else if fs.NArg() > 0 || file == "" {
		return engine.TxRequest{}, fmt.Errorf("usage: %s FILE.json (- for stdin)", cmd)
	}
	return readTx(file, stdin)
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

// loadCmd applies a file of any number of operations, in transactions of
// at most engine.MaxTxOps, several in flight: a bulk load.
func loadCmd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("load", stderr)
	var c conn
	c.register(fs)
	asJSON := fs.Bool("json", false, "print the result as JSON")
	inFlight := fs.Int("in-flight", engine.DefaultLoadInFlight, "transactions sent and not yet answered at once")
	notifyTimeout := fs.Duration("notify-timeout", engine.DefaultNotifyTimeout, "how long to wait for callout agents to accept the added filters of each transaction")
	req, err := parseFileArgs(fs, args, "engine load", stdin)
	if err != nil {
		return err
	}
	nc, err := c.dial()
	if err != nil {
		return err
	}
	defer nc.Close()
	res, err := engine.NewClient(nc, engine.WithPrefix(c.prefix)).Load(ctx, req.Ops, *inFlight, engine.WithNotifyTimeout(*notifyTimeout))
	if res != nil && res.Transactions > 0 {
		if *asJSON {
			if werr := writeJSON(stdout, res); werr != nil {
				return werr
			}
		} else {
			fmt.Fprintf(stdout, "loaded %d operation(s) in %d transaction(s) at log sequences %d-%d\n", res.Ops, res.Transactions, res.FirstSeq, res.LastSeq)
			for _, r := range res.Rejected {
				fmt.Fprintf(stdout, "  rejected filter %s id %d: %s: agent %s: %s (deleted again)\n", r.FilterKey, r.FilterID, r.Code, printable(r.AgentID), printable(r.Error))
			}
		}
	}
	return err
}
