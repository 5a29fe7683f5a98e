package test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/engine"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
	"github.com/wfpnats/wfp/jetstream"
	"github.com/wfpnats/wfp/jetstream/embedded"
	"github.com/wfpnats/wfp/projection"
)

func startEngine(t testing.TB, nc *nats.Conn) *engine.Engine {
	t.Helper()
	return startEngineWith(t, nc, engine.Config{})
}

func startEngineWith(t testing.TB, nc *nats.Conn, cfg engine.Config) *engine.Engine {
	t.Helper()
	cfg.Logger = quietLog
	e, err := engine.Start(context.Background(), nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// world is a server, an engine and a management client: the usual start.
type world struct {
	srv    *embedded.Server
	nc     *nats.Conn
	js     natsjs.JetStream
	eng    *engine.Engine
	client *engine.Client
}

func newWorld(t testing.TB) *world {
	t.Helper()
	w := &world{srv: testkit.Server(t)}
	w.nc = testkit.Conn(t, w.srv)
	w.js = testkit.JetStream(t, w.nc)
	w.eng = startEngine(t, w.nc)
	w.client = engine.NewClient(w.nc)
	return w
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// logEntry is one message of the stream, decoded.
type logEntry struct {
	seq     uint64
	subject string
	ev      *events.Event // nil: not an event
}

// readLog reads the whole stream in order, through an ordered consumer.
func readLog(t testing.TB, js natsjs.JetStream) []logEntry {
	t.Helper()
	ctx := ctxT(t)
	s, err := js.Stream(ctx, jetstream.DefaultStreamName)
	if err != nil {
		t.Fatal(err)
	}
	last := s.CachedInfo().State.LastSeq
	if last == 0 {
		return nil
	}
	cons, err := js.OrderedConsumer(ctx, jetstream.DefaultStreamName, natsjs.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []logEntry
	for {
		m, err := cons.Next(natsjs.FetchMaxWait(10 * time.Second))
		if err != nil {
			t.Fatalf("reading the log at %d of %d: %v", len(out), last, err)
		}
		meta, _ := m.Metadata()
		ev, err := events.Decode(m.Data())
		if err != nil {
			ev = nil
		}
		out = append(out, logEntry{meta.Sequence.Stream, m.Subject(), ev})
		if meta.Sequence.Stream >= last {
			return out
		}
	}
}

// readArchive reads the whole history from an archive stream, once it has
// sourced the log up to last: every event with its log sequence, also
// those the log has compacted away.
func readArchive(t testing.TB, js natsjs.JetStream, archive string, last uint64) []logEntry {
	t.Helper()
	ctx := ctxT(t)
	testkit.Eventually(t, "the archive to catch up with the log", func() bool {
		n, err := jetstream.ArchivedThrough(ctx, js, archive)
		return err == nil && n >= last
	})
	cons, err := js.OrderedConsumer(ctx, archive, natsjs.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []logEntry
	for {
		m, err := cons.Next(natsjs.FetchMaxWait(10 * time.Second))
		if err != nil {
			t.Fatalf("reading the archive after log sequence %d of %d: %v", len(out), last, err)
		}
		seq, _ := jetstream.SourceSeq(m.Headers().Get(jetstream.HeaderStreamSource))
		ev, err := events.Decode(m.Data())
		if err != nil {
			ev = nil
		}
		out = append(out, logEntry{seq, m.Subject(), ev})
		if seq >= last {
			return out
		}
	}
}

// foldLog folds a log the way any reader would.
func foldLog(log []logEntry) *projection.State {
	s := projection.New()
	for _, e := range log {
		s.Apply(e.seq, e.ev)
	}
	return s
}

// quietLog drops engine logs: tests assert on behaviour, not log lines.
var quietLog = slog.New(slog.DiscardHandler)

var (
	buildOnce sync.Map // name -> *buildResult
	binDir    string   // where binary builds go; removed after the run
)

func TestMain(m *testing.M) {
	var err error
	if binDir, err = os.MkdirTemp("", "wfp-bin-"); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(binDir)
	os.Exit(code)
}

type buildResult struct {
	once sync.Once
	path string
	err  error
}

// binary builds one of the repo's commands (or, given a full import path,
// any command in the module graph) once per test run and returns its path.
func binary(t testing.TB, pkg string) string {
	t.Helper()
	v, _ := buildOnce.LoadOrStore(pkg, &buildResult{})
	b := v.(*buildResult)
	b.once.Do(func() {
		b.path = filepath.Join(binDir, filepath.Base(pkg))
		if !strings.Contains(pkg, ".") {
			pkg = "github.com/wfpnats/wfp/" + pkg
		}
		cmd := exec.Command("go", "build", "-o", b.path, pkg)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = errors.New(string(out))
		}
	})
	if b.err != nil {
		t.Fatalf("building %s: %v", pkg, b.err)
	}
	return b.path
}
