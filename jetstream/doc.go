// Package jetstream holds the NATS JetStream plumbing of WFP: the event-log
// stream (EnsureStream), fenced atomic publishing (PublishFenced) and an
// embedded nats-server for single-binary deployments and tests
// (StartEmbedded).
//
// The stream is the single source of truth: every filter and callout event is
// a message on it, and the engine is a single writer by fencing rather than by
// election. A write carries Nats-Expected-Last-Sequence, so an engine that has
// not applied the latest event cannot write; it gets a *FenceError, catches up
// and re-validates. Because nothing can interleave with a fenced write, the
// caller knows in advance the sequence each of its messages will get.
//
// This package deliberately imports no other package of this module: it only
// speaks NATS, so it can be reused and tested on its own.
package jetstream
