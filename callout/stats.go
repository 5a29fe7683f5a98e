package callout

import "sync/atomic"

// Stats are an agent's counters since Register.
type Stats struct {
	Adds          uint64 // AddFilter calls that succeeded
	Deletes       uint64 // DeleteFilter calls (a failed one still deletes)
	Skipped       uint64 // events ignored under R5: garbage, unknown type, newer schema, not a filter event
	Duplicates    uint64 // adds for a filter already held, and redelivered messages
	Tombstones    uint64 // snapshot deletes of filters never held
	HandlerErrors uint64 // handler calls that returned an error or panicked
	Retries       uint64 // AddFilter retries after an error
	Held          int    // filters held now (added and not yet deleted)
}

type counters struct {
	adds, deletes, skipped, duplicates, tombstones, handlerErrors, retries atomic.Uint64
}
