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
