package engine

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/wfpnats/wfp/events"
)

// DefaultClientTimeout is how long a call waits for the engine when its
// context has no deadline. Calls that wait for callout agents (AddFilter,
// ApplyTx) wait longer: see CallOption.
const DefaultClientTimeout = 10 * time.Second

// Client calls the management API of the engines serving one prefix.
// It is safe for concurrent use: concurrent calls are what lets the engine
// group writes.
type Client struct {
	nc      *nats.Conn
	subj    events.Subjects
	timeout time.Duration
}

// ClientOption configures a Client.
type ClientOption func(*Client)

// WithPrefix sets the subject prefix of the engine's stream (default
// events.DefaultPrefix, "wfp").
func WithPrefix(prefix string) ClientOption { return func(c *Client) { c.subj.Prefix = prefix } }

// WithTimeout sets how long a call waits when its context has no deadline
// (default DefaultClientTimeout). Calls that wait for callout agents add
// their notify timeout to it.
func WithTimeout(d time.Duration) ClientOption { return func(c *Client) { c.timeout = d } }

// NewClient returns a client that talks to the engine over nc.
func NewClient(nc *nats.Conn, opts ...ClientOption) *Client {
	c := &Client{nc: nc, subj: events.Subjects{Prefix: events.DefaultPrefix}, timeout: DefaultClientTimeout}
	for _, o := range opts {
		o(c)
	}
	return c
}

// CallOption configures one call. Every method takes them; an option that
// does not apply to a call is ignored by it.
type CallOption func(*callOptions)

type callOptions struct {
	notifyTimeout time.Duration // 0: the engine's default
	session       string        // WithSession
	pageSize      int           // 0: as many as fit in a reply
}

// WithPageSize caps how many entries each page of a ListFilters or
// ListCallouts carries (default: as many as fit in one reply). The calls
// read every page either way.
func WithPageSize(n int) CallOption {
	return func(o *callOptions) { o.pageSize = n }
}

// WithNotifyTimeout bounds how long an AddFilter or ApplyTx waits for the
// callout's agents to accept the filters it adds (default
// DefaultNotifyTimeout); an agent that has not answered by then counts as
// refusing (R7). When the call's context has no deadline, the client waits
// for the engine's answer its own timeout plus this, plus the engine's
// write timeout, so a success is never reported as a timeout.
func WithNotifyTimeout(d time.Duration) CallOption {
	return func(o *callOptions) { o.notifyTimeout = d }
}

func collect(opts []CallOption) (callOptions, error) {
	var o callOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.notifyTimeout < 0 {
		return o, errorf(CodeInvalidParameter, "notify timeout %v is negative", o.notifyTimeout)
	}
	if o.pageSize < 0 {
		return o, errorf(CodeInvalidParameter, "page size %d is negative", o.pageSize)
	}
	return o, nil
}

// notifyWait is what an add waits for beyond its write: the agents'
// answers and, if one refuses, the take-back.
func (o callOptions) notifyWait() time.Duration {
	n := o.notifyTimeout
	if n == 0 {
		n = DefaultNotifyTimeout
	}
	return n + DefaultWriteTimeout
}

// AddCallout adds a callout object. An empty key gets a fresh one.
func (c *Client) AddCallout(ctx context.Context, co events.Callout, opts ...CallOption) (*events.Callout, error) {
	o, err := collect(opts)
	if err != nil {
		return nil, err
	}
	co.Session = cmp.Or(co.Session, o.session)
	var resp CalloutResponse
	if err := c.call(ctx, EndpointCalloutAdd, co, &resp, 0, opts); err != nil {
		return nil, err
	}
	return resp.Callout, nil
}

// DeleteCallout deletes a callout object no filter names (else ErrInUse).
func (c *Client) DeleteCallout(ctx context.Context, key string, opts ...CallOption) error {
	return c.call(ctx, EndpointCalloutDelete, CalloutRef{CalloutKey: key}, &DeleteResponse{}, 0, opts)
}

// ListCallouts lists every callout object with its filter count and agents,
// reading every page of the listing (see ListFilters).
func (c *Client) ListCallouts(ctx context.Context, opts ...CallOption) (*ListCalloutsResponse, error) {
	o, err := collect(opts)
	if err != nil {
		return nil, err
	}
	var all ListCalloutsResponse
	err = c.pages(ctx, func(ctx context.Context, cursor string) (string, error) {
		var resp ListCalloutsResponse
		if err := c.call(ctx, EndpointCalloutList, ListCalloutsRequest{Cursor: cursor, Limit: o.pageSize}, &resp, 0, opts); err != nil {
			return "", err
		}
		if cursor == "" {
			all = ListCalloutsResponse{Seq: resp.Seq, Callouts: []CalloutInfo{}}
		}
		all.Callouts = append(all.Callouts, resp.Callouts...)
		return resp.Next, nil
	})
	if err != nil {
		return nil, err
	}
	return &all, nil
}

// AddFilter adds a filter and returns it as stored, with its key and id.
// An empty key gets a fresh one. If agents are registered for the
// filter's callout, it returns once they all accepted it; if one refused
// it, the error is ErrCalloutNotificationFailed (naming the agent and its
// error) and the filter is not there (R7). See WithNotifyTimeout.
func (c *Client) AddFilter(ctx context.Context, f events.Filter, opts ...CallOption) (*events.Filter, error) {
	o, err := collect(opts)
	if err != nil {
		return nil, err
	}
	f.Session = cmp.Or(f.Session, o.session)
	req := AddFilterRequest{Filter: f, NotifyTimeoutMs: o.notifyTimeout.Milliseconds()}
	var resp FilterResponse
	if err := c.call(ctx, EndpointFilterAdd, req, &resp, o.notifyWait(), opts); err != nil {
		return nil, err
	}
	return resp.Filter, nil
}

