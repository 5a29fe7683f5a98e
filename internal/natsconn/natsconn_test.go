package natsconn

import (
	"flag"
	"io"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/wfpnats/wfp/jetstream/embedded"
)

func TestDefaultURLFromEnvironment(t *testing.T) {
	t.Setenv(EnvURL, "")
	if got := DefaultURL(); got != nats.DefaultURL {
		t.Errorf("unset: %q, want %q", got, nats.DefaultURL)
	}
	t.Setenv(EnvURL, "nats://example.test:4333")
	if got := DefaultURL(); got != "nats://example.test:4333" {
		t.Errorf("set: %q", got)
	}
	var f Flags
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f.Register(fs)
	if err := fs.Parse(nil); err != nil || f.URL != "nats://example.test:4333" {
		t.Errorf("--server default %q (%v), want the environment's", f.URL, err)
	}
}

func TestConnectNamesTheConnection(t *testing.T) {
	srv, err := embedded.Start(embedded.Options{StoreDir: t.TempDir(), Listen: "127.0.0.1:-1", NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	f := Flags{URL: srv.ClientURL()}
	nc, err := f.Connect("wfp-test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if nc.Opts.Name != "wfp-test" {
		t.Errorf("connection name %q", nc.Opts.Name)
	}
	bad := Flags{URL: "nats://127.0.0.1:1"}
	if _, err := bad.Connect("x", nats.MaxReconnects(0)); err == nil {
		t.Error("connect to a closed port: want error")
	}
}
