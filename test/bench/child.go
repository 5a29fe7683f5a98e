package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/engine"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/jetstream"
)

// childEnv, when set, makes the program a child: it runs the childSpec it
// holds (JSON) and prints a childResult as the last line on stdout.
//
// The replay, cold start and memory scenarios run their readers (ours and
// raw alike) in child processes connected over TCP, as agents and engines
// run in production: a reader in the harness's process would share its heap
// with the embedded nats-server, so it would pay for the server's garbage
// collection, and the server's caches would count as its memory.
const childEnv = "WFPBENCH_CHILD"

// Child kinds.
const (
	kindReplayRaw   = "replay-raw"   // ordered consumer, last per subject, count to the snapshot's end
	kindReplayAgent = "replay-agent" // callout.Register in replay mode, until Synced
	kindColdRaw     = "cold-raw"     // ordered consumer over the whole stream, count to its end
	kindColdEngine  = "cold-engine"  // engine.Start
	kindMemRaw      = "mem-raw"      // map[id]*events.Filter of the decoded filters
	kindMemEngine   = "mem-engine"   // engine.Start, heap after
	kindMemAgent    = "mem-agent"    // replay agent, heap after Synced
	kindKVWatch     = "kv-watch"     // NATS KV WatchAll of bucket Stream, JSON-decoded into a map
)

type childSpec struct {
	Kind string `json:"kind"`
	// Name names the run's profile files (default Kind).
	Name    string `json:"name,omitempty"`
	URL     string `json:"url"`
	Stream  string `json:"stream"`
	Prefix  string `json:"prefix"`
	Callout string `json:"callout"`
	// N is the number of live filters the reader must end up holding;
	// Want, if not negative, the number of messages a raw read must find
	// pending at creation.
	N    int `json:"n"`
	Want int `json:"want"`
	// Callouts and Agents: the fleet kinds' callouts and readers per
	// callout (N is then the filters per callout).
	Callouts []string `json:"callouts,omitempty"`
	Agents   int      `json:"agents,omitempty"`
	// CPUProfile and HeapProfile, if set, are where the child writes a CPU
	// profile of the measured operation and its in-use heap after it.
	CPUProfile  string `json:"cpuProfile,omitempty"`
	HeapProfile string `json:"heapProfile,omitempty"`
}

type childResult struct {
	Kind string `json:"kind"`
	// Seconds is the wall time of the measured operation, CPUSeconds the
	// child's own CPU time (user+system) during it.
	Seconds    float64 `json:"seconds"`
	CPUSeconds float64 `json:"cpuSeconds"`
	Messages   int     `json:"messages"` // raw reads: messages read
	Filters    int     `json:"filters"`  // engine and agent: live filters held
	Tombstones uint64  `json:"tombstones,omitempty"`
	Synced     int     `json:"synced,omitempty"` // fleet kinds: readers that got all their filters
	// Memory kinds: HeapAlloc after two GCs before and after, and the
	// difference per live filter.
	HeapBefore uint64  `json:"heapBefore,omitempty"`
	HeapAfter  uint64  `json:"heapAfter,omitempty"`
	PerFilter  float64 `json:"perFilter,omitempty"`
	Err        string  `json:"err,omitempty"`
}

// runChild starts the harness's own executable as a child and returns its
// result, with the harness's (that is the server's) CPU time during the
// run in serverCPU.
func (b *bench) runChild(ctx context.Context, spec childSpec) (r childResult, serverCPU time.Duration, err error) {
	spec.URL = b.url
	name := spec.Name
	if name == "" {
		name = spec.Kind
	}
	if b.cfg.CPUProfiles != "" && spec.CPUProfile == "" {
		spec.CPUProfile = b.cfg.CPUProfiles + "." + name
	}
	if b.cfg.HeapProfiles != "" && spec.HeapProfile == "" && isMemKind(spec.Kind) {
		spec.HeapProfile = b.cfg.HeapProfiles + "." + name
	}
	data, err := json.Marshal(spec)
	if err != nil {
		return r, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, replayTimeout)
	defer cancel()
	runtime.GC() // the server's heap, so its collection does not land in the child's run
	cmd := exec.CommandContext(ctx, b.cfg.Exe)
	cmd.Env = append(os.Environ(), childEnv+"="+string(data))
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cpu0 := cpuTime()
	if err := cmd.Run(); err != nil {
		return r, 0, fmt.Errorf("child %s: %v: %s%s", spec.Kind, err, errOut.Bytes(), out.Bytes())
	}
	serverCPU = cpuTime() - cpu0
	lines := bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n"))
	if err := json.Unmarshal(lines[len(lines)-1], &r); err != nil {
		return r, 0, fmt.Errorf("child %s output %q: %w", spec.Kind, out.Bytes(), err)
	}
	if r.Err != "" {
		return r, 0, fmt.Errorf("child %s: %s", spec.Kind, r.Err)
	}
	return r, serverCPU, nil
}

