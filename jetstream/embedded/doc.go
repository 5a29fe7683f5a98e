// Package embedded runs a nats-server with JetStream inside the calling
// process: the engine's zero-configuration mode and the tests' real server.
//
// It is the only package of this module that links nats-server, so that
// the agent SDK (package callout) and the agent binary do not carry a
// whole server they never run.
package embedded
