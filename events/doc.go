// Package events is the wire contract of the filter engine: the event types
// written to the JetStream log, their msgpack codec, the subjects they live
// on and the headers that let an operator read them with `nats sub`.
//
// Everything another process must agree on lives here and nowhere else. The
// decoder is deliberately lenient (R5): unknown fields are ignored and an
// unknown event type decodes into an Event whose Known method reports false,
// so a newer writer never stops an older reader.
//
// The codec is written by hand on msgpack's low-level API (encode.go,
// decode.go), not by reflection: readers of the log are bound by decoding.
// Its bytes are those the reflection encoder wrote, pinned by
// testdata/golden.txt. Strings that many filters repeat (layer, action,
// callout key, condition fields) decode to one shared copy (intern.go).
package events
