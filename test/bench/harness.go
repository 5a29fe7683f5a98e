package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/jetstream"
	"github.com/wfpnats/wfp/jetstream/embedded"
)

// Config sizes a run. QuickConfig and FullConfig are the two published
// sizes; tests use a tiny one.
type Config struct {
	Mode string `json:"mode"`
	// N is the number of live filters in the replay, cold start and memory
	// scenarios; Churn is how many filters per live one are added and
	// deleted in the churn log.
	N     int `json:"n"`
	Churn int `json:"churn"`
	// Callers are the concurrency levels of the add throughput scenario;
	// each level runs AddWarmup, then AddDuration measured, for ours and
	// for the raw baseline.
	Callers     []int         `json:"callers"`
	AddWarmup   time.Duration `json:"addWarmup"`
	AddDuration time.Duration `json:"addDuration"`
	// LatencyOps adds (and raw publishes) are timed one at a time, after
	// LatencyWarmup untimed ones.
	LatencyOps    int `json:"latencyOps"`
	LatencyWarmup int `json:"latencyWarmup"`
	// NotifyRate adds per second are paced over NotifyCallers callers for
	// NotifyWarmup (not counted) plus NotifyDuration.
	NotifyRate     int           `json:"notifyRate"`
	NotifyCallers  int           `json:"notifyCallers"`
	NotifyWarmup   time.Duration `json:"notifyWarmup"`
	NotifyDuration time.Duration `json:"notifyDuration"`
	// Reps is how often each replay and cold start measurement is repeated
	// (alternating raw and ours), ChurnReps the same for the churn replay;
	// the median is reported.
	Reps      int `json:"reps"`
	ChurnReps int `json:"churnReps"`
	// BulkN filters are loaded in the bulk scenario.
	BulkN int `json:"bulkN"`
	// The fleet scenario: FleetCallouts callouts of FleetFilters filters
	// each, FleetAgents replay agents per callout started at once.
	FleetCallouts int `json:"fleetCallouts"`
	FleetFilters  int `json:"fleetFilters"`
	FleetAgents   int `json:"fleetAgents"`
	// FleetRest is how long the fleet stays up after it synced before the
	// server's memory is read at rest (default fileStoreCacheExpiry, past
	// the file store's block caches; the test harness makes it short).
	FleetRest time.Duration `json:"fleetRest"`
	// ClassifyFilters filters per layer are classified against, by
	// ClassifyCallers API callers, for ClassifyDuration per measurement.
	ClassifyFilters  int           `json:"classifyFilters"`
	ClassifyCallers  int           `json:"classifyCallers"`
	ClassifyDuration time.Duration `json:"classifyDuration"`
	// InProcess connects the harness's clients in process instead of over
	// TCP loopback. Memory children always use TCP.
	InProcess bool `json:"inProcess"`
	// Only, if set, lists the scenarios to run (see scenarioNames).
	Only []string `json:"only,omitempty"`

	// HeapProfiles, if set, makes each memory child write its heap profile
	// to HeapProfiles.<kind>; CPUProfiles makes every child write a CPU
	// profile of its measured operation to CPUProfiles.<kind> (the last
	// repetition's).
	HeapProfiles string `json:"-"`
	CPUProfiles  string `json:"-"`
	// Exe is the program started (with childEnv set) for the memory
	// scenario; default os.Executable().
	Exe string `json:"-"`
	// Log receives progress lines; nil discards them.
	Log io.Writer `json:"-"`
}

// QuickConfig finishes in under 2 minutes on 2 cores.
func QuickConfig() Config {
	return Config{
		Mode: "quick", N: 100_000, Churn: 4,
		Callers: []int{1, 16, 128}, AddWarmup: 500 * time.Millisecond, AddDuration: 1500 * time.Millisecond,
		LatencyOps: 3000, LatencyWarmup: 300,
		NotifyRate: 2000, NotifyCallers: 8, NotifyWarmup: time.Second, NotifyDuration: 4 * time.Second,
		Reps: 3, ChurnReps: 2,
		BulkN:         100_000,
		FleetCallouts: 20, FleetFilters: 1000, FleetAgents: 5,
		ClassifyFilters: 10_000, ClassifyCallers: 16, ClassifyDuration: 2 * time.Second,
	}
}

