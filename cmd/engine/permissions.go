package main

import (
	"context"
	"fmt"
	"io"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/permissions"
)

// permissionsCmd prints the NATS permissions of one party of the
// deployment, for a nats-server configuration file (the default) or a
// user JWT (--json): see package permissions and docs/SECURITY.md.
func permissionsCmd(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "" || args[0][0] == '-' {
		return fmt.Errorf("usage: engine permissions agent|operator|manager|engine [flags]\n%s", usage)
	}
	role, rest := args[0], args[1:]
	fs := newFlags("permissions "+role, stderr)
	d := permissions.Deployment{}
	fs.StringVar(&d.Stream, "stream", events.DefaultStream, "stream holding the event log")
	fs.StringVar(&d.Prefix, "prefix", events.DefaultPrefix, "subject prefix of the deployment")
	fs.StringVar(&d.Archive, "archive-stream", "", "the archive stream, if the engine keeps one (default: the log stream's name + \"_ARCHIVE\")")
	asJSON := fs.Bool("json", false, "print the permissions of a user JWT's claims (pub, sub, resp) instead of a server config entry")
	var callout, agentID, durable string
	if role == "agent" {
		fs.StringVar(&callout, "callout", "", "the agent's callout key (required)")
		fs.StringVar(&agentID, "agent-id", "", "the agent's id, as given to callout-agent --agent-id (required)")
		fs.StringVar(&durable, "durable", "", "its durable consumer name, if it runs with --durable")
	}
	if err := parse(fs, rest); err != nil {
		return err
	}
	var set permissions.Set
	var err error
	switch role {
	case "agent":
		if callout == "" || agentID == "" {
			return fmt.Errorf("permissions agent: --callout and --agent-id are required")
		}
		set, err = permissions.Agent(d, callout, agentID, durable)
	case "operator":
		set, err = permissions.Operator(d)
	case "manager":
		set, err = permissions.Manager(d)
	case "engine":
		set, err = permissions.Engine(d)
	default:
		return fmt.Errorf("permissions: unknown role %q: want agent, operator, manager or engine", role)
	}
	if err != nil {
		return fmt.Errorf("permissions %s: %w", role, err)
	}
	if *asJSON {
		b, err := set.JSON()
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
	_, err = io.WriteString(stdout, set.Conf())
	return err
}
