package main

import (
	"cmp"
	"context"
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
	// The file comes first, flags after it, as in the usage line; flags
	// first work too.
	rest := args[1:]
	var file string
	if len(rest) > 0 && (rest[0] == "-" || !strings.HasPrefix(rest[0], "-")) {
		file, rest = rest[0], rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		return err
	}
	if file == "" && fs.NArg() == 1 {
		file = fs.Arg(0)
	} else if fs.NArg() > 0 || file == "" {
		return fmt.Errorf("usage: engine tx apply FILE.json (- for stdin)")
	}
	req, err := readTx(file, stdin)
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