// FullConfig finishes in under 10 minutes on 2 cores.
func FullConfig() Config {
	return Config{
		Mode: "full", N: 1_000_000, Churn: 4,
		Callers: []int{1, 16, 128}, AddWarmup: time.Second, AddDuration: 5 * time.Second,
		LatencyOps: 20000, LatencyWarmup: 1000,
		NotifyRate: 2000, NotifyCallers: 8, NotifyWarmup: 2 * time.Second, NotifyDuration: 10 * time.Second,
		Reps: 1, ChurnReps: 1,
		BulkN:         100_000,
		FleetCallouts: 100, FleetFilters: 1000, FleetAgents: 10,
		ClassifyFilters: 10_000, ClassifyCallers: 16, ClassifyDuration: 5 * time.Second,
	}
}

// scenarioNames are the scenarios in run order. replay, coldstart, memory
// and churn share one populated log.
var scenarioNames = []string{"throughput", "latency", "notify", "bulk", "replay", "coldstart", "memory", "churn", "fleet", "classify", "sync", "barrier"}

func (c Config) wants(name string) bool {
	if len(c.Only) == 0 {
		return true
	}
	for _, o := range c.Only {
		if o == name {
			return true
		}
	}
	return false
}

func (c Config) validate() error {
	for _, o := range c.Only {
		known := false
		for _, n := range scenarioNames {
			known = known || n == o
		}
		if !known {
			return fmt.Errorf("unknown scenario %q (have %s)", o, strings.Join(scenarioNames, ", "))
		}
	}
	switch {
	case c.N <= 0 || c.Churn < 0 || c.Reps <= 0 || c.ChurnReps <= 0:
		return errors.New("N, Reps and ChurnReps must be positive, Churn not negative")
	case len(c.Callers) == 0 || c.AddDuration <= 0:
		return errors.New("need caller levels and an add duration")
	case c.LatencyOps <= 0 || c.NotifyRate <= 0 || c.NotifyCallers <= 0 || c.NotifyDuration <= 0:
		return errors.New("latency ops, notify rate, callers and duration must be positive")
	case c.BulkN <= 0 || c.FleetCallouts <= 0 || c.FleetFilters <= 0 || c.FleetAgents <= 0:
		return errors.New("bulk size and fleet sizes must be positive")
	case c.wants("classify") && (c.ClassifyFilters < 16 || c.ClassifyCallers <= 0 || c.ClassifyDuration <= 0):
		return errors.New("classify needs at least 16 filters, callers and a duration")
	}
	return nil
}

// quiet discards the logs of the engine and the agents.
var quiet = slog.New(slog.DiscardHandler)

// bench is one run: the server, the report and what scenarios share.
type bench struct {
	cfg    Config
	srv    *embedded.Server
	url    string
	report *Report
	start  time.Time

	mu    sync.Mutex
	conns []*nats.Conn
	// addMsg is a real FilterAdded message as the engine writes it: the
	// template of every raw baseline message.
	addMsg events.Message
}

// Run starts an embedded server in a temporary directory, runs the
// scenarios and returns the report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if cfg.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cfg.Exe = exe
	}
	dir, err := os.MkdirTemp("", "wfp-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	srv, err := embedded.Start(embedded.Options{StoreDir: dir, Listen: "127.0.0.1:-1", NoLog: true})
	if err != nil {
		return nil, err
	}
	defer srv.Shutdown()

	b := &bench{cfg: cfg, srv: srv, url: srv.ClientURL(), start: time.Now()}
	defer b.closeConns()
	defer func() { b.report.Seconds = time.Since(b.start).Seconds() }()
	transport := "TCP loopback"
	if cfg.InProcess {
		transport = "in-process connections"
	}
	b.report = &Report{
		Mode: cfg.Mode, Command: strings.Join(os.Args, " "), Started: b.start.UTC(),
		GoVersion: runtime.Version(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH,
		NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		ServerVersion: server.VERSION, Transport: transport, Config: cfg, Notes: []string{},
	}
	if err := b.sizeAddEvent(); err != nil {
		return nil, err
	}

	type scenario struct {
		names []string
		run   func(context.Context) error
	}
	for _, s := range []scenario{
		{[]string{"throughput"}, b.addThroughput},
		{[]string{"latency"}, b.addLatency},
		{[]string{"notify"}, b.notifyLatency},
		{[]string{"bulk"}, b.bulkLoad},
		{[]string{"replay", "coldstart", "memory", "churn"}, b.replayGroup},
		{[]string{"fleet"}, b.fleet},
		{[]string{"classify"}, b.classifyRate},
		{[]string{"sync"}, b.syncPolicy},
		{[]string{"barrier"}, b.readBarrier},
	} {
		want := false
		for _, n := range s.names {
			want = want || cfg.wants(n)
		}
		if !want {
			continue
		}
		if err := s.run(ctx); err != nil {
			return b.report, fmt.Errorf("%s: %w", strings.Join(s.names, "/"), err)
		}
		runtime.GC()
	}
	return b.report, nil
}

// logf prints a progress line with the time since the start.
func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.cfg.Log, "[%6.1fs] %s\n", time.Since(b.start).Seconds(), fmt.Sprintf(format, args...))
}

