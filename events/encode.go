package events

import (
	"bytes"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// The encoder writes, field by field, what msgpack's reflection encoder
// wrote for the struct tags in event.go and model.go (they stay as the
// documentation of the wire and for encoding/json): a map of the fields in
// declaration order, omitempty fields left out when empty, ints in their
// shortest form (UseCompactInts), times as the timestamp extension (-1).
// It calls the same msgpack.Encoder methods the reflection path calls,
// and testdata/golden.txt holds it to the bytes.

// encoder is a msgpack.Encoder whose writer appends to buf. Appending to
// a slice cannot fail, so neither can the Encoder's methods, and their
// errors are not checked.
type encoder struct {
	enc     *msgpack.Encoder
	buf     []byte
	scratch []byte // Encode's buffer, kept between uses
}

func (w *encoder) Write(p []byte) (int, error) { w.buf = append(w.buf, p...); return len(p), nil }
func (w *encoder) WriteByte(c byte) error      { w.buf = append(w.buf, c); return nil }

var encoders = sync.Pool{New: func() any {
	w := new(encoder)
	w.enc = msgpack.NewEncoder(w)
	w.enc.UseCompactInts(true)
	return w
}}

// maxKeptScratch bounds the buffer a pooled encoder keeps: an event with
// 64 KiB of provider data should not pin that much per pooled encoder.
const maxKeptScratch = 16 << 10

// Encode returns the msgpack payload of e. The error is always nil; it
// stays for callers written against the reflection encoder.
func Encode(e *Event) ([]byte, error) {
	w := encoders.Get().(*encoder)
	w.buf = w.scratch[:0]
	w.event(e)
	out := bytes.Clone(w.buf) // exactly sized: payloads are kept in publish buffers
	if cap(w.buf) <= maxKeptScratch {
		w.scratch = w.buf
	}
	w.buf = nil
	encoders.Put(w)
	return out, nil
}

// AppendEncode appends the msgpack payload of e to dst and returns the
// extended slice: the same bytes as Encode, without an allocation when
// dst has room. The error is always nil.
func AppendEncode(dst []byte, e *Event) ([]byte, error) {
	w := encoders.Get().(*encoder)
	w.buf = dst
	w.event(e)
	dst, w.buf = w.buf, nil
	encoders.Put(w)
	return dst, nil
}

func (w *encoder) event(e *Event) {
	enc := w.enc
	if e == nil {
		enc.EncodeNil()
		return
	}
	enc.EncodeMapLen(4 + count(e.Filter != nil) + count(e.Callout != nil) + count(e.Reason != "") + count(e.Session != nil))
	enc.EncodeString("v")
	enc.EncodeInt(int64(e.Schema))
	w.str("t", string(e.Type))
	w.str("id", e.ID)
	enc.EncodeString("ts")
	enc.EncodeTime(e.Time)
	if e.Filter != nil {
		enc.EncodeString("f")
		w.filter(e.Filter)
	}
	if e.Callout != nil {
		enc.EncodeString("c")
		w.callout(e.Callout)
	}
	w.optStr("r", e.Reason)
	if e.Session != nil {
		enc.EncodeString("s")
		w.session(e.Session)
	}
}

func (w *encoder) filter(f *Filter) {
	enc := w.enc
	enc.EncodeMapLen(6 + count(f.Description != "") + count(f.SubLayerKey != "") + count(len(f.Conditions) > 0) +
		count(f.CalloutKey != "") + count(len(f.Flags) > 0) + count(f.ProviderKey != "") + count(len(f.ProviderData) > 0) +
		count(f.Session != ""))
	w.str("k", f.Key)
	enc.EncodeString("i")
	enc.EncodeUint(f.ID)
	w.str("n", f.Name)
	w.optStr("d", f.Description)
	w.str("l", f.Layer)
	w.optStr("sl", f.SubLayerKey)
	enc.EncodeString("w")
	enc.EncodeUint(f.Weight)
	if len(f.Conditions) > 0 {
		enc.EncodeString("c")
		enc.EncodeArrayLen(len(f.Conditions))
		for _, c := range f.Conditions {
			enc.EncodeMapLen(3)
			w.str("f", c.Field)
			w.str("m", c.Match)
			w.str("v", c.Value)
		}
	}
	w.str("a", string(f.Action))
	w.optStr("ck", f.CalloutKey)
	w.strings("fl", f.Flags)
	w.optStr("pk", f.ProviderKey)
	if len(f.ProviderData) > 0 {
		enc.EncodeString("pd")
		enc.EncodeBytes(f.ProviderData)
	}
	w.optStr("s", f.Session)
}

func (w *encoder) callout(c *Callout) {
	w.enc.EncodeMapLen(2 + count(c.Description != "") + count(c.Layer != "") + count(len(c.Flags) > 0) + count(c.ProviderKey != "") +
		count(c.Session != ""))
	w.str("k", c.Key)
	w.str("n", c.Name)
	w.optStr("d", c.Description)
	w.optStr("l", c.Layer)
	w.strings("fl", c.Flags)
	w.optStr("pk", c.ProviderKey)
	w.optStr("s", c.Session)
}

func (w *encoder) session(s *Session) {
	w.enc.EncodeMapLen(3 + count(s.Name != ""))
	w.str("k", s.ID)
	w.optStr("n", s.Name)
	w.enc.EncodeString("dy")
	w.enc.EncodeBool(s.Dynamic)
	w.enc.EncodeString("ls")
	w.enc.EncodeUint(s.LeaseMs)
}

func (w *encoder) str(key, v string) {
	w.enc.EncodeString(key)
	w.enc.EncodeString(v)
}

// optStr writes an omitempty string field.
func (w *encoder) optStr(key, v string) {
	if v != "" {
		w.str(key, v)
	}
}

// strings writes an omitempty []string field.
func (w *encoder) strings(key string, v []string) {
	if len(v) == 0 {
		return
	}
	w.enc.EncodeString(key)
	w.enc.EncodeArrayLen(len(v))
	for _, s := range v {
		w.enc.EncodeString(s)
	}
}

func count(b bool) int {
	if b {
		return 1
	}
	return 0
}