func isMemKind(k string) bool { return k == kindMemRaw || k == kindMemEngine || k == kindMemAgent }

// childMain runs a child if the environment asks for one; it reports
// whether it did (the caller then exits).
func childMain() bool {
	spec, ok := os.LookupEnv(childEnv)
	if !ok {
		return false
	}
	var s childSpec
	r := childResult{}
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		r.Err = err.Error()
	} else {
		if isMemKind(s.Kind) {
			runtime.MemProfileRate = 4096 // fine enough to attribute per-filter bytes
		}
		if s.Kind == kindFleetAgents || s.Kind == kindFleetRaw || s.Kind == kindFleetBare {
			fleetChild(s) // prints its own result, before it stops
			return true
		}
		r = runChildSpec(s)
	}
	out, _ := json.Marshal(r)
	fmt.Println(string(out))
	return true
}

// liveHeap is HeapAlloc after two full collections (the second frees what
// finalizers of the first released).
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func runChildSpec(s childSpec) (r childResult) {
	r.Kind = s.Kind
	fail := func(err error) childResult { r.Err = err.Error(); return r }
	ctx, cancel := context.WithTimeout(context.Background(), replayTimeout)
	defer cancel()
	nc, err := nats.Connect(s.URL, nats.Name("wfp-bench "+s.Kind))
	if err != nil {
		return fail(err)
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		return fail(err)
	}
	cfg := jetstream.StreamConfig{Name: s.Stream, Prefix: s.Prefix}.WithDefaults()
	warm := cfg.Name
	if s.Kind == kindKVWatch {
		warm = "KV_" + s.Stream
	}
	if _, err := js.Stream(ctx, warm); err != nil { // warms the client up
		return fail(err)
	}
	subject := events.Subjects{Prefix: cfg.Prefix}.CalloutFilters(s.Callout)

	mem := isMemKind(s.Kind)
	if mem {
		r.HeapBefore = liveHeap()
	} else {
		runtime.GC()
	}
	if s.CPUProfile != "" {
		f, err := os.Create(s.CPUProfile)
		if err != nil {
			return fail(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fail(err)
		}
	}
	cpu0, t0 := cpuTime(), time.Now()
	var keep []any
	switch s.Kind {
	case kindReplayRaw:
		r.Messages, err = rawRead(ctx, js, cfg.Name, natsjs.OrderedConsumerConfig{
			FilterSubjects: []string{subject}, DeliverPolicy: natsjs.DeliverLastPerSubjectPolicy,
		}, s.Want)
	case kindColdRaw:
		r.Messages, err = rawRead(ctx, js, cfg.Name, natsjs.OrderedConsumerConfig{}, s.Want)
	case kindReplayAgent, kindMemAgent:
		var a *callout.Agent
		if a, err = replayAgent(ctx, js, cfg, s.Callout); err == nil {
			defer a.Close()
			st := a.Stats()
			r.Filters, r.Tombstones = st.Held, st.Tombstones
			keep = append(keep, a)
		}
	case kindColdEngine, kindMemEngine:
		var e *engine.Engine
		if e, err = engine.Start(ctx, nc, engine.Config{Stream: cfg.Name, Prefix: cfg.Prefix, Replicas: cfg.Replicas, Logger: quiet}); err == nil {
			defer e.Close()
			r.Filters = e.Stats().Filters
			keep = append(keep, e)
		}
	case kindKVWatch:
		var m map[string]*events.Filter
		if m, err = kvWatchAll(ctx, js, s.Stream); err == nil {
			r.Filters = len(m)
			keep = append(keep, m)
		}
	case kindMemRaw:
		var m map[uint64]*events.Filter
		if m, err = rawFilters(ctx, js, cfg.Name, subject); err == nil {
			r.Filters = len(m)
			keep = append(keep, m)
		}
	default:
		err = fmt.Errorf("unknown child kind %q", s.Kind)
	}
	r.Seconds, r.CPUSeconds = time.Since(t0).Seconds(), (cpuTime() - cpu0).Seconds()
	if s.CPUProfile != "" {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return fail(err)
	}
	if mem {
		r.HeapAfter = liveHeap()
		if s.HeapProfile != "" {
			if err := writeProfile("heap", s.HeapProfile); err != nil {
				return fail(err)
			}
		}
		runtime.KeepAlive(keep)
		r.PerFilter = (float64(r.HeapAfter) - float64(r.HeapBefore)) / float64(max(r.Filters, 1))
	}
	if r.Messages == 0 && r.Filters != s.N {
		return fail(fmt.Errorf("%s holds %d filters, want %d", s.Kind, r.Filters, s.N))
	}
	return r
}

// rawRead creates an ordered consumer and reads its initial pending count
// of messages, doing nothing with them. want >= 0 checks that count.
func rawRead(ctx context.Context, js natsjs.JetStream, stream string, cfg natsjs.OrderedConsumerConfig, want int) (int, error) {
	cons, err := js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return 0, fmt.Errorf("raw read: %w", err)
	}
	info := cons.CachedInfo()
	pending := info.NumPending
	if want >= 0 && pending != uint64(want) {
		return 0, fmt.Errorf("raw read: %d pending, want %d", pending, want)
	}
	done := make(chan struct{})
	var got atomic.Uint64
	if pending == 0 {
		close(done)
	}
	cc, err := cons.Consume(func(natsjs.Msg) {
		if got.Add(1) == pending {
			close(done)
		}
	})
	if err != nil {
		return 0, fmt.Errorf("raw read: %w", err)
	}
	defer func() {
		cc.Stop()
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = js.DeleteConsumer(dctx, stream, info.Name)
	}()
	select {
	case <-done:
		return int(pending), nil
	case <-ctx.Done():
		return 0, fmt.Errorf("raw read: %d of %d: %w", got.Load(), pending, ctx.Err())
	}
}

