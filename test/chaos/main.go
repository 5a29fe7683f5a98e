// Command chaos is the fault suite users can run: it starts real
// nats-server, engine and callout-agent processes (built from this module,
// so nothing needs to be installed), drives management calls at them, and
// SIGKILLs parts of the deployment under load:
//
//	engine-kill     the engine, started again on the same stream
//	agent-kill      a live, a replay and a durable agent, each started again
//	server-restart  the nats-server, started again on its store
//	leader-loss     the stream leader of a 3-node cluster, log at R3
//	two-engines     one of two engines serving one stream
//
// Then it reads the log back and holds everything to package check's rules,
// printing per scenario the operations, the acknowledged ones that were
// lost, the phantoms (outcome-unknown operations that did apply),
// duplicates, and agents or engines whose view diverges from the log, and
// how long each fault kept adds from being acknowledged. It exits 1 on any
// loss, duplicate or divergence.
//
//	go run ./test/chaos            three faults per scenario (a few minutes)
//	go run ./test/chaos -short     one fault per scenario
//	go run ./test/chaos -only leader-loss,two-engines -keep
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wfpnats/wfp/test/chaos/check"
)

func main() {
	short := flag.Bool("short", false, "one fault per scenario, fewer adds between faults")
	only := flag.String("only", "", "comma-separated scenarios to run (default all): "+names())
	keep := flag.Bool("keep", false, "keep the work directory (logs, agent output, stores)")
	flag.Parse()
	cfg := config{rounds: 3, callers: 6, step: 40, within: 2 * time.Minute, log: os.Stdout}
	if *short {
		cfg.rounds, cfg.step = 1, 15 // as TestChaosShort
	}
	var run []scenario
	for _, s := range scenarios {
		if *only == "" || slices.Contains(strings.Split(*only, ","), s.name) {
			run = append(run, s)
		}
	}
	if len(run) == 0 {
		fmt.Fprintf(os.Stderr, "chaos: no scenario named %q; have %s\n", *only, names())
		os.Exit(2)
	}
	dir, err := os.MkdirTemp("", "wfp-chaos-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(2)
	}
	if *keep {
		fmt.Println("work directory:", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	ok, err := Run(cfg, run, dir, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
	}
	if !ok || err != nil {
		if !*keep {
			os.RemoveAll(dir)
		}
		os.Exit(1)
	}
}

func names() string {
	var n []string
	for _, s := range scenarios {
		n = append(n, s.name)
	}
	return strings.Join(n, ",")
}

// result is one scenario's outcome.
type result struct {
	s        scenario
	report   *check.Report
	failover []failover
	took     time.Duration
	err      error // the scenario could not finish
}

// Run builds the programs into dir, runs the scenarios one after the
// other, and prints a report to out. It reports whether every scenario
// finished with nothing lost, duplicated or divergent.
func Run(cfg config, run []scenario, dir string, out io.Writer) (bool, error) {
	b, err := build(filepath.Join(dir, "bin"))
	if err != nil {
		return false, err
	}
	var results []result
	for _, s := range run {
		fmt.Fprintf(out, "== %s: %s\n", s.name, s.about)
		sdir := filepath.Join(dir, s.name)
		if err := os.MkdirAll(sdir, 0o755); err != nil {
			return false, err
		}
		start := time.Now()
		r := result{s: s}
		w, err := newWorld(cfg, b, sdir, s.servers, s.engines, s.replicas)
		if err == nil {
			err = s.run(w)
		}
		if err == nil {
			r.report, err = w.finish()
		}
		if err != nil || !r.report.OK() {
			w.dump()
		}
		w.close()
		r.err, r.failover, r.took = err, w.failover, time.Since(start)
		if err != nil {
			fmt.Fprintf(out, "    FAILED: %v\n    logs in %s\n", err, sdir)
		} else {
			fmt.Fprintf(out, "    %v (%s)\n", r.report, r.took.Round(time.Second))
			for _, p := range r.report.Problems {
				fmt.Fprintf(out, "    problem: %s\n", p)
			}
		}
		results = append(results, r)
	}
	return summary(out, results), nil
}

// summary prints the table and reports whether all is well.
func summary(out io.Writer, results []result) bool {
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tOPS\tACKED\tREFUSED\tUNKNOWN\tACKED-LOST\tPHANTOMS\tDUPLICATES\tDIVERGENT\tREDELIVERED\tNOTIFICATIONS\tRESULT")
	ok := true
	for _, r := range results {
		if r.err != nil {
			ok = false
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\tFAILED TO RUN\n", r.s.name)
			continue
		}
		rep := r.report
		verdict := "ok"
		if !rep.OK() {
			verdict, ok = "FAIL", false
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", r.s.name, rep.Ops, rep.Acked, rep.Refused, rep.Unknown,
			rep.Lost, rep.Phantoms, rep.Duplicates, rep.Divergent, rep.Redelivered, rep.Notices, verdict)
	}
	tw.Flush()
	fmt.Fprintln(out)
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FAULT\tNEXT ADD ACKED (NO AGENTS)\tNEXT ADD ACKED (AGENTS ACCEPT, R7)")
	for _, r := range results {
		for _, f := range r.failover {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", f.fault, show(f.noAgents), show(f.withAgents))
		}
	}
	tw.Flush()
	return ok
}

func show(d time.Duration) string {
	if d < 0 {
		return "> " + measureWithin.String()
	}
	return d.Round(10 * time.Millisecond).String()
}

// build compiles the nats-server, the engine and the callout agent from
// the module into dir.
func build(dir string) (bins, error) {
	b := bins{server: filepath.Join(dir, "nats-server"), engine: filepath.Join(dir, "engine"), agent: filepath.Join(dir, "callout-agent")}
	for bin, pkg := range map[string]string{
		b.server: "github.com/nats-io/nats-server/v2",
		b.engine: "github.com/wfpnats/wfp/cmd/engine",
		b.agent:  "github.com/wfpnats/wfp/cmd/callout-agent",
	} {
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		if out, err := cmd.CombinedOutput(); err != nil {
			return b, fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return b, nil
}
