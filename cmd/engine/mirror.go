package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/natsconn"
	"github.com/wfpnats/wfp/jetstream"
)

// mirrorCmd creates a remote site's mirror of the log, or checks the one
// there: run against the site's leaf node, whose JetStream domain is not
// the hub's. Agents at the site then read the mirror with no option
// changed (it has the log's name, subjects and sequences by default).
func mirrorCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("mirror", stderr)
	var c natsconn.Flags
	c.Register(fs)
	hub := fs.String("hub-domain", "", "JetStream domain of the hub whose log is mirrored (required)")
	stream := fs.String("stream", events.DefaultStream, "the log's stream at the hub")
	name := fs.String("name", "", "the mirror's name at the site (default: the log's name)")
	replicas := fs.Int("replicas", 1, "replicas of the mirror at the site")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *hub == "" {
		return errors.New("mirror: --hub-domain is required: the JetStream domain of the hub (its jetstream.domain)")
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
	s, err := jetstream.EnsureMirror(ctx, js, jetstream.MirrorConfig{Name: *name, Origin: *stream, OriginDomain: *hub, Replicas: *replicas})
	if err != nil {
		return err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "stream %s mirrors %s in domain %s: %d messages, last sequence %d\n",
		info.Config.Name, *stream, *hub, info.State.Msgs, info.State.LastSeq)
	return nil
}