// replayAgent registers a replay agent whose handler keeps nothing and
// waits until it is synced.
func replayAgent(ctx context.Context, js natsjs.JetStream, cfg jetstream.StreamConfig, calloutKey string) (*callout.Agent, error) {
	h := callout.HandlerFunc(func(context.Context, callout.NotifyType, *callout.Filter) error { return nil })
	a, err := callout.Register(ctx, js, calloutKey, h, callout.WithMode(callout.Replay),
		callout.WithStream(cfg.Name, cfg.Prefix), callout.WithLogger(quiet))
	if err != nil {
		return nil, fmt.Errorf("register replay agent: %w", err)
	}
	select {
	case <-a.Synced():
		return a, nil
	case <-a.Done():
		return nil, fmt.Errorf("replay agent stopped before synced: %v", a.Err())
	case <-ctx.Done():
		a.Close()
		return nil, fmt.Errorf("replay agent not synced (%+v): %w", a.Stats(), ctx.Err())
	}
}

// rawFilters reads the callout's filters last-per-subject and keeps each
// decoded filter in a map by id: the data with nothing around it.
func rawFilters(ctx context.Context, js natsjs.JetStream, stream, subject string) (map[uint64]*events.Filter, error) {
	cons, err := js.OrderedConsumer(ctx, stream, natsjs.OrderedConsumerConfig{
		FilterSubjects: []string{subject},
		DeliverPolicy:  natsjs.DeliverLastPerSubjectPolicy,
	})
	if err != nil {
		return nil, err
	}
	pending := cons.CachedInfo().NumPending
	it, err := cons.Messages()
	if err != nil {
		return nil, err
	}
	defer it.Stop()
	out := make(map[uint64]*events.Filter)
	for range pending {
		m, err := it.Next()
		if err != nil {
			return nil, err
		}
		ev, err := events.Decode(m.Data())
		if err != nil {
			return nil, err
		}
		meta, err := m.Metadata()
		if err != nil {
			return nil, err
		}
		if ev.Type == events.FilterAdded {
			ev.Filter.ID = meta.Sequence.Stream
			out[ev.Filter.ID] = ev.Filter
		} else {
			delete(out, ev.Filter.ID)
		}
	}
	return out, nil
}
