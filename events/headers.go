package events

import (
	"fmt"
	"strconv"
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
