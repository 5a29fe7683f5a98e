package jetstream

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
)

func TestPublishFencedSingleAndBatchSequences(t *testing.T) {
	js, s := setupStream(t)
	ctx := testCtx(t)

	last, err := PublishFenced(ctx, js, 0, []*nats.Msg{newMsg("wfp.filter.C.k1", "")})
	if err != nil || last != 1 {
		t.Fatalf("first single publish on empty stream: last=%d err=%v", last, err)
	}
	last, err = PublishFenced(ctx, js, 1, []*nats.Msg{newMsg("wfp.filter.C.k2", "")})
	if err != nil || last != 2 {
		t.Fatalf("second single publish: last=%d err=%v", last, err)
	}
	batch := []*nats.Msg{newMsg("wfp.filter.C.k3", ""), newMsg("wfp.filter.C.k4", ""), newMsg("wfp.callout.C", "")}
	last, err = PublishFenced(ctx, js, 2, batch)
	if err != nil || last != 5 {
		t.Fatalf("batch of 3: last=%d err=%v", last, err)
	}
	// first = last-len+1: each message landed where the caller predicted.
	for i, m := range batch {
		seq := last - uint64(len(batch)) + 1 + uint64(i)
		got, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if got.Subject != m.Subject || string(got.Data) != string(m.Data) {
			t.Errorf("seq %d: got %s %q, want %s %q", seq, got.Subject, got.Data, m.Subject, m.Data)
		}
	}
	if st := state(t, s); st.LastSeq != 5 || st.Msgs != 5 {
		t.Errorf("stream state %+v", st)
	}
}

