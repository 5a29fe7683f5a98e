package callout

import (
	"context"
	"fmt"

	"github.com/wfpnats/wfp/events"
)

// NotifyType says what happened to a filter, as FWPS_CALLOUT_NOTIFY_TYPE.
// A handler must ignore types it does not know and return nil (R5): new
// types may be added.
type NotifyType int

const (
	AddFilter    NotifyType = iota // FWPS_CALLOUT_NOTIFY_ADD_FILTER
	DeleteFilter                   // FWPS_CALLOUT_NOTIFY_DELETE_FILTER
	// AddFilterPostCommit is reserved for callouts that ask to be told after
	// a transaction commits; the SDK does not send it yet.
	AddFilterPostCommit
)

func (t NotifyType) String() string {
	switch t {
	case AddFilter:
		return "add"
	case DeleteFilter:
		return "delete"
	case AddFilterPostCommit:
		return "add-post-commit"
	}
	return fmt.Sprintf("NotifyType(%d)", int(t))
}

// Filter is what a handler is told about: the filter as stored, plus the
// callout's own per-filter state.
type Filter struct {
	events.Filter

	// Context is the handler's state for this filter (FWPS_FILTER.context).
	// Set it during AddFilter; it is kept only if the handler returns nil,
	// shown to the classify path through Agent.Lookup, and handed back once
	// at DeleteFilter. The agent keeps the very *Filter given to a
	// successful AddFilter and readers share it, so the handler must not
	// change it after returning; mutable state goes inside Context. It is nil at DeleteFilter for a filter this agent
	// never saw added (R4).
	Context any

	// Initial is true for notifications read from the replay snapshot,
	// before Synced is closed.
	Initial bool
}

// Handler is a callout's notifyFn. Calls are sequential, in log order, on
// one goroutine; ctx is cancelled when the agent closes.
//
// An error on AddFilter means the filter was not taken: the agent retries
// with backoff until the handler succeeds or the agent closes, and keeps no
// Context from the failed attempts. An error on DeleteFilter is logged and
// counted; the filter is gone anyway. A panic counts as an error.
type Handler interface {
	Notify(ctx context.Context, t NotifyType, f *Filter) error
}

// HandlerFunc lets an ordinary function be a Handler.
type HandlerFunc func(ctx context.Context, t NotifyType, f *Filter) error

// Notify calls fn(ctx, t, f).
func (fn HandlerFunc) Notify(ctx context.Context, t NotifyType, f *Filter) error {
	return fn(ctx, t, f)
}
