package callout

import (
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
)

// A lost consumer is noticed after two missed heartbeats; shorten that so
// the reset tests do not wait the production 10 s.
func init() {
	messagesOpts = []natsjs.PullMessagesOpt{natsjs.PullExpiry(2 * time.Second), natsjs.PullHeartbeat(500 * time.Millisecond)}
	checkInterval = time.Second
}

// SetTxHoldTimeout changes how long agents registered from now on hold an
// incomplete transaction; the returned func restores it.
func SetTxHoldTimeout(d time.Duration) (restore func()) {
	old := txHoldTimeout
	txHoldTimeout = d
	return func() { txHoldTimeout = old }
}

// SnapshotDrained asks the agent whether its snapshot's consumer is done,
// as its check does when the snapshot stalls. Call it only while the
// agent's handler is blocked (the notify goroutine owns what it reads).
func SnapshotDrained(a *Agent) bool { return a.snapshotDrained() }
