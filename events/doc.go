// Package events is the wire contract of the filter engine: the event types
// written to the JetStream log, their msgpack codec, the subjects they live
// on and the headers that let an operator read them with `nats sub`.
//
// Everything another process must agree on lives here and nowhere else. The
// decoder is deliberately lenient (R5): unknown fields are ignored and an
// unknown event type decodes into an Event whose Known method reports false,
// so a newer writer never stops an older reader.
package events
