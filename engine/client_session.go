package engine

import (
	"context"
	"sync"
	"time"

	"github.com/wfpnats/wfp/events"
)

// Classify asks the engine what a layer's filters do with one input: the
// matching filters in WFP's evaluation order and the decision.
func (c *Client) Classify(ctx context.Context, req ClassifyRequest, opts ...CallOption) (*ClassifyResponse, error) {
	var resp ClassifyResponse
	if err := c.call(ctx, EndpointClassify, req, &resp, 0, opts); err != nil {
		return nil, err
	}
	return &resp, nil
}

// WithSession puts the callouts and filters an AddCallout, AddFilter or
// ApplyTx adds in dynamic session id (unless they name one themselves):
// they are deleted when the session ends (R8).
func WithSession(id string) CallOption {
	return func(o *callOptions) { o.session = id }
}

// SessionConfig configures OpenSession.
type SessionConfig struct {
	// Name is shown by session listings.
	Name string
	// Lease is how long engines wait without a heartbeat before ending
	// the session as abandoned (default DefaultSessionLease).
	Lease time.Duration
	// Heartbeat is how often the Session heartbeats (default a third of
	// the lease).
	Heartbeat time.Duration
}

// Session is an open dynamic session (R8): callouts and filters added
// WithSession(s.ID()) are deleted when it ends. It heartbeats in the
// background until Close or Detach; if its program dies, the heartbeats
// stop and the engines end the session after its lease.
type Session struct {
	c    *Client
	info events.Session
	seq  uint64

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// OpenSession opens a dynamic session and starts heartbeating it.
func (c *Client) OpenSession(ctx context.Context, cfg SessionConfig, opts ...CallOption) (*Session, error) {
	req := OpenSessionRequest{Dynamic: true, Name: cfg.Name, LeaseMs: uint64(cfg.Lease.Milliseconds())}
	if cfg.Lease < 0 || (cfg.Lease > 0 && req.LeaseMs == 0) {
		return nil, errorf(CodeInvalidParameter, "lease %v: want at least %v", cfg.Lease, MinSessionLease)
	}
	var resp SessionResponse
	if err := c.call(ctx, EndpointSessionOpen, req, &resp, 0, opts); err != nil {
		return nil, err
	}
	s := &Session{c: c, info: *resp.Session, seq: resp.Seq, stop: make(chan struct{}), done: make(chan struct{})}
	every := cfg.Heartbeat
	if every <= 0 {
		every = s.info.Lease() / 3
	}
	go s.heartbeat(every)
	return s, nil
}

// ID is the session's id, for WithSession.
func (s *Session) ID() string { return s.info.ID }

// Info is the session as the log records it.
func (s *Session) Info() events.Session { return s.info }

// Seq is the log sequence of the session's SessionOpened.
func (s *Session) Seq() uint64 { return s.seq }

func (s *Session) heartbeat(every time.Duration) {
	defer close(s.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		// A lost heartbeat is made up by the next; the lease covers
		// several.
		_ = s.c.Heartbeat(s.info.ID)
		select {
		case <-t.C:
		case <-s.stop:
			return
		}
	}
}

// Detach stops heartbeating without closing the session: the engines end
// it once its lease has passed, as if this program had died. Another
// process may keep it alive instead by heartbeating its id.
func (s *Session) Detach() {
	s.once.Do(func() { close(s.stop) })
	<-s.done
}

// Close stops heartbeating and ends the session: the engine deletes its
// filters and callouts, then records its end. Closing a session that
// already ended (abandoned, or closed elsewhere) is ErrSessionAborted.
func (s *Session) Close(ctx context.Context, opts ...CallOption) (*CloseSessionResponse, error) {
	s.Detach()
	return s.c.CloseSession(ctx, s.info.ID, opts...)
}

// CloseSession ends session id: its filters and callouts are deleted and
// its end recorded. A retry after a timeout may find it closed by the
// first try: ErrSessionAborted then means the session is over either way.
func (c *Client) CloseSession(ctx context.Context, id string, opts ...CallOption) (*CloseSessionResponse, error) {
	var resp CloseSessionResponse
	if err := c.call(ctx, EndpointSessionClose, SessionRef{SessionID: id}, &resp, DefaultWriteTimeout, opts); err != nil {
		return nil, err
	}
	return &resp, nil
}

// ListSessions lists the open sessions with what they hold.
func (c *Client) ListSessions(ctx context.Context, opts ...CallOption) (*ListSessionsResponse, error) {
	var resp ListSessionsResponse
	if err := c.call(ctx, EndpointSessionList, struct{}{}, &resp, 0, opts); err != nil {
		return nil, err
	}
	return &resp, nil
}

// Heartbeat tells every engine that session id's holder is alive. It is
// fire and forget (core NATS, no answer); a Session sends them itself.
func (c *Client) Heartbeat(id string) error {
	return c.nc.Publish(c.subj.Heartbeat(id), nil)
}
