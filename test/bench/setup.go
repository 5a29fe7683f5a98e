package main

import (
	"context"
	"fmt"

	"github.com/wfpnats/wfp/engine"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/jetstream"
)

// engineWorld is an engine on its own fresh stream, a management client on
// a connection of its own, and one callout object the filters name.
type engineWorld struct {
	cfg     jetstream.StreamConfig
	eng     *engine.Engine
	client  *engine.Client
	callout string
	admin   *jsConn
}

// startEngine starts an engine on a fresh stream (name, prefix) and adds a
// callout object through it.
func (b *bench) startEngine(ctx context.Context, name, prefix string) (*engineWorld, error) {
	admin, err := b.jsConnect(name + "-admin")
	if err != nil {
		return nil, err
	}
	_, cfg, err := b.freshStream(ctx, admin.js, name, prefix)
	if err != nil {
		return nil, err
	}
	enc, err := b.connect(name + "-engine")
	if err != nil {
		return nil, err
	}
	eng, err := engine.Start(ctx, enc, engine.Config{Stream: cfg.Name, Prefix: cfg.Prefix, Replicas: cfg.Replicas, Logger: quiet})
	if err != nil {
		return nil, fmt.Errorf("engine start: %w", err)
	}
	cnc, err := b.connect(name + "-client")
	if err != nil {
		eng.Close()
		return nil, err
	}
	w := &engineWorld{cfg: cfg, eng: eng, client: engine.NewClient(cnc, engine.WithPrefix(prefix)), admin: admin}
	co, err := w.client.AddCallout(ctx, events.Callout{Name: "bench callout"})
	if err != nil {
		eng.Close()
		return nil, fmt.Errorf("add callout: %w", err)
	}
	w.callout = co.Key
	return w, nil
}

// close stops the engine and deletes its stream.
func (w *engineWorld) close(b *bench) {
	w.eng.Close()
	b.dropStream(w.admin.js, w.cfg.Name)
}
