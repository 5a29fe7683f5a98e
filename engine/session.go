package engine

import (
	"time"

	"github.com/google/uuid"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/projection"
)

// Dynamic sessions (R8). A management client opens a session; callouts and
// filters added with its id are deleted when it ends. It ends when its
// holder closes it, or when it is abandoned: an engine that has heard no
// heartbeat for the session's lease ends it. Either way the end is written
// to the log like any other change, fenced: the deletes (filters first,
// then callouts, so a callout is never deleted while a filter of the
// session names it) and then SessionClosed, as one atomic batch. Agents get
// DeleteFilter for the filters with their context (R4, R6).
//
// The session's existence is in the log (SessionOpened, SessionClosed), so
// it outlives the engine that opened it: every engine folds it, hears the
// heartbeats (core NATS, every engine) and keeps its own lease clock. An
// engine starts a session's lease when it first sees the session open, so
// after a restart every open session gets a fresh lease from the restart.
// Two engines may both find a session abandoned; the write of the second
// is fenced, and after catching up it finds the session no longer open.

// Session endpoints, relative to "<prefix>.api.".
const (
	EndpointSessionOpen  = "session.open"
	EndpointSessionClose = "session.close"
	EndpointSessionList  = "session.list"
)

// Session errors.
const (
	// CodeSessionAborted: the request names a session that is not open
	// (closed, abandoned, or never opened).
	CodeSessionAborted Code = "FWP_E_SESSION_ABORTED"
	// CodeWrongSession: a filter names a callout object of a dynamic
	// session it is not in; the callout would go with its session and
	// leave the filter naming nothing.
	CodeWrongSession Code = "FWP_E_WRONG_SESSION"
)

var (
	ErrSessionAborted = &Error{Code: CodeSessionAborted}
	ErrWrongSession   = &Error{Code: CodeWrongSession}
)

// Lease bounds. A holder heartbeats several times a lease (the Go client
// every third of it).
const (
	DefaultSessionLease = 10 * time.Second
	MinSessionLease     = time.Second
	MaxSessionLease     = 24 * time.Hour
)

// OpenSessionRequest opens a session. Dynamic must be true: objects made
// outside a session are already permanent, so a session that is not
// dynamic would change nothing.
type OpenSessionRequest struct {
	Dynamic bool   `json:"dynamic"`
	Name    string `json:"name,omitempty"`
	// LeaseMs is how long engines wait without a heartbeat before ending
	// the session; 0 means DefaultSessionLease.
	LeaseMs uint64 `json:"leaseMs,omitempty"`
}

// SessionResponse answers session.open: the session as the log has it.
type SessionResponse struct {
	Session *events.Session `json:"session"`
	Seq     uint64          `json:"seq"`
}

// SessionRef names one session.
type SessionRef struct {
	SessionID string `json:"sessionId"`
}

// CloseSessionResponse answers session.close: the sequence of the
// SessionClosed and what the end deleted.
type CloseSessionResponse struct {
	Seq             uint64 `json:"seq"`
	DeletedFilters  int    `json:"deletedFilters"`
	DeletedCallouts int    `json:"deletedCallouts"`
}

// SessionInfo is an open session with the objects it holds and when the
// answering engine last heard its holder (or, if not since, first saw it).
type SessionInfo struct {
	events.Session
	FilterCount   int       `json:"filterCount"`
	CalloutCount  int       `json:"calloutCount"`
	LastHeartbeat time.Time `json:"lastHeartbeat"`
}

// ListSessionsResponse lists the open sessions as of Seq.
type ListSessionsResponse struct {
	Seq      uint64        `json:"seq"`
	Sessions []SessionInfo `json:"sessions"`
}

type openSession struct{ r OpenSessionRequest }

