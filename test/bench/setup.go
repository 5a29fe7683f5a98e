package main

import (
	"context"

	"github.com/wfpnats/wfp/engine"
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
	return b.startEngineWith(ctx, name, prefix, engine.Config{})
}

// close stops the engine and deletes its stream.
func (w *engineWorld) close(b *bench) {
	w.eng.Close()
	b.dropStream(w.admin.js, w.cfg.Name)
}
