package callout

import "errors"

var (
	// ErrInvalidCalloutKey: the callout key is not a UUID.
	ErrInvalidCalloutKey = errors.New("callout: invalid callout key")
	// ErrNilHandler: Register was given no handler.
	ErrNilHandler = errors.New("callout: nil handler")
	// ErrInvalidOption: an option is malformed or does not fit the mode.
	ErrInvalidOption = errors.New("callout: invalid option")
	// ErrDurableConflict: a durable consumer of that name exists but reads
	// something else, so resuming it would skip or mix events.
	ErrDurableConflict = errors.New("callout: durable consumer exists with another configuration")
	// ErrAgentIDInUse: another running instance holds the agent id (see
	// WithAgentID); one agent id runs once.
	ErrAgentIDInUse = errors.New("callout: agent id in use")
	// ErrHandlerPanic wraps a panic raised by a handler.
	ErrHandlerPanic = errors.New("callout: handler panicked")
)
