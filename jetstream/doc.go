// Package jetstream holds the NATS JetStream plumbing of WFP: the event-log
// stream (EnsureStream) and fenced publishing (PublishFenced for one unit,
// PublishChain for a group commit). The embedded nats-server lives apart,
// in package embedded, so that what reads the log never links a server.
//
// The stream is the single source of truth: every filter and callout event is
// a message on it, and the engine is a single writer by fencing rather than by
// election. A write carries Nats-Expected-Last-Sequence, so an engine that has
// not applied the latest event cannot write; it gets a *FenceError, catches up
// and re-validates. Because nothing can interleave with a fenced write, the
// caller knows in advance the sequence each of its messages will get.
//
// Of this module it imports only events, for the subject layout: the wire
// contract is defined once, there.
package jetstream
