package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/cli"
	"github.com/wfpnats/wfp/permissions"
)

// The permissions commands print the NATS permissions of one party of
// the deployment, for a nats-server configuration file (the default) or
// a user JWT (--json): see package permissions and docs/SECURITY.md.

// permissionFlags registers what every role's command takes.
func permissionFlags(fs *flag.FlagSet) (*permissions.Deployment, *bool) {
	d := &permissions.Deployment{}
	fs.StringVar(&d.Stream, "stream", events.DefaultStream, "`NAME` of the stream holding the event log")
	fs.StringVar(&d.Prefix, "prefix", events.DefaultPrefix, "subject `PREFIX` of the deployment")
	fs.StringVar(&d.Archive, "archive-stream", "", "`NAME` of the archive stream, if the engine keeps one (default: the log stream's name + \"_ARCHIVE\")")
	asJSON := fs.Bool("json", false, "print the permissions of a user JWT's claims (pub, sub, resp) instead of a server config entry")
	return d, asJSON
}

func permissionsAgent(s streams) *cli.Command {
	return &cli.Command{Name: "permissions agent", Summary: "Print the NATS permissions of one callout agent: its callout, its agent id, nothing else.",
		Flags: func(fs *flag.FlagSet) cli.Run {
			d, asJSON := permissionFlags(fs)
			var callout, agentID, durable string
			fs.StringVar(&callout, "callout", "", "the agent's callout key, a `UUID` (required)")
			fs.StringVar(&agentID, "agent-id", "", "the agent's `ID`, as given to callout-agent --agent-id (required)")
			fs.StringVar(&durable, "durable", "", "its durable consumer `NAME`, if it runs with --durable")
			return func(context.Context, []string) error {
				set, err := permissions.Agent(*d, callout, agentID, durable)
				return printPermissions(s.stdout, set, err, *asJSON)
			}
		}}
}

func permissionsRole(s streams, role string) *cli.Command {
	summary := map[string]string{
		"operator": "Print the NATS permissions of a read-only operator: lists, gets, classify, the log, service discovery.",
		"manager":  "Print the NATS permissions of a management client: every API endpoint and session heartbeats.",
		"engine":   "Print the NATS permissions of the engine itself.",
	}[role]
	build := map[string]func(permissions.Deployment) (permissions.Set, error){
		"operator": permissions.Operator, "manager": permissions.Manager, "engine": permissions.Engine,
	}[role]
	return &cli.Command{Name: "permissions " + role, Summary: summary,
		Flags: func(fs *flag.FlagSet) cli.Run {
			d, asJSON := permissionFlags(fs)
			return func(context.Context, []string) error {
				set, err := build(*d)
				return printPermissions(s.stdout, set, err, *asJSON)
			}
		}}
}

func printPermissions(w io.Writer, set permissions.Set, err error, asJSON bool) error {
	if err != nil {
		return cli.Usagef("%w", err)
	}
	if asJSON {
		b, err := set.JSON()
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	_, err = io.WriteString(w, set.Conf())
	return err
}
