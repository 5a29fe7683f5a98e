package events

import (
	"time"

	"github.com/google/uuid"
)

// Dynamic sessions (R8). A management client opens a session; callouts and
// filters added through it carry its id (Filter.Session, Callout.Session)
// and are deleted when it ends, closed by its holder or abandoned (no
// heartbeat for its lease). The session's life is in the log, on its own
// subject, so that it outlives the engine that opened it:
//
//	<prefix>.session.<sessionId>    SessionOpened, then SessionClosed (the stream)
//	<prefix>.heartbeat.<sessionId>  empty message from the holder (core NATS, every engine)
//
// Readers that do not know sessions skip the two event types and ignore
// the session keys of filters and callouts (R5).
const (
	SessionOpened Type = "SessionOpened"
	SessionClosed Type = "SessionClosed"
)

// HeaderSession carries the session id on session events and on the events
// of filters and callouts added in a session.
const HeaderSession = "Wfp-Session-Id"

// Session is a dynamic session as the log records it.
type Session struct {
	ID   string `msgpack:"k" json:"sessionId"`
	Name string `msgpack:"n,omitempty" json:"name,omitempty"`
	// Dynamic is true for every session written today: its objects go
	// when it ends. It is on the wire so that another kind of session can
	// be added without an old reader deleting its objects.
	Dynamic bool `msgpack:"dy" json:"dynamic"`
	// LeaseMs is how long, in milliseconds, an engine waits without a
	// heartbeat before it ends the session as abandoned.
	LeaseMs uint64 `msgpack:"ls" json:"leaseMs"`
}

// Lease is LeaseMs as a duration.
func (s *Session) Lease() time.Duration { return time.Duration(s.LeaseMs) * time.Millisecond }

// Clone returns a copy.
func (s *Session) Clone() *Session {
	if s == nil {
		return nil
	}
	c := *s
	return &c
}

// NewSessionEvent returns a SessionOpened or SessionClosed event for s.
func NewSessionEvent(t Type, s *Session) *Event {
	return &Event{Schema: SchemaVersion, Type: t, ID: uuid.NewString(), Time: time.Now().UTC(), Session: s}
}

// Session returns the subject of session id's events.
func (s Subjects) Session(id string) string { return s.Prefix + ".session." + id }

// AllSessions matches every session subject.
func (s Subjects) AllSessions() string { return s.Prefix + ".session.*" }

// Heartbeat returns the subject a session's holder heartbeats on.
func (s Subjects) Heartbeat(id string) string { return s.Prefix + ".heartbeat." + id }

// AllHeartbeats matches every session's heartbeats.
func (s Subjects) AllHeartbeats() string { return s.Prefix + ".heartbeat.*" }

// setSessionHeader sets Wfp-Session-Id on the message of an event that
// belongs to a session.
func setSessionHeader(h header, e *Event) {
	switch {
	case e.Session != nil:
		h.Set(HeaderSession, e.Session.ID)
	case e.Filter != nil && e.Filter.Session != "":
		h.Set(HeaderSession, e.Filter.Session)
	case e.Callout != nil && e.Callout.Session != "":
		h.Set(HeaderSession, e.Callout.Session)
	}
}