// DeleteFilter deletes the filter ref names, by key or by runtime id.
func (c *Client) DeleteFilter(ctx context.Context, ref FilterRef, opts ...CallOption) error {
	return c.call(ctx, EndpointFilterDelete, ref, &DeleteResponse{}, 0, opts)
}

// GetFilter returns the filter ref names.
func (c *Client) GetFilter(ctx context.Context, ref FilterRef, opts ...CallOption) (*events.Filter, error) {
	var resp FilterResponse
	if err := c.call(ctx, EndpointFilterGet, ref, &resp, 0, opts); err != nil {
		return nil, err
	}
	return resp.Filter, nil
}

// GetCallout returns the callout object named by key, with the number of
// filters naming it and the agents registered for it.
func (c *Client) GetCallout(ctx context.Context, key string, opts ...CallOption) (*CalloutInfo, error) {
	var resp CalloutInfoResponse
	if err := c.call(ctx, EndpointCalloutGet, CalloutRef{CalloutKey: key}, &resp, 0, opts); err != nil {
		return nil, err
	}
	return &resp.Callout, nil
}

// ListFilters enumerates the filters matching req, with the log position
// the list reflects. It reads every page of the listing, all as of the
// first page's position; if the engines no longer keep that position (a
// listing slower than they keep history for) it starts again, a few times,
// before it gives up with ErrInvalidEnumerator. The request's Cursor and
// Limit are ignored (see WithPageSize).
func (c *Client) ListFilters(ctx context.Context, req ListFiltersRequest, opts ...CallOption) (*ListFiltersResponse, error) {
	o, err := collect(opts)
	if err != nil {
		return nil, err
	}
	var all ListFiltersResponse
	err = c.pages(ctx, func(ctx context.Context, cursor string) (string, error) {
		r := req
		r.Cursor, r.Limit = cursor, o.pageSize
		var resp ListFiltersResponse
		if err := c.call(ctx, EndpointFilterList, r, &resp, 0, opts); err != nil {
			return "", err
		}
		if cursor == "" {
			all = ListFiltersResponse{Seq: resp.Seq, Filters: []*events.Filter{}}
		}
		all.Filters = append(all.Filters, resp.Filters...)
		return resp.Next, nil
	})
	if err != nil {
		return nil, err
	}
	return &all, nil
}

// testHookAfterPage, if set, runs after each page a listing reads, with
// the cursor it continues from.
var testHookAfterPage func(next string)

// listingRestarts is how often a listing starts again after its position
// was forgotten mid-way.
const listingRestarts = 3

// pages reads a listing: page gets the page at cursor ("" for the first)
// and returns the next cursor, "" after the last. Without a deadline in
// ctx, each page gets the client's timeout.
func (c *Client) pages(ctx context.Context, page func(context.Context, string) (string, error)) error {
	for restart := 0; ; restart++ {
		cursor := ""
		var err error
		for {
			if cursor, err = page(ctx, cursor); err != nil || cursor == "" {
				break
			}
			if testHookAfterPage != nil {
				testHookAfterPage(cursor)
			}
		}
		if !errors.Is(err, ErrInvalidEnumerator) || restart == listingRestarts {
			return err
		}
	}
}

// ApplyTx applies ops as one transaction, atomically: all of them or none.
// Filters it added that a callout agent refused are listed in Rejected
// and were deleted again; the rest stands (R7). See WithNotifyTimeout.
func (c *Client) ApplyTx(ctx context.Context, ops []TxOp, opts ...CallOption) (*TxResponse, error) {
	o, err := collect(opts)
	if err != nil {
		return nil, err
	}
	req := TxRequest{Ops: ops, NotifyTimeoutMs: o.notifyTimeout.Milliseconds(), SessionID: o.session}
	var resp TxResponse
	if err := c.call(ctx, EndpointTxApply, req, &resp, o.notifyWait(), opts); err != nil {
		return nil, err
	}
	return &resp, nil
}

// call sends one JSON request and decodes the answer; a refused request
// comes back as *Error with the engine's WFP code. Without a deadline in
// ctx it waits the client's timeout plus extra.
func (c *Client) call(ctx context.Context, endpoint string, req, resp any, extra time.Duration, opts []CallOption) error {
	if _, err := collect(opts); err != nil {
		return err
	}
	data, err := json.Marshal(req)
	if err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout+extra)
		defer cancel()
	}
	subject := c.subj.API(endpoint)
	msg, err := c.nc.RequestWithContext(ctx, subject, data)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return errorf(CodeEngineNotResponding, "no engine answers on %s: is one running with prefix %q?", subject, c.subj.Prefix)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return errorf(CodeTimeout, "no answer on %s: %v; the outcome is unknown, list to see it", subject, err)
	case err != nil:
		return fmt.Errorf("engine: %s: %w", endpoint, err)
	}
	return decodeReply(subject, msg, resp)
}

// decodeReply turns an answer into resp, or into the *Error it carries.
func decodeReply(subject string, msg *nats.Msg, resp any) error {
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		return &Error{Code: Code(code), Message: msg.Header.Get(micro.ErrorHeader)}
	}
	if err := json.Unmarshal(msg.Data, resp); err != nil {
		return errorf(CodeInternal, "undecodable answer on %s: %v", subject, err)
	}
	return nil
}
