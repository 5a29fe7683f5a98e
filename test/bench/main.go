// Command bench measures the filter engine and the callout agents against
// raw JetStream, on one embedded nats-server, in one run:
//
//	go run ./test/bench [-quick] [-json FILE] [-only LIST] [-n N]
//	                    [-callers LIST] [-inprocess]
//	                    [-cpuprofile FILE] [-memprofile FILE] [-trace FILE]
//
// It starts its own nats-server (JetStream, file store in a temporary
// directory, no log), runs each scenario next to its raw JetStream baseline
// on that server, and prints a table of figure, ours, baseline,
// ours/baseline, target and whether it is met (-json writes the same
// report). The ratio is always ours divided by baseline: for rates higher
// is better, for latencies, times and bytes lower is. -quick finishes in
// under 2 minutes on 2 cores (N = 100k), the full run in under 10 (N = 1M).
//
// Scenarios (-only takes their names):
//
//	throughput  filter adds/s through engine.Client with 1, 16, 128 callers
//	            vs raw PublishMsgAsync of messages shaped like our add event;
//	            target at 128 callers: ratio ≥ 0.5
//	latency     one caller's add p50/p99 vs raw sync PublishMsg p50/p99;
//	            target: p50 ratio ≤ 2.5
//	notify      at a paced 2,000 adds/s: from the add's response to a live
//	            agent's Notify, p50/p99 (a notify that arrives before the
//	            response counts as 0, and how often is reported) vs raw
//	            PubAck -> ordered consumer delivery; target: p99 ≤ 5 ms
//	replay      time for a replay agent to be Synced with N live filters vs
//	            a raw ordered consumer reading last-per-subject to the end;
//	            target: rate ratio ≥ 0.8
//	coldstart   engine.Start on that log vs a raw ordered read of the whole
//	            stream; target: rate ratio ≥ 0.7
//	memory      heap bytes per live filter in the engine (≤ 1 KB) and in a
//	            replay agent (≤ 600 B), vs a plain map of decoded filters
//	churn       the replay and the engine's cold start again after 4N
//	            filters were added and deleted (each delete rolling up its
//	            add) and every delete expired past a shortened horizon, as
//	            ratios to the same without churn; target replay ≤ 1.3
//	bulk        a policy of 100k filters through engine.Client.Load (what
//	            `engine load` runs) vs raw async publish of the same
//	            messages; target ≥ 0.8
//	fleet       callouts x filters x replay agents started at once (quick
//	            20 x 1000 x 5, full 100 x 1000 x 10): all synced, delivery
//	            rate vs one raw reader (≥ 0.7), server RSS growth per agent
//	            (≤ 50 KB) vs raw ordered consumers doing the same reads
//	classify    classify decisions/s on a layer of 10k filters, in process
//	            and through the API (16 callers), and with one callout call
//	            per decision (a request/reply round trip to the callout's
//	            agent, which counts hits in its filter context), vs
//	            classify.LinearScan of the same filters with the same
//	            concurrency (its callout answered in process)
//	sync        adds/s at 1, 16, 128 callers as engine serve runs them
//	            (embedded server, high-water mark file), with the file
//	            store syncing every write (--sync always) vs the server's
//	            default interval (2 min): what durability costs
//	barrier     one caller's filter.list p50/p99 with the read barrier
//	            (linearizable reads) vs the same engine without it
//
// Beside our adds (throughput, 1 and 128 callers) and our replay, the NATS
// KV peer does the same job: kv.Create of each filter as JSON, and a late
// reader's WatchAll with a JSON decode (target: our replay ≥ 1.0x it).
//
// Method notes: the logs of the last four are written straight to the
// stream (see populator) after checking, each run, that the populator
// writes what the engine writes. Their readers, ours and raw alike, run in
// child processes of this program (see childEnv), so they do not share the
// embedded server's heap; the table's notes give each side's CPU per item,
// its own and the server's.
//
// Profiling: -cpuprofile FILE profiles this process (server, engine, agents
// and clients of the first three scenarios; samples carry pprof labels
// scenario and side=ours|raw, so `go tool pprof -tagfocus side=ours` keeps
// our side) and makes every child profile its measured run to FILE.<run>
// (replay-agent, replay-raw, cold-engine, cold-raw, churn-agent, churn-raw,
// mem-*). -memprofile FILE writes this process's allocation profile and the
// memory children's in-use heap profiles to FILE.mem-engine,
// FILE.mem-agent, FILE.mem-raw.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
)

func main() {
	if childMain() {
		return
	}
	os.Exit(run())
}

func run() int {
	quick := flag.Bool("quick", false, "small sizes and short runs (< 2 min on 2 cores)")
	jsonOut := flag.String("json", "", "also write the report as JSON to `file`")
	only := flag.String("only", "", "comma-separated scenarios to run: "+strings.Join(scenarioNames, ","))
	n := flag.Int("n", 0, "live filters in the replay, cold start and memory scenarios (default 100000 quick, 1000000 full)")
	inproc := flag.Bool("inprocess", false, "connect the harness's clients in process instead of over TCP loopback")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the run (server, engine, agents, clients) to `file`, and each child's (replay, cold start, memory readers) to file.<kind>")
	memProfile := flag.String("memprofile", "", "write an allocation profile of the run to `file`, and the memory children's in-use heap profiles to file.mem-engine, file.mem-agent, file.mem-raw")
	traceOut := flag.String("trace", "", "write a runtime execution trace of the run to `file` (go tool trace); use with -only")
	callers := flag.String("callers", "", "comma-separated caller counts of the throughput scenario (default 1,16,128)")
	flag.Parse()

	cfg := FullConfig()
	if *quick {
		cfg = QuickConfig()
	}
	if *n > 0 {
		cfg.N = *n
	}
	cfg.InProcess = *inproc
	if *callers != "" {
		cfg.Callers = nil
		for _, c := range strings.Split(*callers, ",") {
			v, err := strconv.Atoi(strings.TrimSpace(c))
			if err != nil || v <= 0 {
				fmt.Fprintf(os.Stderr, "bench: -callers: %q is not a positive number\n", c)
				return 2
			}
			cfg.Callers = append(cfg.Callers, v)
		}
	}
	if *only != "" {
		cfg.Only = strings.Split(*only, ",")
	}
	cfg.Log = os.Stderr

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	cfg.HeapProfiles, cfg.CPUProfiles = *memProfile, *cpuProfile

	if *traceOut != "" {
		f, err := os.Create(*traceOut)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer f.Close()
		if err := trace.Start(f); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer trace.Stop()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	report, err := Run(ctx, cfg)
	if report != nil && len(report.Figures) > 0 {
		report.WriteTable(os.Stdout)
		if *jsonOut != "" {
			if werr := report.WriteJSON(*jsonOut); werr != nil {
				fmt.Fprintln(os.Stderr, werr)
				return 1
			}
		}
	}
	if *memProfile != "" {
		if werr := writeProfile("allocs", *memProfile); werr != nil {
			fmt.Fprintln(os.Stderr, werr)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	return 0
}

// writeProfile writes the named runtime profile ("allocs", "heap") after
// a GC, so in-use figures are current.
func writeProfile(name, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	runtime.GC()
	return pprof.Lookup(name).WriteTo(f, 0)
}
