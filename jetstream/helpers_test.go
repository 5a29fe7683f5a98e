package jetstream

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/jetstream/embedded"
)

// startServer runs a real embedded server on a random port for one test.
func startServer(t *testing.T) *embedded.Server {
	t.Helper()
	e, err := embedded.Start(embedded.Options{StoreDir: t.TempDir(), Listen: "127.0.0.1:-1", NoLog: true})
	if err != nil {
		t.Fatalf("embedded.Start: %v", err)
	}
	t.Cleanup(e.Shutdown)
	return e
}

// connectJS opens an in-process connection and its JetStream context.
func connectJS(t *testing.T, e *embedded.Server) natsjs.JetStream {
	t.Helper()
	nc, err := e.Connect()
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatalf("jetstream.New: %v", err)
	}
	return js
}

// setupStream starts a server and ensures the default stream on it.
func setupStream(t *testing.T) (natsjs.JetStream, natsjs.Stream) {
	t.Helper()
	js := connectJS(t, startServer(t))
	s, err := EnsureStream(testCtx(t), js, StreamConfig{})
	if err != nil {
		t.Fatalf("EnsureStream: %v", err)
	}
	return js, s
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newMsg(subject, msgID string) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Data = []byte("payload of " + subject)
	if msgID != "" {
		m.Header.Set(natsjs.MsgIDHeader, msgID)
	}
	return m
}

// state reads the stream's current state from the server.
func state(t *testing.T, s natsjs.Stream) natsjs.StreamState {
	t.Helper()
	info, err := s.Info(testCtx(t))
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	return info.State
}
