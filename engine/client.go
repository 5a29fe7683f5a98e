package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/jetstream"
	"github.com/wfpnats/wfp/projection"
)

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

// WithPrefix sets the subject prefix of the engine's stream (default "wfp").
func WithPrefix(prefix string) ClientOption { return func(c *Client) { c.subj.Prefix = prefix } }

// WithTimeout sets how long a call waits when its context has no deadline
// (default 10s).
func WithTimeout(d time.Duration) ClientOption { return func(c *Client) { c.timeout = d } }

// NewClient returns a client that talks to the engine over nc.
func NewClient(nc *nats.Conn, opts ...ClientOption) *Client {
	c := &Client{nc: nc, subj: events.Subjects{Prefix: jetstream.DefaultPrefix}, timeout: 10 * time.Second}
	for _, o := range opts {
		o(c)
	}
	return c
}

// AddCallout adds a callout object. An empty key gets a fresh one.
func (c *Client) AddCallout(ctx context.Context, co events.Callout) (*events.Callout, error) {
	var resp CalloutResponse
	if err := c.call(ctx, EndpointCalloutAdd, co, &resp); err != nil {
		return nil, err
	}
	return resp.Callout, nil
}

// DeleteCallout deletes a callout object no filter names (else ErrInUse).
func (c *Client) DeleteCallout(ctx context.Context, key string) error {
	return c.call(ctx, EndpointCalloutDelete, CalloutRef{CalloutKey: key}, &DeleteResponse{})
}

// ListCallouts lists every callout object.
func (c *Client) ListCallouts(ctx context.Context) (*ListCalloutsResponse, error) {
	var resp ListCalloutsResponse
	return &resp, c.call(ctx, EndpointCalloutList, struct{}{}, &resp)
}

// AddOption configures one AddFilter call.
type AddOption func(*AddFilterRequest)

// WithNotifyTimeout bounds how long the add waits for the callout's agents
// to accept the filter (default DefaultNotifyTimeout).
func WithNotifyTimeout(d time.Duration) AddOption {
	return func(r *AddFilterRequest) { r.NotifyTimeoutMs = d.Milliseconds() }
}

// AddFilter adds a filter and returns it as stored, with its key and id.
// An empty key gets a fresh one. If agents are registered for the
// filter's callout, it returns once they all accepted it; if one refused
// it, the error is ErrCalloutNotificationFailed (naming the agent and its
// error) and the filter is not there (R7).
func (c *Client) AddFilter(ctx context.Context, f events.Filter, opts ...AddOption) (*events.Filter, error) {
	req := AddFilterRequest{Filter: f}
	for _, o := range opts {
		o(&req)
	}
	var resp FilterResponse
	if err := c.call(ctx, EndpointFilterAdd, req, &resp); err != nil {
		return nil, err
	}
	return resp.Filter, nil
}

// DeleteFilter deletes the filter with key.
func (c *Client) DeleteFilter(ctx context.Context, key string) error {
	return c.call(ctx, EndpointFilterDelete, FilterRef{FilterKey: key}, &DeleteResponse{})
}

// DeleteFilterByID deletes the filter with runtime id.
func (c *Client) DeleteFilterByID(ctx context.Context, id uint64) error {
	return c.call(ctx, EndpointFilterDelete, FilterRef{FilterID: id}, &DeleteResponse{})
}

// GetFilter returns the filter ref names.
func (c *Client) GetFilter(ctx context.Context, ref FilterRef) (*events.Filter, error) {
	var resp FilterResponse
	if err := c.call(ctx, EndpointFilterGet, ref, &resp); err != nil {
		return nil, err
	}
	return resp.Filter, nil
}

// ListFilters enumerates the filters matching t, with the log position the
// list reflects.
func (c *Client) ListFilters(ctx context.Context, t projection.Template) (*ListFiltersResponse, error) {
	var resp ListFiltersResponse
	return &resp, c.call(ctx, EndpointFilterList, t, &resp)
}

// ApplyTx applies a transaction atomically: all its operations or none.
// Filters it added that a callout agent refused are listed in Rejected
// and were deleted again; the rest stands (R7).
func (c *Client) ApplyTx(ctx context.Context, tx TxRequest) (*TxResponse, error) {
	var resp TxResponse
	if err := c.call(ctx, EndpointTxApply, tx, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// call sends one JSON request and decodes the answer; a refused request
// comes back as *Error with the engine's WFP code.
func (c *Client) call(ctx context.Context, endpoint string, req, resp any) error {
	data, err := json.Marshal(req)
	if err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	subject := c.subj.API(endpoint)
	msg, err := c.nc.RequestWithContext(ctx, subject, data)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return errorf(CodeEngineNotResponding, "no engine answers on %s: is one running with prefix %q?", subject, c.subj.Prefix)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return errorf(CodeTimeout, "no answer on %s: %v", subject, err)
	case err != nil:
		return fmt.Errorf("engine: %s: %w", endpoint, err)
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		return &Error{Code: Code(code), Message: msg.Header.Get(micro.ErrorHeader)}
	}
	if err := json.Unmarshal(msg.Data, resp); err != nil {
		return errorf(CodeInternal, "undecodable answer on %s: %v", subject, err)
	}
	return nil
}
