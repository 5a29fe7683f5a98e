package embedded

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

func TestStartRandomPortTCPAndInProcess(t *testing.T) {
	e := startServer(t)
	url := e.ClientURL()
	if strings.HasSuffix(url, ":-1") || strings.HasSuffix(url, ":0") {
		t.Fatalf("ClientURL %q does not carry the real port", url)
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("TCP connect to %s: %v", url, err)
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.AccountInfo(testCtx(t)); err != nil {
		t.Fatalf("JetStream not usable over TCP: %v", err)
	}

	inproc := connectJS(t, e)
	if _, err := inproc.AccountInfo(testCtx(t)); err != nil {
		t.Fatalf("JetStream not usable in process: %v", err)
	}
}

func TestStartPortBusy(t *testing.T) {
	first := startServer(t)
	listen := strings.TrimPrefix(first.ClientURL(), "nats://")

	// The fatal log line ends the wait for readiness: with a ready
	// timeout far longer than any test runs, an error that says the port
	// is busy can only have come from it.
	second, err := Start(Options{StoreDir: t.TempDir(), Listen: listen, NoLog: true, ReadyTimeout: time.Hour})
	if err == nil {
		second.Shutdown()
		t.Fatalf("second server on busy %s started", listen)
	}
	if !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("error does not say the port is busy: %v", err)
	}
}

func TestStartNoListen(t *testing.T) {
	e, err := Start(Options{StoreDir: t.TempDir(), NoListen: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()
	if _, err := connectJS(t, e).AccountInfo(testCtx(t)); err != nil {
		t.Fatalf("in-process JetStream without listener: %v", err)
	}
}

func TestStartBadOptions(t *testing.T) {
	if _, err := Start(Options{}); err == nil {
		t.Error("no StoreDir: want error")
	}
	for _, l := range []string{"nohostport", "127.0.0.1:x", "127.0.0.1:70000"} {
		if _, err := Start(Options{StoreDir: t.TempDir(), Listen: l, NoLog: true}); err == nil {
			t.Errorf("Listen %q: want error", l)
		}
	}
}

func TestShutdownTwice(t *testing.T) {
	e := startServer(t)
	e.Shutdown()
	e.Shutdown() // and once more by t.Cleanup
	if e.NATS.Running() {
		t.Fatal("server still running after Shutdown")
	}
	var nilE *Server
	nilE.Shutdown()
}

func TestParseListen(t *testing.T) {
	for _, c := range []struct {
		in   string
		host string
		port int
	}{
		{"", "127.0.0.1", 4222},
		{"127.0.0.1:-1", "127.0.0.1", -1},
		{"127.0.0.1:0", "127.0.0.1", -1},
		{":5000", "0.0.0.0", 5000},
	} {
		h, p, err := parseListen(c.in)
		if err != nil || h != c.host || p != c.port {
			t.Errorf("parseListen(%q) = %q, %d, %v; want %q, %d", c.in, h, p, err, c.host, c.port)
		}
	}
	if _, _, err := parseListen("[::1"); err == nil || errors.Unwrap(err) == nil {
		t.Errorf("bad address: want wrapped error, got %v", err)
	}
}

// Beyond loopback, a server with no authentication is refused, with an
// error that says how to add it; loopback needs none.
func TestStartRefusesANonLoopbackListenWithoutAuth(t *testing.T) {
	for _, l := range []string{"0.0.0.0:-1", ":-1", "[::]:-1"} {
		srv, err := Start(Options{StoreDir: t.TempDir(), Listen: l, NoLog: true})
		if err == nil {
			srv.Shutdown()
			t.Fatalf("listen %s with no authentication: started", l)
		}
		if !errors.Is(err, ErrNoAuth) || !strings.Contains(err.Error(), "--server-config") {
			t.Errorf("listen %s: %v; want ErrNoAuth saying how to configure users", l, err)
		}
	}
	for _, l := range []string{"127.0.0.1:-1", "localhost:-1"} {
		srv, err := Start(Options{StoreDir: t.TempDir(), Listen: l, NoLog: true})
		if err != nil {
			t.Fatalf("listen %s: %v", l, err)
		}
		srv.Shutdown()
	}
}

// A nats-server configuration file with users: the server listens
// beyond loopback, lets in who it names, and no one else.
func TestStartWithAConfigFileWithUsers(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "server.conf")
	if err := os.WriteFile(conf, []byte(`
listen: "0.0.0.0:-1"
accounts {
  WFP {
    jetstream: enabled
    users: [ { user: engine, password: "pw-engine" } ]
  }
}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := Start(Options{StoreDir: dir, ConfigFile: conf, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	if _, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(0)); err == nil {
		t.Fatal("connected with no credentials")
	}
	nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("engine", "pw-engine"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.AccountInfo(testCtx(t)); err != nil {
		t.Fatalf("JetStream in the file's account: %v", err)
	}
	// In process, the same credentials work.
	inproc, err := srv.Connect(nats.UserInfo("engine", "pw-engine"))
	if err != nil {
		t.Fatal(err)
	}
	inproc.Close()
}

// A file that names a port but no host listens on loopback, like the
// default; a file that cannot be parsed is an error naming it.
func TestStartConfigFileDefaultsAndErrors(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "server.conf")
	if err := os.WriteFile(conf, []byte("port: -1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := Start(Options{StoreDir: dir, ConfigFile: conf, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	if h := srv.NATS.Addr().(*net.TCPAddr).IP; !h.IsLoopback() {
		t.Errorf("listening on %v, want loopback", h)
	}
	srv.Shutdown()
	bad := filepath.Join(dir, "bad.conf")
	if err := os.WriteFile(bad, []byte("listen: {{{\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Start(Options{StoreDir: dir, ConfigFile: bad, NoLog: true}); err == nil || !strings.Contains(err.Error(), "bad.conf") {
		t.Errorf("unparsable file: %v, want an error naming it", err)
	}
}

// With Options.Logger the server's lines are log records: its notices
// (the banner) at info, so a handler at warn level keeps them out.
func TestLoggerGetsTheServersLines(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelWarn} {
		var out bytes.Buffer
		var mu sync.Mutex
		h := slog.NewTextHandler(&lockedWriter{&mu, &out}, &slog.HandlerOptions{Level: level})
		e, err := Start(Options{StoreDir: t.TempDir(), NoListen: true, Logger: slog.New(h)})
		if err != nil {
			t.Fatal(err)
		}
		e.Shutdown()
		mu.Lock()
		got := out.String()
		mu.Unlock()
		if banner := strings.Contains(got, `level=INFO msg="Starting nats-server"`); banner != (level == slog.LevelInfo) {
			t.Errorf("handler at %v: banner logged %v:\n%s", level, banner, got)
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
