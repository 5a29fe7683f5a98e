package embedded

import (
	"context"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
)

// startServer runs a real embedded server on a random port for one test.
func startServer(t *testing.T) *Server {
	t.Helper()
	e, err := Start(Options{StoreDir: t.TempDir(), Listen: "127.0.0.1:-1", NoLog: true})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(e.Shutdown)
	return e
}

// connectJS opens an in-process connection and its JetStream context.
func connectJS(t *testing.T, e *Server) natsjs.JetStream {
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

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
