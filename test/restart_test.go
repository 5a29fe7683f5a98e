package test

import (
	"bufio"
	"context"
	"io"
	"os/exec"
	"reflect"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wfpnats/wfp/engine"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
)

// engineProc is the engine binary serving its own embedded server.
type engineProc struct {
	cmd *exec.Cmd
	url string
	log *testkit.SyncBuffer // what it logs once ready
}

var urlLine = regexp.MustCompile(`embedded nats-server.* url=(nats://\S+)`)

// runEngine starts `engine --listen 127.0.0.1:-1 --data dir` and waits for
// it to say where it listens and that it is ready.
func runEngine(t *testing.T, dir string) *engineProc {
	t.Helper()
	p := runEngineWith(t, nil, "--listen", "127.0.0.1:-1", "--data", dir)
	if p.url == "" {
		t.Fatal("the engine did not say where its embedded server listens")
	}
	return p
}

// runEngineWith starts the engine binary with args and, added to this
// process's environment, env; it waits until the engine says it is ready
// (and, on an embedded server, where it listens).
func runEngineWith(t *testing.T, env []string, args ...string) *engineProc {
	t.Helper()
	cmd := exec.Command(binary(t, "cmd/engine"), args...)
	cmd.Env = append(cmd.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &engineProc{cmd: cmd, log: &testkit.SyncBuffer{}}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ready := make(chan error, 1)
	var said strings.Builder // what it said before it was ready
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			said.WriteString(sc.Text() + "\n")
			if m := urlLine.FindStringSubmatch(sc.Text()); m != nil {
				p.url = m[1]
			}
			if regexp.MustCompile(`msg="engine ready"`).MatchString(sc.Text()) {
				ready <- nil
				// The scanner may hold lines read past this one.
				for sc.Scan() {
					p.log.Write([]byte(sc.Text() + "\n"))
				}
				_, _ = io.Copy(p.log, stderr)
				return
			}
		}
		ready <- io.ErrUnexpectedEOF
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("engine %v did not get ready: %v\n%s", args, err, said.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("engine did not get ready in 30s")
	}
	return p
}

// An engine killed with SIGKILL and started again on the same store lists
// the same filters with the same ids; new ids continue after the old ones;
// and starting writes nothing to the log.
func TestRestartAfterSIGKILL(t *testing.T) {
	dir := t.TempDir()
	ctx := ctxT(t)
	p := runEngine(t, dir)
	nc, err := nats.Connect(p.url)
	if err != nil {
		t.Fatal(err)
	}
	client := engine.NewClient(nc)
	co, err := client.AddCallout(ctx, events.Callout{Name: "c"})
	if err != nil {
		t.Fatal(err)
	}
	var maxID uint64
	for i := range 30 {
		f, err := client.AddFilter(ctx, events.Filter{Name: "f", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionCalloutInspection, CalloutKey: co.Key})
		if err != nil {
			t.Fatal(err)
		}
		maxID = max(maxID, f.ID)
		if i%3 == 0 {
			if err := client.DeleteFilter(ctx, engine.FilterRef{FilterID: f.ID}); err != nil {
				t.Fatal(err)
			}
		}
	}
	before, err := client.ListFilters(ctx, engine.ListFiltersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()

	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Wait()

	p = runEngine(t, dir)
	nc, err = nats.Connect(p.url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	client = engine.NewClient(nc)
	after, err := client.ListFilters(ctx, engine.ListFiltersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("after restart:\n got %d filters at seq %d\nwant %d filters at seq %d", len(after.Filters), after.Seq, len(before.Filters), before.Seq)
	}
	js := testkit.JetStream(t, nc)
	s, err := js.Stream(ctx, "WFP")
	if err != nil {
		t.Fatal(err)
	}
	if last := s.CachedInfo().State.LastSeq; last != before.Seq {
		t.Fatalf("restart wrote to the log: last seq %d, was %d", last, before.Seq)
	}
	f, err := client.AddFilter(context.Background(), events.Filter{Name: "new", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionBlock})
	if err != nil {
		t.Fatal(err)
	}
	if f.ID <= maxID || f.ID != before.Seq+1 {
		t.Fatalf("new filter id %d, want %d (after old max %d)", f.ID, before.Seq+1, maxID)
	}
}
