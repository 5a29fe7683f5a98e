package main

import (
	"context"
	"flag"
	"fmt"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/cli"
	"github.com/wfpnats/wfp/internal/natsconn"
	"github.com/wfpnats/wfp/jetstream"
)

// mirrorCommand creates a remote site's mirror of the log, or checks the
// one there: run against the site's leaf node, whose JetStream domain is
// not the hub's. Agents at the site then read the mirror with no option
// changed (it has the log's name, subjects and sequences by default).
func mirrorCommand(s streams) *cli.Command {
	return &cli.Command{Name: "mirror",
		Summary: "Create (or check) a remote site's mirror of the log, on the site's leaf node, for the site's agents to read.",
		Flags: func(fs *flag.FlagSet) cli.Run {
			var c natsconn.Flags
			c.Register(fs)
			hub := fs.String("hub-domain", "", "JetStream `DOMAIN` of the hub whose log is mirrored (required)")
			stream := fs.String("stream", events.DefaultStream, "`NAME` of the log's stream at the hub")
			name := fs.String("name", "", "the mirror's `NAME` at the site (default: the log's name)")
			replicas := fs.Int("replicas", 1, "`N` replicas of the mirror at the site")
			return func(ctx context.Context, _ []string) error {
				if *hub == "" {
					return cli.Usagef("--hub-domain is required: the JetStream domain of the hub (its jetstream.domain)")
				}
				nc, err := c.Connect("wfp-engine-mirror")
				if err != nil {
					return err
				}
				defer nc.Close()
				js, err := natsjs.New(nc)
				if err != nil {
					return err
				}
				m, err := jetstream.EnsureMirror(ctx, js, jetstream.MirrorConfig{Name: *name, Origin: *stream, OriginDomain: *hub, Replicas: *replicas})
				if err != nil {
					return err
				}
				info, err := m.Info(ctx)
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(s.stdout, "stream %s mirrors %s in domain %s: %d messages, last sequence %d\n",
					info.Config.Name, *stream, *hub, info.State.Msgs, info.State.LastSeq)
				return err
			}
		}}
}