// connect opens a connection named name, in process or over TCP as
// configured. It is closed at the end of the run.
func (b *bench) connect(name string) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name("wfp-bench " + name), nats.MaxReconnects(-1)}
	var nc *nats.Conn
	var err error
	if b.cfg.InProcess {
		nc, err = b.srv.Connect(opts...)
	} else {
		nc, err = nats.Connect(b.url, opts...)
	}
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.conns = append(b.conns, nc)
	b.mu.Unlock()
	return nc, nil
}

func (b *bench) closeConns() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, nc := range b.conns {
		nc.Close()
	}
	b.conns = nil
}

// jsConn is a connection with its JetStream context.
type jsConn struct {
	nc *nats.Conn
	js natsjs.JetStream
}

func (b *bench) jsConnect(name string, opts ...natsjs.JetStreamOpt) (*jsConn, error) {
	nc, err := b.connect(name)
	if err != nil {
		return nil, err
	}
	js, err := natsjs.New(nc, opts...)
	if err != nil {
		return nil, err
	}
	return &jsConn{nc: nc, js: js}, nil
}

// freshStream creates an empty event-log stream named name with prefix,
// configured exactly as the engine configures its own, deleting any
// leftover of that name first.
//
// The server removes a deleted stream's store in the background, so a
// create right after the delete can fail to make the new store ("error
// creating store for stream", 10049). That is retried, a while: the name
// is free once the old store is gone.
func (b *bench) freshStream(ctx context.Context, js natsjs.JetStream, name, prefix string) (natsjs.Stream, jetstream.StreamConfig, error) {
	cfg := jetstream.StreamConfig{Name: name, Prefix: prefix, Horizon: benchHorizon}.WithDefaults()
	if err := js.DeleteStream(ctx, name); err != nil && !errors.Is(err, natsjs.ErrStreamNotFound) {
		return nil, cfg, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, err := jetstream.EnsureStream(ctx, js, cfg)
		var apiErr *natsjs.APIError
		if err == nil || !errors.As(err, &apiErr) || apiErr.ErrorCode != jsErrStoreFailed || time.Now().After(deadline) {
			return s, cfg, err
		}
		select {
		case <-ctx.Done():
			return nil, cfg, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// jsErrStoreFailed is the server's "error creating store for stream"
// (nats.go has no constant for it).
const jsErrStoreFailed natsjs.ErrorCode = 10049

// benchHorizon is the horizon of every stream the harness makes, as the
// engine's default: a day, far longer than any run, so no reader resyncs
// while it is timed. The churn scenario shortens it for its own log.
const benchHorizon = 24 * time.Hour

// dropStream deletes a stream a scenario is done with, so the next one
// does not pay for its memory.
func (b *bench) dropStream(js natsjs.JetStream, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := js.DeleteStream(ctx, name); err != nil {
		b.logf("warning: deleting stream %s: %v", name, err)
	}
}

// sizeAddEvent encodes a real FilterAdded, as the engine would write it,
// to size the raw baselines' messages.
func (b *bench) sizeAddEvent() error {
	f := benchFilter(1, newKey())
	f.Key, f.ID = newKey(), 1_000_000
	m, err := events.Subjects{Prefix: "rawbench"}.Message(events.NewFilterEvent(events.FilterAdded, &f))
	if err != nil {
		return err
	}
	b.addMsg = m
	hdr := 0
	for k, vs := range m.Header {
		for _, v := range vs {
			hdr += len(k) + len(v) + 4 // "k: v\r\n"
		}
	}
	b.report.AddEvent = EventSize{Subject: len(m.Subject), Header: hdr, Payload: len(m.Data)}
	return nil
}

// errorRate describes failed operations for a note, or "" for none.
func errorRate(failed, total int) string {
	if failed == 0 {
		return ""
	}
	return fmt.Sprintf("%d of %d operations failed", failed, total)
}

// label sets pprof labels scenario=<scenario> and side=<side> ("ours" or
// "raw") on the calling goroutine until restore is called. Goroutines
// started meanwhile (connections, the engine's loop, agents, callers)
// inherit them, so `go tool pprof -tagfocus side=ours` keeps our side of a
// -cpuprofile; the embedded server's goroutines carry no label.
func label(ctx context.Context, scenario, side string) (restore func()) {
	pprof.SetGoroutineLabels(pprof.WithLabels(ctx, pprof.Labels("scenario", scenario, "side", side)))
	return func() { pprof.SetGoroutineLabels(ctx) }
}