func TestPublishFencedStaleSingle(t *testing.T) {
	js, s := setupStream(t)
	ctx := testCtx(t)
	for i := range 3 {
		if _, err := PublishFenced(ctx, js, uint64(i), []*nats.Msg{newMsg("wfp.filter.C.k", "")}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := PublishFenced(ctx, js, 1, []*nats.Msg{newMsg("wfp.filter.C.k", "")})
	assertFence(t, err, 1, 3)
	if st := state(t, s); st.LastSeq != 3 {
		t.Errorf("refused publish wrote: last seq %d", st.LastSeq)
	}
}

func TestPublishFencedStaleBatchWritesNothing(t *testing.T) {
	js, s := setupStream(t)
	ctx := testCtx(t)
	if _, err := PublishFenced(ctx, js, 0, []*nats.Msg{newMsg("wfp.filter.C.a", ""), newMsg("wfp.filter.C.b", "")}); err != nil {
		t.Fatal(err)
	}
	before := state(t, s)
	_, err := PublishFenced(ctx, js, 1, []*nats.Msg{
		newMsg("wfp.filter.C.x", ""), newMsg("wfp.filter.C.y", ""), newMsg("wfp.filter.C.z", ""),
	})
	assertFence(t, err, 1, 2)
	after := state(t, s)
	if after.LastSeq != before.LastSeq || after.Msgs != before.Msgs {
		t.Errorf("refused batch wrote: before %+v after %+v", before, after)
	}
	// Not even a prefix: no message on the refused subjects.
	for _, subj := range []string{"wfp.filter.C.x", "wfp.filter.C.y", "wfp.filter.C.z"} {
		if _, err := s.GetLastMsgForSubject(ctx, subj); !errors.Is(err, natsjs.ErrMsgNotFound) {
			t.Errorf("%s: want ErrMsgNotFound, got %v", subj, err)
		}
	}
	// And the stream accepts the right fence afterwards (no batch left open).
	if last, err := PublishFenced(ctx, js, 2, []*nats.Msg{newMsg("wfp.filter.C.x", ""), newMsg("wfp.filter.C.y", "")}); err != nil || last != 4 {
		t.Fatalf("publish after refusal: last=%d err=%v", last, err)
	}
}

func assertFence(t *testing.T, err error, expected, actual uint64) {
	t.Helper()
	if !errors.Is(err, ErrWrongLastSequence) {
		t.Fatalf("want ErrWrongLastSequence, got %v", err)
	}
	var fe *FenceError
	if !errors.As(err, &fe) {
		t.Fatalf("want *FenceError, got %T", err)
	}
	if fe.Expected != expected || fe.Actual != actual {
		t.Errorf("FenceError{Expected: %d, Actual: %d}, want {%d, %d}", fe.Expected, fe.Actual, expected, actual)
	}
	var apiErr *natsjs.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != natsjs.JSErrCodeStreamWrongLastSequence {
		t.Errorf("server error not kept: %v", fe.Err)
	}
}

func TestPublishFencedBatchHeaders(t *testing.T) {
	js, s := setupStream(t)
	ctx := testCtx(t)
	msgs := make([]*nats.Msg, 4)
	for i := range msgs {
		msgs[i] = newMsg(fmt.Sprintf("wfp.filter.C.k%d", i), fmt.Sprintf("event-%d", i))
		msgs[i].Header.Set("Wfp-Event-Type", "FilterAdded")
	}
	last, err := PublishFenced(ctx, js, 0, msgs)
	if err != nil || last != 4 {
		t.Fatalf("last=%d err=%v", last, err)
	}
	var batchID string
	for i := range msgs {
		got, err := s.GetMsg(ctx, uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		h := got.Header
		if h.Get(natsjs.MsgIDHeader) != fmt.Sprintf("event-%d", i) || h.Get("Wfp-Event-Type") != "FilterAdded" {
			t.Errorf("seq %d: caller headers lost: %v", i+1, h)
		}
		if i == 0 {
			batchID = h.Get(jetstreamext.BatchIDHeader)
			if batchID == "" {
				t.Fatal("no Nats-Batch-Id")
			}
		} else if h.Get(jetstreamext.BatchIDHeader) != batchID {
			t.Errorf("seq %d: batch id %q, want %q", i+1, h.Get(jetstreamext.BatchIDHeader), batchID)
		}
		if h.Get(jetstreamext.BatchSeqHeader) != strconv.Itoa(i+1) {
			t.Errorf("seq %d: Nats-Batch-Sequence %q", i+1, h.Get(jetstreamext.BatchSeqHeader))
		}
		commit := h.Get(jetstreamext.BatchCommitHeader)
		if isLast := i == len(msgs)-1; isLast != (commit != "") {
			t.Errorf("seq %d: Nats-Batch-Commit %q (last=%v)", i+1, commit, isLast)
		}
		// The fence rides on the first message only.
		if fence := h.Get(natsjs.ExpectedLastSeqHeader); (i == 0) != (fence == "0") {
			t.Errorf("seq %d: fence header %q", i+1, fence)
		}
	}
	// The caller's messages are untouched, so the slice can be retried.
	for _, m := range msgs {
		if m.Header.Get(jetstreamext.BatchIDHeader) != "" || m.Header.Get(natsjs.ExpectedLastSeqHeader) != "" {
			t.Errorf("caller's message modified: %v", m.Header)
		}
	}
}

func TestPublishFencedRace(t *testing.T) {
	for _, size := range []int{1, 5} {
		t.Run(fmt.Sprintf("msgs=%d", size), func(t *testing.T) {
			js, s := setupStream(t)
			ctx := testCtx(t)
			var expected uint64
			for round := range 20 {
				var (
					wg    sync.WaitGroup
					start = make(chan struct{})
					lasts [2]uint64
					errs  [2]error
				)
				for g := range 2 {
					msgs := make([]*nats.Msg, size)
					for i := range msgs {
						msgs[i] = newMsg(fmt.Sprintf("wfp.filter.C.g%d-%d", g, i), "")
					}
					wg.Go(func() {
						<-start
						lasts[g], errs[g] = PublishFenced(ctx, js, expected, msgs)
					})
				}
				close(start)
				wg.Wait()

				winners := 0
				for g := range 2 {
					if errs[g] == nil {
						winners++
					}
				}
				if winners != 1 {
					t.Fatalf("round %d: %d winners (errs %v, %v)", round, winners, errs[0], errs[1])
				}
				w := 0
				if errs[0] != nil {
					w = 1
				}
				if lasts[w] != expected+uint64(size) {
					t.Fatalf("round %d: winner last %d, want %d", round, lasts[w], expected+uint64(size))
				}
				assertFence(t, errs[1-w], expected, lasts[w])
				expected = lasts[w]
			}
			if st := state(t, s); st.LastSeq != expected || st.Msgs != expected {
				t.Errorf("stream %+v, want exactly the winners' %d messages", st, expected)
			}
		})
	}
}

func TestPublishFencedLimitsAndEmpty(t *testing.T) {
	js, s := setupStream(t)
	ctx := testCtx(t)
	if _, err := PublishFenced(ctx, js, 0, nil); !errors.Is(err, ErrEmptyBatch) {
		t.Errorf("empty: %v", err)
	}
	msgs := make([]*nats.Msg, MaxBatch+1)
	for i := range msgs {
		msgs[i] = newMsg("wfp.filter.C.k", "")
	}
	_, err := PublishFenced(ctx, js, 0, msgs)
	if !errors.Is(err, ErrBatchTooLarge) {
		t.Fatalf("too large: %v", err)
	}
	if want := strconv.Itoa(MaxBatch); !containsAll(err.Error(), want) {
		t.Errorf("error %q does not name the limit", err)
	}
	last, err := PublishFenced(ctx, js, 0, msgs[:MaxBatch])
	if err != nil || last != MaxBatch {
		t.Fatalf("batch of MaxBatch: last=%d err=%v", last, err)
	}
	if st := state(t, s); st.Msgs != MaxBatch {
		t.Errorf("stream has %d messages", st.Msgs)
	}
}

func TestPublishFencedDuplicates(t *testing.T) {
	js, s := setupStream(t)
	ctx := testCtx(t)
	batch := []*nats.Msg{newMsg("wfp.filter.C.a", "id-a"), newMsg("wfp.filter.C.b", "id-b")}
	if _, err := PublishFenced(ctx, js, 0, batch); err != nil {
		t.Fatal(err)
	}
	// Retrying the same batch at the right fence: the ids are known.
	_, err := PublishFenced(ctx, js, 2, batch)
	if !errors.Is(err, ErrDuplicate) {
		t.Fatalf("batch retry: want ErrDuplicate, got %v", err)
	}
	// A single message whose id is known, at the right fence: the server
	// acks the old sequence; we must not pass it off as a new write.
	_, err = PublishFenced(ctx, js, 2, []*nats.Msg{newMsg("wfp.filter.C.a", "id-a")})
	if !errors.Is(err, ErrDuplicate) {
		t.Fatalf("single duplicate: want ErrDuplicate, got %v", err)
	}
	if st := state(t, s); st.Msgs != 2 {
		t.Errorf("duplicates stored: %d messages", st.Msgs)
	}
	// Nil header is accepted.
	if last, err := PublishFenced(ctx, js, 2, []*nats.Msg{{Subject: "wfp.filter.C.c"}, {Subject: "wfp.filter.C.d"}}); err != nil || last != 4 {
		t.Fatalf("nil headers: last=%d err=%v", last, err)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
