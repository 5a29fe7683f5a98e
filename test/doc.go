// Package test holds the end-to-end suites: the engine, the callout agents
// and the command-line tools against a real nats-server with JetStream
// (embedded in the test process, or the engine binary run as a process).
// Tests name the rule (R1–R8, docs/ARCHITECTURE.md) they check.
package test
