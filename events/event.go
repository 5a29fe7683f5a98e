package events

import (
	"errors"
	"time"

	"github.com/google/uuid"
)

// Type names an event. Readers must tolerate types they do not know (R5).
type Type string

const (
	FilterAdded    Type = "FilterAdded"
	FilterDeleted  Type = "FilterDeleted"
	CalloutAdded   Type = "CalloutAdded"
	CalloutDeleted Type = "CalloutDeleted"
)

// SchemaVersion is the version this code writes. A reader handles every
// version up to it; a newer version may carry meaning it cannot see, so
// readers treat it like an unknown type (R5).
const SchemaVersion = 1

// Known reports whether t is a type this code understands.
func (t Type) Known() bool {
	switch t {
	case FilterAdded, FilterDeleted, CalloutAdded, CalloutDeleted, SessionOpened, SessionClosed:
		return true
	}
	return false
}

// Event is one entry of the log. Filter events carry the whole filter, also
// on delete, so an agent that never saw the add still learns what went away
// (R4). Callout events carry the callout, session events the session.
type Event struct {
	Schema  int       `msgpack:"v" json:"schema"`
	Type    Type      `msgpack:"t" json:"type"`
	ID      string    `msgpack:"id" json:"eventId"`
	Time    time.Time `msgpack:"ts" json:"time"`
	Filter  *Filter   `msgpack:"f,omitempty" json:"filter,omitempty"`
	Callout *Callout  `msgpack:"c,omitempty" json:"callout,omitempty"`
	// Reason says why a FilterDeleted was written when no one asked for
	// the delete: "rejected by agent X: ..." for an add a callout refused
	// (R7).
	Reason string `msgpack:"r,omitempty" json:"reason,omitempty"`
	// Session is the session of a SessionOpened or SessionClosed (see
	// session.go).
	Session *Session `msgpack:"s,omitempty" json:"session,omitempty"`
}

// Known reports whether this code can act on the event: a known type, a
// schema it understands and the body that type needs.
func (e *Event) Known() bool {
	if !e.Type.Known() || e.Schema < 1 || e.Schema > SchemaVersion {
		return false
	}
	switch e.Type {
	case FilterAdded, FilterDeleted:
		return e.Filter != nil && e.Filter.Key != ""
	case SessionOpened, SessionClosed:
		return e.Session != nil && e.Session.ID != ""
	default:
		return e.Callout != nil && e.Callout.Key != ""
	}
}

// NewFilterEvent returns a FilterAdded or FilterDeleted event for f with a
// fresh id and the current time.
func NewFilterEvent(t Type, f *Filter) *Event {
	return &Event{Schema: SchemaVersion, Type: t, ID: uuid.NewString(), Time: time.Now().UTC(), Filter: f}
}

// NewCalloutEvent returns a CalloutAdded or CalloutDeleted event for c.
func NewCalloutEvent(t Type, c *Callout) *Event {
	return &Event{Schema: SchemaVersion, Type: t, ID: uuid.NewString(), Time: time.Now().UTC(), Callout: c}
}

// ErrMalformed is wrapped by Decode for payloads that are not an event.
var ErrMalformed = errors.New("events: malformed payload")
