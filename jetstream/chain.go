package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// ErrChainBroken is wrapped by PublishChain's error when a message after
// the first was refused because the one before it was not stored (the
// chain's Nats-Expected-Last-Msg-Id did not match).
var ErrChainBroken = errors.New("jetstream: publish chain broken")

// PublishChain writes msgs in order, pipelined in one round trip, each one
// fenced on what came just before it: the first by Nats-Expected-Last-Sequence
// = expectedLast, every later one by Nats-Expected-Last-Msg-Id = the
// Nats-Msg-Id of its predecessor. Every message must carry a unique
// Nats-Msg-Id.
//
// The server therefore stores a prefix of msgs and nothing else: msgs[:n]
// at sequences expectedLast+1 .. expectedLast+n, with nothing interleaved.
// Once a message is refused, every later one is too, because its
// predecessor's id can never be the stream's last (the server sets the last
// id on every stored message, to empty for one without an id).
//
// This is group commit without atomic batches, whose staging costs a
// ~2.5 ms fsync per batch on file storage: the commands of a group are
// independent, so a prefix landing is fine, and the price is only one
// pipelined round trip.
//
// Only for streams with one replica. On a replicated stream nats-server
// (2.15.2) checks Nats-Expected-Last-Msg-Id only when a replica applies
// the message, and treats a refusal there as a critical write error after
// which the stream applies nothing more: a chain that loses its fence
// wedges the stream. Use PublishFenced (an atomic batch, checked before it
// is proposed) there.
//
// It returns n, the length of the stored prefix it has confirmed, and the
// first error: a *FenceError if the first message lost the fence, an error
// wrapping ErrChainBroken (and, when the chain broke on a sequence, a
// *FenceError) if a later one did, or another error. After a timeout or a
// lost connection, messages past n may still have been stored: re-read the
// stream before deciding.
//
// opts go to each PublishMsgAsync: natsjs.WithRetryAttempts(0), say, for
// a caller that retries on its own terms rather than nats.go's (which
// waits 250 ms and tries again twice when no stream answers).
func PublishChain(ctx context.Context, js natsjs.JetStream, expectedLast uint64, msgs []*nats.Msg, opts ...natsjs.PublishOpt) (n int, err error) {
	if len(msgs) == 0 {
		return 0, ErrEmptyBatch
	}
	futures := make([]natsjs.PubAckFuture, len(msgs))
	prevID := ""
	for i, m := range msgs {
		out := copyForPublish(m)
		id := out.Header.Get(natsjs.MsgIDHeader)
		if id == "" {
			return 0, fmt.Errorf("jetstream: publish chain: message %d has no %s", i+1, natsjs.MsgIDHeader)
		}
		if i == 0 {
			out.Header.Set(natsjs.ExpectedLastSeqHeader, strconv.FormatUint(expectedLast, 10))
		} else {
			out.Header.Set(natsjs.ExpectedLastMsgIDHeader, prevID)
		}
		prevID = id
		if futures[i], err = js.PublishMsgAsync(out, opts...); err != nil {
			// Nothing after i was sent; what was sent is resolved below.
			futures = futures[:i]
			break
		}
	}
	sendErr := err

	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			if want := expectedLast + uint64(i) + 1; ack.Sequence != want || ack.Duplicate {
				return n, fmt.Errorf("jetstream: publish chain: message %d stored at %d (duplicate %v), want %d",
					i+1, ack.Sequence, ack.Duplicate, want)
			}
			n++
		case err := <-f.Err():
			err = publishError(expectedLast+uint64(i), "publish chain", err)
			if i > 0 {
				err = fmt.Errorf("%w at message %d: %w", ErrChainBroken, i+1, err)
			}
			return n, err
		case <-ctx.Done():
			return n, fmt.Errorf("jetstream: publish chain: %d of %d confirmed: %w", n, len(msgs), ctx.Err())
		}
	}
	if sendErr != nil {
		return n, fmt.Errorf("jetstream: publish chain: sending message %d: %w", n+1, sendErr)
	}
	return n, nil
}
