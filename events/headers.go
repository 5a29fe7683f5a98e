package events

import (
	"fmt"
	"strconv"
	"time"
)

// Header names. Nats-Msg-Id is JetStream's own: with the event id in it, a
// re-sent event is stored once.
const (
	HeaderMsgID       = "Nats-Msg-Id"
	HeaderEvent       = "Wfp-Event"
	HeaderSchema      = "Wfp-Schema"
	HeaderFilterKey   = "Wfp-Filter-Key"
	HeaderFilterID    = "Wfp-Filter-Id"
	HeaderCalloutKey  = "Wfp-Callout-Key"
	HeaderLayer       = "Wfp-Layer"
	HeaderContentType = "Content-Type"
	ContentType       = "application/msgpack"
	// GapEvent is the Wfp-Event of a gap filler (see Subjects.Gap).
	GapEvent = "Gap"
)

// Message is an event ready to publish. Header has the shape of
// nats.Header, so nats.Header(m.Header) converts without copying; this
// package stays free of the client library.
type Message struct {
	Subject string
	Data    []byte
	Header  map[string][]string
}

type header map[string][]string

func (h header) Set(k, v string) { h[k] = []string{v} }

// Message encodes e for its subject, with the payload and the readable
// headers. The header is never nil (batch publishing needs one).
func (s Subjects) Message(e *Event) (Message, error) {
	data, err := Encode(e)
	if err != nil {
		return Message{}, err
	}
	m := Message{Data: data, Header: make(map[string][]string, 8)}
	switch {
	case e.Filter != nil:
		m.Subject = s.Filter(e.Filter)
	case e.Callout != nil:
		m.Subject = s.Callout(e.Callout.Key)
	case e.Session != nil:
		m.Subject = s.Session(e.Session.ID)
	default:
		return Message{}, fmt.Errorf("events: %s event has no filter, callout or session: no subject", e.Type)
	}
	h := header(m.Header)
	h.Set(HeaderMsgID, e.ID)
	h.Set(HeaderEvent, string(e.Type))
	h.Set(HeaderSchema, strconv.Itoa(e.Schema))
	h.Set(HeaderContentType, ContentType)
	if f := e.Filter; f != nil {
		h.Set(HeaderFilterKey, f.Key)
		h.Set(HeaderFilterID, strconv.FormatUint(f.ID, 10))
		if f.CalloutKey != "" {
			h.Set(HeaderCalloutKey, f.CalloutKey)
		}
		h.Set(HeaderLayer, f.Layer)
	}
	if c := e.Callout; c != nil {
		h.Set(HeaderCalloutKey, c.Key)
		if c.Layer != "" {
			h.Set(HeaderLayer, c.Layer)
		}
	}
	setSessionHeader(h, e)
	return m, nil
}

// Compaction. A tombstone (FilterDeleted, CalloutDeleted) replaces its
// subject's history: the server drops every earlier message on the
// subject when it stores a message carrying Nats-Rollup: sub, so the log
// holds one message per filter. With a horizon, the tombstone itself
// carries Nats-TTL and the server removes it once that has passed; the
// log then holds the live state plus the recent deletes.
//
// The stream records its horizon in its metadata under MetaHorizon (whole
// seconds; absent or "0": tombstones are kept for ever), so every reader
// knows how long a delete stays readable. A reader away from the log for
// longer than that cannot trust it to show every delete, and resyncs.
//
// Readers confined to one callout's filter subjects may not read the
// stream's configuration, so every filter event also carries the horizon
// it was written under, in HeaderHorizon (whole seconds; absent: kept for
// ever): the newest event a reader has read tells it the horizon now.
const (
	HeaderRollup  = "Nats-Rollup"
	RollupSubject = "sub" // the value of HeaderRollup: roll up this subject only
	HeaderTTL     = "Nats-TTL"
	HeaderHorizon = "Wfp-Horizon"
	MetaHorizon   = "wfp.horizon"
)

// HeaderPrev is on every filter event the engine writes: the stream
// sequence of the previous filter event naming the same callout (0: none
// before it; filters naming no callout count as callout ""). A reader of
// one callout's events that has read event p and gets an event whose
// HeaderPrev is beyond p has missed something in between (a live agent's
// core subscription lost it), and reads the log from p+1 to catch up.
// The previous event may be gone from the log (rolled up, expired): the
// header names it all the same.
const HeaderPrev = "Wfp-Prev"

// IsTombstone reports whether events of type t end their subject's
// object (a filter, a callout, a session): such an event rolls the
// subject up and expires after the horizon.
func IsTombstone(t Type) bool {
	return t == FilterDeleted || t == CalloutDeleted || t == SessionClosed
}

// FormatTTL renders a horizon as the value of Nats-TTL and MetaHorizon:
// whole seconds, rounded up, so a tombstone never leaves earlier than the
// horizon says. The server's smallest TTL is one second.
func FormatTTL(d time.Duration) string {
	s := (d + time.Second - 1) / time.Second
	return strconv.FormatInt(int64(max(s, 1)), 10)
}

// ParseHorizon reads a MetaHorizon value: 0 for absent, empty or "0"
// (tombstones kept for ever).
func ParseHorizon(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	s, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%s %q: want whole seconds", MetaHorizon, v)
	}
	return time.Duration(s) * time.Second, nil
}

// Compact makes m a tombstone that rolls up its subject and, for
// ttl > 0, expires after ttl. It is for tombstones only (IsTombstone): a
// rolled-up add would erase the history of a filter that still exists.
func (m Message) Compact(ttl time.Duration) {
	h := header(m.Header)
	h.Set(HeaderRollup, RollupSubject)
	if ttl > 0 {
		h.Set(HeaderTTL, FormatTTL(ttl))
	}
}
