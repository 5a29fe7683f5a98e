package callout

import (
	"sync/atomic"
	"time"
)

// Stats are an agent's counters since Register.
type Stats struct {
	Adds          uint64 // AddFilter calls that succeeded: filters taken
	Refused       uint64 // AddFilter calls that returned an error or panicked: filters refused (R7), not held
	Deletes       uint64 // DeleteFilter calls (a failed one still deletes)
	PostCommits   uint64 // AddFilterPostCommit calls, failed ones included
	Transactions  uint64 // transactions delivered whole
	Skipped       uint64 // events ignored under R5: garbage, unknown type, newer schema, not a filter event
	Duplicates    uint64 // adds for a filter already held, and redelivered messages
	Tombstones    uint64 // snapshot deletes of filters never held
	HandlerErrors uint64 // handler calls of any type that returned an error or panicked
	// Resyncs counts the times the agent, away from the log for longer
	// than its horizon, compared what it holds with a snapshot instead of
	// trusting the log to show every delete.
	Resyncs uint64
	// CaughtUp: every message of the callout stored before it has been
	// read (kept only when the stream has a horizon; zero otherwise).
	// now - CaughtUp is how far behind the log the agent may be.
	CaughtUp time.Time
	// CatchUps counts the times a live or replay agent, reading its live
	// subscription, found it had lost messages and read the log through a
	// consumer to catch up.
	CatchUps uint64
	// Classifies counts classify calls answered with a verdict;
	// ClassifyErrors, those answered with an error (a filter not held, a
	// Classify that failed or panicked, a malformed call).
	Classifies     uint64
	ClassifyErrors uint64
	// LogLoss, for a durable agent, is how many log sequences it had
	// handled past the end of the log when it last opened its consumer:
	// non-zero means the log lost events this agent saw (see the error it
	// logged), and the filters it holds may not be the engine's.
	LogLoss     uint64
	Held        int // filters held now (added and not yet deleted)
	HeldTxParts int // messages of an incomplete transaction, held until the rest arrive
	// Position is the stream sequence of the last event the agent handled
	// (at registration: the sequence it starts after).
	Position uint64
	// SnapshotDone and SnapshotSize are a replay's progress: messages of
	// the snapshot handled, of how many (filters and tombstones: the last
	// message of each of the callout's filter subjects at registration).
	SnapshotDone, SnapshotSize uint64
}

type counters struct {
	adds, refused, deletes, postCommits, transactions atomic.Uint64
	skipped, duplicates, tombstones, handlerErrors    atomic.Uint64
	logLoss, classifies, classifyErrors, resyncs      atomic.Uint64
	catchUps                                          atomic.Uint64
	heldTxParts                                       atomic.Int64
	position, snapDone, snapSize                      atomic.Uint64
}
