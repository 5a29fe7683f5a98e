package jetstream

import (
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

func chainMsgs(prefix string, n int) []*nats.Msg {
	out := make([]*nats.Msg, n)
	for i := range out {
		out[i] = newMsg(fmt.Sprintf("wfp.filter._.%s%d", prefix, i), fmt.Sprintf("%s-%d", prefix, i))
	}
	return out
}

func TestPublishChainStoresInOrder(t *testing.T) {
	js, s := setupStream(t)
	ctx := testCtx(t)
	n, err := PublishChain(ctx, js, 0, chainMsgs("a", 50))
	if err != nil || n != 50 {
		t.Fatalf("PublishChain = %d, %v", n, err)
	}
	for i := range 50 {
		m, err := s.GetMsg(ctx, uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("a-%d", i); m.Header.Get(natsjs.MsgIDHeader) != want {
			t.Fatalf("seq %d holds %q, want %q", i+1, m.Header.Get(natsjs.MsgIDHeader), want)
		}
	}
}

func TestPublishChainStaleFenceWritesNothing(t *testing.T) {
	js, s := setupStream(t)
	ctx := testCtx(t)
	if _, err := PublishChain(ctx, js, 0, chainMsgs("a", 3)); err != nil {
		t.Fatal(err)
	}
	n, err := PublishChain(ctx, js, 1, chainMsgs("b", 5))
	var fe *FenceError
	if n != 0 || !errors.As(err, &fe) || fe.Actual != 3 {
		t.Fatalf("stale chain: n=%d err=%v, want 0 and a FenceError at 3", n, err)
	}
	if last := lastSeq(t, s); last != 3 {
		t.Fatalf("stale chain wrote: last seq %d", last)
	}
}

// Once one message of the chain is not stored, none after it is: here the
// second is a duplicate id, so the third's predecessor never lands.
func TestPublishChainStopsAtFirstRefusal(t *testing.T) {
	js, s := setupStream(t)
	ctx := testCtx(t)
	if _, err := PublishChain(ctx, js, 0, chainMsgs("a", 1)); err != nil {
		t.Fatal(err)
	}
	msgs := chainMsgs("b", 4)
	msgs[1].Header.Set(natsjs.MsgIDHeader, "a-0") // already stored: deduplicated, not stored
	n, err := PublishChain(ctx, js, 1, msgs)
	if n != 1 || err == nil {
		t.Fatalf("n=%d err=%v, want the prefix of 1 and an error", n, err)
	}
	if last := lastSeq(t, s); last != 2 {
		t.Fatalf("last seq %d, want 2: messages after the refused one were stored", last)
	}
	m, err := s.GetMsg(ctx, 2)
	if err != nil || m.Header.Get(natsjs.MsgIDHeader) != "b-0" {
		t.Fatalf("seq 2: %v %v", m, err)
	}
}

func lastSeq(t *testing.T, s natsjs.Stream) uint64 {
	t.Helper()
	info, err := s.Info(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}
