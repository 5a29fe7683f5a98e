package embedded

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// One server per data directory: a second one is refused with an error
// that names the directory and who holds it, and the directory is free
// again once the first stops.
func TestSecondServerOnTheSameDirectoryIsRefused(t *testing.T) {
	dir := t.TempDir()
	first, err := Start(Options{StoreDir: dir, Listen: "127.0.0.1:-1", NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Shutdown()
	second, err := Start(Options{StoreDir: dir, Listen: "127.0.0.1:-1", NoLog: true})
	if err == nil {
		second.Shutdown()
		t.Fatal("a second server started on a data directory in use")
	}
	host, _ := os.Hostname()
	for _, want := range []string{dir, fmt.Sprintf("pid %d", os.Getpid()), "host " + host, "started"} {
		if !errors.Is(err, ErrDirInUse) || !strings.Contains(err.Error(), want) {
			t.Fatalf("second server: %v; want ErrDirInUse naming %q", err, want)
		}
	}
	first.Shutdown()
	third, err := Start(Options{StoreDir: dir, Listen: "127.0.0.1:-1", NoLog: true})
	if err != nil {
		t.Fatalf("after the first stopped: %v", err)
	}
	third.Shutdown()
}

// The sync policy reaches the server.
func TestSyncPolicy(t *testing.T) {
	for _, o := range []Options{{SyncAlways: true}, {SyncInterval: 3 * time.Second}, {}} {
		o.StoreDir, o.NoListen, o.NoLog = t.TempDir(), true, true
		s, err := Start(o)
		if err != nil {
			t.Fatal(err)
		}
		cfg := s.NATS.JetStreamConfig()
		s.Shutdown()
		want := o.SyncInterval
		if want == 0 {
			want = 2 * time.Minute // the server's own default
		}
		if cfg.SyncAlways != o.SyncAlways || (!o.SyncAlways && cfg.SyncInterval != want) {
			t.Fatalf("options %+v: server syncs always=%v every %v", o, cfg.SyncAlways, cfg.SyncInterval)
		}
	}
	if _, err := Start(Options{StoreDir: t.TempDir(), NoListen: true, SyncInterval: -time.Second}); err == nil {
		t.Fatal("a negative sync interval was taken")
	}
}
