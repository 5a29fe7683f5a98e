package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/wfpnats/wfp/events"
)

// MaxBatch is the most messages PublishFenced writes as one unit: the
// server's default atomic batch limit (jetstream.limits.batch.max_size).
const MaxBatch = 1000

var (
	// ErrWrongLastSequence is matched (errors.Is) by a *FenceError: the
	// stream's last sequence was not the expected one, so the caller's view
	// of the log is stale and nothing was written.
	ErrWrongLastSequence = errors.New("jetstream: wrong last sequence")
	// ErrBatchTooLarge is returned (wrapped, naming the limit) when
	// PublishFenced is given more than MaxBatch messages.
	ErrBatchTooLarge = errors.New("jetstream: batch too large")
	// ErrEmptyBatch is returned when PublishFenced is given no messages.
	ErrEmptyBatch = errors.New("jetstream: no messages to publish")
	// ErrDuplicate is matched when the server recognised a Nats-Msg-Id it
	// already stored within the duplicate window: nothing was written.
	ErrDuplicate = errors.New("jetstream: duplicate message id")
)

// FenceError reports a fenced write refused because the stream had moved on.
type FenceError struct {
	Expected uint64 // the expected last sequence the write carried
	// Actual is the stream's last sequence as the server reported it
	// ("wrong last sequence: N", code 10071); 0 when the server did not say
	// (replicated streams answer 10164 without a number).
	Actual uint64
	Err    error // the server's error
}

func (e *FenceError) Error() string {
	if e.Actual == 0 {
		return fmt.Sprintf("jetstream: wrong last sequence: expected %d", e.Expected)
	}
	return fmt.Sprintf("jetstream: wrong last sequence: expected %d, stream is at %d", e.Expected, e.Actual)
}

// Is makes errors.Is(err, ErrWrongLastSequence) true.
func (e *FenceError) Is(target error) bool { return target == ErrWrongLastSequence }

// Unwrap gives the server's error.
func (e *FenceError) Unwrap() error { return e.Err }

// PublishFenced writes msgs as one unit with Nats-Expected-Last-Sequence =
// expectedLast on the first message, so it is written only if the stream's
// last sequence is still expectedLast, and nothing can interleave with it.
//
// One message is a normal JetStream publish. Several are one atomic batch,
// all or nothing, sent in one round trip (only the commit is acknowledged).
// It returns the sequence of the last message written; the first is
// last-len(msgs)+1.
//
// The msgs are not modified: they are copied, keeping the caller's headers
// (Nats-Msg-Id, ...) but dropping stale batch and fence headers, so a slice
// can be retried as is. A nil Header is allowed.
//
// Errors: *FenceError (errors.Is ErrWrongLastSequence) when the stream moved
// on; ErrDuplicate (wrapped) when a Nats-Msg-Id is already stored;
// ErrBatchTooLarge or ErrEmptyBatch (wrapped); otherwise the underlying error
// wrapped (inspect with errors.As *natsjs.APIError). After an answer from
// the server nothing was written; after a timeout or a lost connection the
// outcome is unknown, so re-read the stream before retrying (a retry with the
// same expectedLast is safe either way: the fence refuses a second copy).
//
// The server checks the two guards in a different order on the two paths:
// a single publish checks the fence first, so a retry after the stream moved
// on is a *FenceError; an atomic batch checks Nats-Msg-Id first, so the
// same retry is ErrDuplicate (10201).
//
// Cost (R1 file storage, measured): a single message is one ordinary
// publish (~25µs in process); a batch of two or more pays a ~2.5ms floor,
// because the server stages every atomic batch in its own fsync'ed file
// store. Batch only when there is something to group.
func PublishFenced(ctx context.Context, js natsjs.JetStream, expectedLast uint64, msgs []*nats.Msg) (last uint64, err error) {
	switch {
	case len(msgs) == 0:
		return 0, ErrEmptyBatch
	case len(msgs) > MaxBatch:
		return 0, fmt.Errorf("%w: %d messages, limit is %d (MaxBatch)", ErrBatchTooLarge, len(msgs), MaxBatch)
	}
	out := make([]*nats.Msg, len(msgs))
	for i, m := range msgs {
		out[i] = copyForPublish(m)
	}
	out[0].Header.Set(natsjs.ExpectedLastSeqHeader, strconv.FormatUint(expectedLast, 10))

	if len(out) == 1 {
		ack, err := js.PublishMsg(ctx, out[0])
		if err != nil {
			return 0, publishError(expectedLast, "publish", err)
		}
		// A duplicate passed the fence but was not stored: report it rather
		// than hand back an old sequence as if it were ours.
		if ack.Duplicate {
			return 0, fmt.Errorf("%w: Nats-Msg-Id %q is already stored at sequence %d; nothing written",
				ErrDuplicate, out[0].Header.Get(natsjs.MsgIDHeader), ack.Sequence)
		}
		return ack.Sequence, nil
	}

	keepFirstRollups(out)
	ack, err := publishBatch(ctx, js, out)
	if err != nil {
		return 0, publishError(expectedLast, "atomic batch publish", err)
	}
	return ack.Sequence, nil
}

