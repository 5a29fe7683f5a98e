// Command engine runs the filter engine and manages it.
//
//	engine                      serve: embedded nats-server + stream + API
//	engine callout add|delete|list ...
//	engine filter add|delete|list ...
//	engine tx apply FILE.json   one atomic transaction
//	engine classify --layer L --field NAME=VALUE ...
//	engine session open|keepalive|run|close|list ...   dynamic sessions
//	engine events [--callout UUID] [--from-seq N] [--follow]
//	engine decode               one event payload on stdin, JSON on stdout
//	engine permissions ROLE     the NATS permissions of an agent, operator, manager or the engine
//	engine mirror --hub-domain D  a remote site's mirror of the log
//
// Run any subcommand with -h for its flags.
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
)

const usage = `usage:
  engine [serve] [--listen 127.0.0.1:4222] [--data ./data] [--server-config FILE] [--nats-url URL] [--sync always|INTERVAL] [--accept-log-loss]
  engine callout add --key UUID --name NAME [--layer LAYER] [--session ID] [--json]
  engine callout delete --key UUID
  engine callout list [--json]
  engine filter add [--key UUID] --name NAME --layer LAYER [--weight N] --action ACTION [--callout UUID] [--condition FIELD=VALUE]... [--notify-timeout 5s] [--session ID] [--json]
  engine filter delete (--key UUID | --id N)
  engine filter list [--callout UUID] [--layer LAYER] [--provider UUID] [--json]
  engine tx apply FILE.json [--json] [--notify-timeout 5s] [--session ID]
  engine classify --layer LAYER [--field NAME=VALUE]... [--json]
  engine session open --dynamic [--name N] [--lease 10s] [--json]
  engine session keepalive ID
  engine session run --dynamic [--name N] [--lease 10s] -- CMD [ARG]...
  engine session close ID [--json]
  engine session list [--json]
  engine events [--callout UUID] [--from-seq N] [--follow]
  engine decode < payload
  engine mirror --hub-domain DOMAIN [--stream WFP] [--name NAME] [--replicas N]
  engine permissions agent --callout UUID --agent-id ID [--durable NAME] [--json]
  engine permissions operator|manager|engine [--json]
Management commands take --server URL (default $NATS_URL, else nats://127.0.0.1:4222)
and the nats CLI's credentials: --creds, --nkey, --user with --password-file or
$NATS_PASSWORD, --token-file or $NATS_TOKEN, --tlsca, --tlscert, --tlskey.
--session defaults to $WFP_SESSION, which session run sets for its command.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	var code exitCode
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	case errors.As(err, &code): // session run: the command's own exit status
		os.Exit(int(code))
	default:
		fmt.Fprintln(os.Stderr, "engine:", printable(err.Error()))
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || (len(args[0]) > 0 && args[0][0] == '-') {
		return serve(ctx, args, stderr)
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "serve":
		return serve(ctx, rest, stderr)
	case "decode":
		return decode(stdin, stdout)
	case "permissions":
		return permissionsCmd(ctx, rest, stdout, stderr)
	case "events":
		return eventsCmd(ctx, rest, stdout, stderr)
	case "tx":
		return txCmd(ctx, rest, stdin, stdout, stderr)
	case "classify":
		return classifyCmd(ctx, rest, stdout, stderr)
	case "session":
		return sessionCmd(ctx, rest, stdin, stdout, stderr)
	case "mirror":
		return mirrorCmd(ctx, rest, stdout, stderr)
	case "callout", "filter":
		if len(rest) == 0 {
			return fmt.Errorf("%s needs a verb: add, delete or list\n%s", sub, usage)
		}
		return manage(ctx, sub, rest[0], rest[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", sub, usage)
}

// newFlags returns a flag set that reports errors instead of exiting, so
// run stays testable.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parse parses fs and refuses stray positional arguments, which are almost
// always a forgotten "--".
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}
