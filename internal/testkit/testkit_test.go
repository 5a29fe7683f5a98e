package testkit

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/wfpnats/wfp/jetstream"
)

func TestServerConnJetStreamStream(t *testing.T) {
	srv := Server(t)
	if !strings.HasPrefix(srv.ClientURL(), "nats://127.0.0.1:") {
		t.Fatalf("ClientURL %q: want a loopback URL", srv.ClientURL())
	}
	js := JetStream(t, Conn(t, srv))
	s := Stream(t, js)
	if name := s.CachedInfo().Config.Name; name != jetstream.DefaultStreamName {
		t.Fatalf("stream %q, want %q", name, jetstream.DefaultStreamName)
	}
	ack, err := js.Publish(context.Background(), jetstream.DefaultPrefix+".filter.x", []byte("x"))
	if err != nil || ack.Sequence != 1 {
		t.Fatalf("publish: %+v, %v", ack, err)
	}
}

func TestSyncBuffer(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				_, _ = b.Write([]byte("x"))
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if got := len(b.String()); got != 800 {
		t.Fatalf("%d bytes, want 800", got)
	}
}

func TestEventually(t *testing.T) {
	n := 0
	Eventually(t, "the third call", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Fatalf("cond called %d times, want 3", n)
	}
}