// publishBatch sends msgs as one atomic batch. AckFirst=false: messages
// 1..n-1 go out as plain publishes and only the commit waits for an
// answer, so the batch costs one round trip. The server checks the fence
// when it sees the first message and answers the commit with the verdict
// for the whole batch.
func publishBatch(ctx context.Context, js natsjs.JetStream, msgs []*nats.Msg) (*jetstreamext.BatchAck, error) {
	return jetstreamext.PublishMsgBatch(ctx, js, msgs, jetstreamext.BatchFlowControl{AckFirst: false})
}

// keepFirstRollups removes Nats-Rollup, and Nats-TTL with it, from every
// message of an atomic batch whose subject an earlier message of the
// batch writes. The server allows a roll-up only on the first message of
// its subject in a batch and refuses the whole batch otherwise; and a
// tombstone that cannot roll up must not expire either, or the add it
// leaves behind it would be the subject's last message again, a deleted
// filter come back. Such a tombstone (a filter added and deleted in one
// transaction) stays for good, until the subject's next roll-up.
// The messages are the caller's copies (see copyForPublish).
func keepFirstRollups(msgs []*nats.Msg) {
	seen := make(map[string]bool, len(msgs))
	for _, m := range msgs {
		if seen[m.Subject] {
			m.Header.Del(events.HeaderRollup)
			m.Header.Del(events.HeaderTTL)
		}
		seen[m.Subject] = true
	}
}

// copyForPublish copies m's subject, data and headers. Headers that this
// package or jetstreamext set are dropped so that a retried or reused
// message cannot carry a stale batch id or fence.
func copyForPublish(m *nats.Msg) *nats.Msg {
	h := make(nats.Header, len(m.Header)+4)
	for k, v := range m.Header {
		switch k {
		case jetstreamext.BatchIDHeader, jetstreamext.BatchSeqHeader, jetstreamext.BatchCommitHeader,
			natsjs.ExpectedLastSeqHeader, natsjs.ExpectedLastMsgIDHeader:
			continue
		}
		h[k] = append([]string(nil), v...)
	}
	return &nats.Msg{Subject: m.Subject, Data: m.Data, Header: h}
}

// publishError turns a wrong-last-sequence answer (10071 with the number,
// or 10164 without) into a *FenceError, a duplicate id in a batch (10201)
// into ErrDuplicate, and wraps anything else. The server also answers 10164
// for a fence header on a batch message other than the first; PublishFenced
// never sends one, so here 10164 is always a real fence conflict (R>1).
func publishError(expected uint64, op string, err error) error {
	var apiErr *natsjs.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case natsjs.JSErrCodeStreamWrongLastSequence, natsjs.JSErrCodeStreamWrongLastSequenceConstant:
			fe := &FenceError{Expected: expected, Err: err}
			if n, ok := strings.CutPrefix(apiErr.Description, "wrong last sequence: "); ok {
				fe.Actual, _ = strconv.ParseUint(strings.TrimSpace(n), 10, 64)
			}
			return fe
		case jetstreamext.JSErrCodeBatchPublishDuplicateMsgID:
			return fmt.Errorf("%w: %s: %w", ErrDuplicate, op, err)
		}
	}
	return fmt.Errorf("jetstream: %s: %w", op, err)
}
