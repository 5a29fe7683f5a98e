// Package testkit holds the setup that the module's tests share: a real
// embedded nats-server with JetStream, a connection to it, the event-log
// stream, a buffer safe for concurrent use, and a poll-until-true wait.
//
// It imports only jetstream, embedded and the NATS client packages, so the in-package
// tests of engine and callout can use it without an import cycle. The
// jetstream package's own tests cannot (testkit imports jetstream).
package testkit

import (
	"bytes"
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/jetstream"
	"github.com/wfpnats/wfp/jetstream/embedded"
)

// Server starts a real embedded nats-server with JetStream, stored in a
// fresh t.TempDir(), for the length of the test. See ServerIn.
func Server(t testing.TB) *embedded.Server {
	t.Helper()
	return ServerIn(t, t.TempDir())
}

// ServerIn starts a real embedded nats-server with JetStream stored in dir.
// It listens on a random loopback port (see Embedded.ClientURL), keeps its
// own log quiet, and is shut down when the test ends. A server that cannot
// start fails the test.
func ServerIn(t testing.TB, dir string) *embedded.Server {
	t.Helper()
	srv, err := embedded.Start(embedded.Options{StoreDir: dir, Listen: "127.0.0.1:-1", NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// ServerWith starts a real nats-server with JetStream, stored in dir, as
// configured by opts on top of what ServerIn sets: for the settings the
// embedded package does not expose (a small max payload, a store that
// fills up). It listens on a random loopback port; connect with
// nats.Connect(srv.ClientURL()). It is shut down when the test ends.
func ServerWith(t testing.TB, dir string, configure func(*server.Options)) *server.Server {
	t.Helper()
	opts := &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true}
	configure(opts)
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	if !ns.ReadyForConnections(20 * time.Second) {
		t.Fatal("nats-server not ready for connections")
	}
	return ns
}

// Dial connects to url over TCP, closed when the test ends.
func Dial(t testing.TB, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// ServerFromConfig starts a real embedded nats-server from a
// nats-server configuration file holding conf (read with the server's own
// parser), stored in a fresh t.TempDir(), for the length of the test. The
// configuration says where it listens; the server's log stays quiet.
func ServerFromConfig(t testing.TB, conf string) *embedded.Server {
	t.Helper()
	dir := t.TempDir()
	srv, err := embedded.Start(embedded.Options{StoreDir: dir, ConfigFile: WriteFile(t, dir, "server.conf", conf), NoLog: true})
	if err != nil {
		t.Fatalf("%v\n%s", err, conf)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// Conn opens an in-process connection to srv, closed when the test ends.
func Conn(t testing.TB, srv *embedded.Server) *nats.Conn {
	t.Helper()
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// JetStream is the JetStream context of nc.
func JetStream(t testing.TB, nc *nats.Conn) natsjs.JetStream {
	t.Helper()
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// Stream ensures the event-log stream with every setting at its default
// (jetstream.StreamConfig{}: stream jetstream.DefaultStreamName, subject
// prefix jetstream.DefaultPrefix) and returns it.
func Stream(t testing.TB, js natsjs.JetStream) natsjs.Stream {
	t.Helper()
	s, err := jetstream.EnsureStream(context.Background(), js, jetstream.StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// SyncBuffer is a bytes.Buffer that may be written by one goroutine (a
// logger, a child process's output) while the test reads it. The zero
// value is ready to use; do not copy it after first use.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p to the buffer.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// How Eventually polls.
const (
	pollEvery    = 5 * time.Millisecond
	pollDeadline = 20 * time.Second
)

// Eventually polls cond every 5 ms until it returns true, and fails the
// test with t.Fatalf if it has not within 20 s. For state that no channel
// announces (counters, server-side consumer info, another goroutine's
// output); what names the awaited state in the failure message.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(pollDeadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(pollEvery)
	}
}

// ExampleServer starts a real embedded nats-server with JetStream for a
// runnable Example, which has no testing.T: in process only (no TCP
// port), stored in a fresh temporary directory. It returns a connection
// and a func that closes it, stops the server and removes the directory;
// it panics if the server cannot start, failing the example.
func ExampleServer() (*nats.Conn, func()) {
	dir, err := os.MkdirTemp("", "wfp-example-")
	if err != nil {
		panic(err)
	}
	srv, err := embedded.Start(embedded.Options{StoreDir: dir, NoListen: true, NoLog: true})
	if err != nil {
		panic(err)
	}
	nc, err := srv.Connect()
	if err != nil {
		panic(err)
	}
	return nc, func() {
		nc.Close()
		srv.Shutdown()
		_ = os.RemoveAll(dir)
	}
}
