// Command engine runs the filter engine and manages it.
//
//	engine [serve]              embedded nats-server + stream + API
//	engine callout add|delete|get|list ...
//	engine filter add|delete|get|list ...
//	engine tx apply FILE.json   one atomic transaction
//	engine load FILE.json       a bulk load, in transactions of up to 1000
//	engine classify --layer L --field NAME=VALUE ...
//	engine session open|keepalive|run|close|list ...   dynamic sessions
//	engine events [--callout UUID] [--from-seq N] [--follow] [--archive]
//	engine decode               one event payload on stdin, JSON on stdout
//	engine permissions ROLE     the NATS permissions of an agent, operator, manager or the engine
//
// `engine --help` lists every command with its flags, `engine COMMAND
// --help` says what one does; both are generated from the flag sets
// (package cli), as README.md's command list is checked to be.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/wfpnats/wfp/internal/cli"
	"github.com/wfpnats/wfp/internal/natsconn"
)

// exitRejected is tx apply's exit status when the transaction committed
// but an agent rejected one of its filters (R7: that filter was taken
// back).
const exitRejected = 3

const notes = `Connection flags: --server URL (default $NATS_URL, else nats://127.0.0.1:4222), and the nats
CLI's credentials: --creds, --nkey, --user with --password-file or $NATS_PASSWORD, --token-file or
$NATS_TOKEN, --tlsca, --tlscert, --tlskey (and their NATS_* variables). --session defaults to
$WFP_SESSION, which session run sets for its command.

Exit status: 0 done; 1 refused or failed (the message says why: an FWP_E_* code for a refusal);
2 the command line is wrong (nothing was done); 3 tx apply committed, but an agent rejected one of
its filters (taken back again, R7); session run exits as its command did.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(cli.Exit("engine", err, os.Stderr))
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	return program(stdin, stdout, stderr).Run(ctx, args)
}

// program is the engine command: every subcommand, in the order its help
// (and README.md) lists them.
func program(stdin io.Reader, stdout, stderr io.Writer) *cli.Program {
	s := streams{stdin, stdout, stderr}
	return &cli.Program{
		Name:    "engine",
		Summary: "a WFP-style filter engine whose callout notifications are an event log on NATS JetStream",
		Default: "serve",
		Stdout:  stdout,
		Groups:  []cli.Group{{Name: "connection flags", Flags: natsconn.FlagNames}},
		Notes:   notes,
		Commands: []*cli.Command{
			serveCommand(s),
			calloutAdd(s), calloutDelete(s), calloutGet(s), calloutList(s),
			filterAdd(s), filterDelete(s), filterGet(s), filterList(s),
			txApply(s), loadCommand(s),
			classifyCommand(s),
			sessionOpen(s), sessionKeepalive(s), sessionRun(s), sessionClose(s), sessionList(s),
			eventsCommand(s),
			decodeCommand(s),
			permissionsAgent(s), permissionsRole(s, "operator"), permissionsRole(s, "manager"), permissionsRole(s, "engine"),
			mirrorCommand(s),
		},
	}
}

// streams are the command's standard streams.
type streams struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}
