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
	// AddFilterPostCommit (FWPS_CALLOUT_NOTIFY_ADD_FILTER_POST_COMMIT) is
	// sent only to agents registered WithPostCommit, after every
	// notification of a transaction has been delivered, once for each
	// filter the transaction added that the agent holds, in log order. Plain
	// adds outside a transaction get none.
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
	// given to the Classifier with the filter (and shown through
	// Agent.Lookup), and handed back once at DeleteFilter. The agent keeps the very *Filter given to a
	// successful AddFilter and readers share it, so the handler must not
	// change it after returning; mutable state goes inside Context. It is
	// nil at DeleteFilter for a filter this agent never saw added (R4), or
	// refused. At AddFilterPostCommit it is the Context AddFilter left, on a
	// copy of the held filter: changes to that copy are not kept.
	Context any

	// Initial is true for notifications read from the replay snapshot,
	// before Synced is closed.
	Initial bool

	// Reason, at DeleteFilter, says why the engine deleted the filter when
	// nobody asked it to, e.g. "rejected by agent X: ..." for an add a
	// callout agent refused (R7); empty for an ordinary delete.
	Reason string
}

// Handler is a callout's notifyFn. Calls are sequential, in log order, on
// one goroutine; ctx is cancelled when the agent closes.
//
// An error on AddFilter means the callout refuses the filter (R7): the
// agent does not hold it, drops the Context the call set, logs and counts
// the error and, for a live add, tells the engine (events.NotifyResult),
// which takes the filter back, so the agent then sees it deleted (with
// Filter.Reason set). It is not retried. An error on DeleteFilter or
// AddFilterPostCommit is logged and counted; nothing else follows from it.
// A panic counts as an error, its text as the error text.
//
// The filters of a transaction (R8) are delivered together: the agent
// holds a transaction's messages until it has them all, then calls the
// handler for each in log order, with nothing else in between.
type Handler interface {
	Notify(ctx context.Context, t NotifyType, f *Filter) error
}

// HandlerFunc lets an ordinary function be a Handler.
type HandlerFunc func(ctx context.Context, t NotifyType, f *Filter) error

// Notify calls fn(ctx, t, f).
func (fn HandlerFunc) Notify(ctx context.Context, t NotifyType, f *Filter) error {
	return fn(ctx, t, f)
}