func (cmd openSession) events(_ projection.View, _ uint64) ([]*events.Event, error) {
	lease := time.Duration(cmd.r.LeaseMs) * time.Millisecond
	switch {
	case !cmd.r.Dynamic:
		return nil, errorf(CodeInvalidParameter, "dynamic: only dynamic sessions exist (objects added without a session are permanent already); set dynamic to true")
	case cmd.r.LeaseMs == 0:
		lease = DefaultSessionLease
	case lease < MinSessionLease || lease > MaxSessionLease:
		return nil, errorf(CodeInvalidParameter, "leaseMs: %d, want %d to %d", cmd.r.LeaseMs, MinSessionLease.Milliseconds(), MaxSessionLease.Milliseconds())
	}
	if err := checkText("name", cmd.r.Name, false, maxNameLen); err != nil {
		return nil, err
	}
	s := &events.Session{ID: uuid.NewString(), Name: cmd.r.Name, Dynamic: true, LeaseMs: uint64(lease.Milliseconds())}
	return []*events.Event{events.NewSessionEvent(events.SessionOpened, s)}, nil
}

// endSession deletes what a session holds and closes it. One write holds
// at most MaxTxOps events; a bigger session ends in several, each deleting
// what is left, filters first, the last one closing it.
type endSession struct {
	id     string
	reason string // on every event it writes
}

func (endSession) batched() {}

func (cmd endSession) events(v projection.View, seq uint64) ([]*events.Event, error) {
	id, err := parseKey("sessionId", cmd.id)
	if err != nil {
		return nil, err
	}
	s, ok := v.Session(id)
	if !ok {
		return nil, errorf(CodeSessionAborted, "session %s is not open", id)
	}
	filters, callouts := v.SessionObjects(id)
	// Each delete is validated like a requested one, against the state the
	// deletes before it leave: filters first, so that a callout's filters
	// are gone when it comes to the callout.
	ov := projection.NewOverlay(v)
	var out []*events.Event
	add := func(ev *events.Event, err error) error {
		if err != nil {
			return err
		}
		ov.Apply(seq+uint64(len(out)), ev)
		out = append(out, ev)
		return nil
	}
	for _, f := range filters {
		if len(out) == MaxTxOps {
			return out, nil // the rest, the callouts and the close in the next write
		}
		if err := add(deleteFilter{ref: FilterRef{FilterID: f.ID}, reason: cmd.reason}.event(ov, 0)); err != nil {
			return nil, err
		}
	}
	for _, c := range callouts {
		if len(out) == MaxTxOps {
			return out, nil
		}
		// A filter outside the session naming its callout cannot be added
		// (FWP_E_WRONG_SESSION); if a log has one anyway, the callout
		// stays rather than the session's end failing on FWP_E_IN_USE.
		if ov.FiltersNaming(c.Key) > 0 {
			continue
		}
		if err := add(deleteCallout{key: c.Key}.event(ov, 0)); err != nil {
			return nil, err
		}
	}
	if len(out) == MaxTxOps {
		return out, nil
	}
	ev := events.NewSessionEvent(events.SessionClosed, s.Clone())
	ev.Reason = cmd.reason
	return append(out, ev), nil
}

// checkSession validates the session an add names, canonicalising its id
// in place: it must be open.
func checkSession(v projection.View, id *string) error {
	if *id == "" {
		return nil
	}
	if err := optionalKey("sessionId", id); err != nil {
		return err
	}
	if _, ok := v.Session(*id); !ok {
		return errorf(CodeSessionAborted, "sessionId: session %s is not open", *id)
	}
	return nil
}

// checkCalloutSession refuses a filter naming callout c of a dynamic
// session the filter is not in: c goes when its session ends, which must
// never be blocked by a filter naming it (FWP_E_IN_USE), nor leave the
// filter naming nothing.
func checkCalloutSession(f *events.Filter, c *events.Callout) error {
	if c.Session == "" || c.Session == f.Session {
		return nil
	}
	where := "no session"
	if f.Session != "" {
		where = "session " + f.Session
	}
	return errorf(CodeWrongSession, "calloutKey: callout %s belongs to dynamic session %s and goes when it ends; a filter naming it must be added in that session, not in %s",
		c.Key, c.Session, where)
}

// inSession returns ops with every add that names no session put in
// session id (a copy; ops is not changed).
func inSession(ops []TxOp, id string) []TxOp {
	if id == "" {
		return ops
	}
	out := make([]TxOp, len(ops))
	for i, op := range ops {
		switch {
		case op.Callout != nil && op.Callout.Session == "":
			c := *op.Callout
			c.Session = id
			op.Callout = &c
		case op.Filter != nil && op.Filter.Session == "":
			f := *op.Filter
			f.Session = id
			op.Filter = &f
		}
		out[i] = op
	}
	return out
}
