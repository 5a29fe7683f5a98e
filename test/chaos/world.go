package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/engine"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/jetstream"
	"github.com/wfpnats/wfp/test/chaos/check"
	"github.com/wfpnats/wfp/test/chaos/load"
)

// config sizes a run.
type config struct {
	rounds  int           // faults injected per scenario
	callers int           // concurrent management callers
	step    int64         // adds acknowledged before each fault and after each recovery
	within  time.Duration // how long the system may take to serve again
	log     io.Writer     // progress lines
}

// bins are the programs a scenario runs.
type bins struct{ server, engine, agent string }

// world is one scenario's deployment: nats-server processes, engine
// processes, callout agent processes, and callers in this process.
type world struct {
	cfg      config
	bins     bins
	dir      string
	servers  []*server
	urls     string
	replicas int
	nc       *nats.Conn
	js       natsjs.JetStream
	client   *engine.Client
	engines  []*proc
	agents   []*agent
	callouts []string
	load     *load.Load
	conns    []*nats.Conn
	failover []failover // what each fault cost
}

// agent is a callout-agent process.
type agent struct {
	proc
	callout string
	mode    check.Mode
}

// failover is the time from one fault to the system serving again.
type failover struct {
	fault string
	// noAgents: to the first add acknowledged after the fault, sent after
	// it, of a filter no agent is asked about; withAgents: the same for a
	// filter whose callout's agents must accept it (R7).
	noAgents, withAgents time.Duration
}

// callTimeout bounds each management call of the callers.
const callTimeout = 8 * time.Second

// measureWithin bounds how long measure waits for the system to serve
// again after a fault.
const measureWithin = 45 * time.Second

// startServers writes the servers' configurations under dir, starts
// them and waits until JetStream answers on each.
func (w *world) startServers(dir string, n int) error {
	var err error
	if err = os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if w.servers, err = newServers(w.bins.server, dir, n); err != nil {
		return err
	}
	var urls []string
	for _, s := range w.servers {
		if err := s.start(); err != nil {
			return err
		}
		urls = append(urls, s.url())
	}
	w.urls = strings.Join(urls, ",")
	for _, s := range w.servers {
		if err := s.ready(60 * time.Second); err != nil {
			return err
		}
	}
	return nil
}

// firstLine is the first line of err's text.
func firstLine(err error) string {
	line, _, _ := strings.Cut(err.Error(), "\n")
	return line
}

// newWorld starts nServers nats-servers (a cluster if more than one),
// nEngines engines serving the log at the given replicas, two callouts
// with some history, and a live, a replay and a durable agent for each.
func newWorld(cfg config, b bins, dir string, nServers, nEngines, replicas int) (*world, error) {
	w := &world{cfg: cfg, bins: b, dir: dir, replicas: replicas, load: load.New()}
	var err error
	// A cluster that does not form (a port taken between picking and
	// binding it, a meta leader that is not elected) is started again on
	// fresh ports: that is the harness's trouble, not the system's.
	for attempt := 1; ; attempt++ {
		if err = w.startServers(filepath.Join(dir, fmt.Sprint("servers-", attempt)), nServers); err == nil {
			break
		}
		for _, s := range w.servers {
			s.kill()
		}
		if attempt == 3 {
			return w, err
		}
		fmt.Fprintf(cfg.log, "    the servers did not come up (%v); starting them again\n", firstLine(err))
	}
	if w.nc, err = w.connect(); err != nil {
		return w, err
	}
	if w.js, err = natsjs.New(w.nc); err != nil {
		return w, err
	}
	if err := w.waitPeers(nServers); err != nil {
		return w, err
	}
	w.client = engine.NewClient(w.nc)
	for i := range nEngines {
		e := &proc{name: fmt.Sprintf("engine-%c", 'A'+i), bin: b.engine, dir: dir,
			args: []string{"serve", "--nats-url", w.urls, "--replicas", fmt.Sprint(replicas)}}
		w.engines = append(w.engines, e)
		if err := w.startEngine(e); err != nil {
			return w, err
		}
	}
	for range 2 {
		var co *events.Callout
		for attempt := 0; ; attempt++ {
			co, err = w.client.AddCallout(context.Background(), events.Callout{Name: "chaos"})
			if err == nil {
				break
			}
			if attempt == 10 {
				return w, fmt.Errorf("add callout: %w", err)
			}
		}
		w.callouts = append(w.callouts, co.Key)
	}
	for i := range 6 {
		id, err := w.load.AddUntilAcked(w.client, w.callouts[i%2], callTimeout)
		if err != nil {
			return w, err
		}
		if i%3 == 0 {
			op := check.Op{Delete: true, ID: id}
			err := w.client.DeleteFilter(context.Background(), engine.FilterRef{FilterID: id})
			op.Outcome = load.OutcomeOf(err)
			w.load.Record(op)
		}
	}
	for i, co := range w.callouts {
		for _, mode := range []check.Mode{check.Live, check.Replay, check.Durable} {
			name := fmt.Sprintf("%s-%d", mode, i+1)
			args := []string{"--server", w.urls, "--callout", co, "--agent-id", name}
			switch mode {
			case check.Replay:
				args = append(args, "--mode", "replay")
			case check.Durable:
				args = append(args, "--durable", name)
			}
			a := &agent{proc: proc{name: "agent-" + name, bin: b.agent, args: args, dir: dir}, callout: co, mode: mode}
			w.agents = append(w.agents, a)
			if err := w.startAgent(a); err != nil {
				return w, err
			}
		}
	}
	if err := w.waitAgentsListed(); err != nil {
		return w, err
	}
	for i := range cfg.callers {
		nc, err := w.connect()
		if err != nil {
			return w, err
		}
		// Filters naming no callout too: their adds show the engine and
		// the stream serve even while agents catch up.
		w.load.Run(engine.NewClient(nc), append(w.callouts, ""), uint64(i), callTimeout)
	}
	return w, nil
}

// waitPeers waits until a stream of n replicas can be placed: a cluster
// whose servers are up may not have every peer online in its meta layer
// yet, and an engine started then is refused its R3 mark bucket ("no
// suitable peers for placement"), which is the harness's haste, not a
// fault under test.
func (w *world) waitPeers(n int) error {
	if n < 2 {
		return nil
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s, err := w.js.CreateStream(ctx, natsjs.StreamConfig{Name: "CHAOS_PEERS", Subjects: []string{"chaos.peers"}, Replicas: n, Storage: natsjs.MemoryStorage})
		if err == nil {
			err = w.js.DeleteStream(ctx, s.CachedInfo().Config.Name)
		}
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("a stream of %d replicas cannot be placed: %w", n, err)
		}
		time.Sleep(250 * time.Millisecond) // polled, with the deadline above: the meta layer offers no event for this
	}
}

// connect opens a client connection to the deployment that rides through
// server restarts.
func (w *world) connect() (*nats.Conn, error) {
	nc, err := nats.Connect(w.urls, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.Name("chaos"),
		// Broken pipes while servers die are expected; nats.go would print them.
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		return nil, err
	}
	w.conns = append(w.conns, nc)
	return nc, nil
}

func (w *world) startEngine(e *proc) error {
	if err := e.start(); err != nil {
		return err
	}
	return e.waitFor(true, engineReady, 60*time.Second)
}

func (w *world) startAgent(a *agent) error {
	if err := a.start(); err != nil {
		return err
	}
	return a.waitFor(false, agentSynced, 60*time.Second)
}

// waitAgentsListed waits until the engines list every running agent, so
// that adds wait for them (R7).
func (w *world) waitAgentsListed() error {
	want := 0
	for _, a := range w.agents {
		if a.running() {
			want++
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		l, err := w.client.ListCallouts(context.Background())
		if err == nil {
			n := 0
			for _, c := range l.Callouts {
				n += len(c.Agents)
			}
			if n == want {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the engines do not list the %d agents within 30s (%v)", want, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// progress waits until n more adds have been acknowledged.
func (w *world) progress(n int64) error {
	return w.load.WaitAcked(w.load.Acked()+n, w.cfg.within)
}

// measure probes, from the moment of a fault, how long until an add is
// acknowledged again: one prober adds filters no agent is asked about,
// another filters of the first callout (which its agents must accept).
// It returns once both have succeeded, or measureWithin has passed (the
// time is then reported as "never").
func (w *world) measure(fault string, at time.Time) {
	type res struct {
		withAgents bool
		d          time.Duration
	}
	ch := make(chan res, 2)
	for _, withAgents := range []bool{false, true} {
		go func() {
			var last error
			defer func() {
				if last != nil && time.Since(at) >= measureWithin {
					fmt.Fprintf(w.cfg.log, "    %s: probe (agents %v) gave up; last error: %v\n", fault, withAgents, last)
				}
			}()
			for time.Since(at) < measureWithin {
				f := load.Filter(uuid.NewString(), w.callouts[0])
				if !withAgents {
					f.Action, f.CalloutKey = events.ActionBlock, ""
				}
				// Long enough for the agents' answers (5 s at most, R7).
				ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
				got, err := w.client.AddFilter(ctx, f)
				cancel()
				op := check.Op{Key: f.Key, Outcome: load.OutcomeOf(err)}
				if err == nil {
					op.ID = got.ID
				}
				w.load.Record(op)
				if err == nil {
					ch <- res{withAgents, time.Since(at)}
					return
				}
				last = err
				time.Sleep(20 * time.Millisecond)
			}
			ch <- res{withAgents, -1}
		}()
	}
	f := failover{fault: fault}
	for range 2 {
		r := <-ch
		if r.withAgents {
			f.withAgents = r.d
		} else {
			f.noAgents = r.d
		}
	}
	w.failover = append(w.failover, f)
	fmt.Fprintf(w.cfg.log, "    %s: next add acknowledged after %s (no agents), %s (agents must accept)\n",
		fault, show(f.noAgents), show(f.withAgents))
}

// finish stops the callers, adds one last filter per callout so that
// every agent's notifications must reach the end of the log, waits for
// the agents and engines to have it all, and verifies everything.
func (w *world) finish() (*check.Report, error) {
	w.load.Halt()
	var last []uint64
	for _, co := range w.callouts {
		id, err := w.load.AddUntilAcked(w.client, co, callTimeout)
		if err != nil {
			return nil, err
		}
		last = append(last, id)
	}
	for _, a := range w.agents {
		id := last[slices.Index(w.callouts, a.callout)]
		if err := a.waitFor(false, regexpFor(id), w.cfg.within); err != nil {
			return nil, fmt.Errorf("agent %s never got the last add: %w", a.name, err)
		}
	}
	log, err := load.ReadLog(w.js)
	if err != nil {
		return nil, err
	}
	end := log[len(log)-1].Seq
	engines, err := w.engineStates(end)
	if err != nil {
		return nil, err
	}
	var agents []check.Agent
	for _, a := range w.agents {
		ca := check.Agent{Name: a.name, Callout: a.callout, Mode: a.mode}
		for _, out := range a.outs {
			notes, err := notices(out)
			if err != nil {
				return nil, err
			}
			ca.Runs = append(ca.Runs, notes)
		}
		agents = append(agents, ca)
	}
	return check.Verify(log, w.load.Ops(), agents, engines), nil
}

// regexpFor matches cmd/callout-agent's line for the add of filter id.
func regexpFor(id uint64) *regexp.Regexp {
	return regexp.MustCompile(fmt.Sprintf(`"notify":"add","filterKey":"[^"]*","filterId":%d,`, id))
}

// engineStates asks the engines for their filters until the answers are
// at the log's end: as many answers as there are engines, times two (the
// API's queue group spreads the calls).
func (w *world) engineStates(end uint64) ([]check.Engine, error) {
	var out []check.Engine
	deadline := time.Now().Add(w.cfg.within)
	for len(out) < 2*len(w.engines) {
		resp, err := w.client.ListFilters(context.Background(), engine.ListFiltersRequest{})
		if err == nil && resp.Seq >= end {
			out = append(out, check.Engine{Name: fmt.Sprintf("answer %d", len(out)+1), Seq: resp.Seq, Filters: resp.Filters})
			continue
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the engines do not answer at the log's end %d: %v", end, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return out, nil
}

// notices reads one run of an agent's stdout: a JSON line per
// notification (cmd/callout-agent). A line cut short by a kill is skipped.
func notices(file string) ([]check.Notice, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []check.Notice
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l struct {
			Notify    string `json:"notify"`
			FilterKey string `json:"filterKey"`
			FilterID  uint64 `json:"filterId"`
			Initial   bool   `json:"initial"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			continue
		}
		switch l.Notify {
		case "add", "delete":
			out = append(out, check.Notice{Delete: l.Notify == "delete", ID: l.FilterID, Key: l.FilterKey, Initial: l.Initial})
		}
	}
	return out, sc.Err()
}

// close stops every process and connection of the world.
func (w *world) close() {
	w.load.Halt()
	for _, nc := range w.conns {
		nc.Close()
	}
	for _, a := range w.agents {
		a.stop()
	}
	for _, e := range w.engines {
		e.stop()
	}
	for _, s := range w.servers {
		s.stop()
	}
}

// dump records, after a failure, what the servers know of the log's
// consumers (to dump.txt in the scenario's directory) and has every agent
// print its goroutines (SIGQUIT: into its stderr file), so that a stuck
// agent can be told from a stuck server.
func (w *world) dump() {
	f, err := os.Create(filepath.Join(w.dir, "dump.txt"))
	if err != nil {
		return
	}
	defer f.Close()
	if w.js != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if s, err := w.js.Stream(ctx, jetstream.DefaultStreamName); err == nil {
			b, _ := json.MarshalIndent(s.CachedInfo(), "", "  ")
			fmt.Fprintf(f, "stream:\n%s\n", b)
			lister := s.ListConsumers(ctx)
			for ci := range lister.Info() {
				b, _ := json.MarshalIndent(ci, "", "  ")
				fmt.Fprintf(f, "consumer:\n%s\n", b)
			}
			if err := lister.Err(); err != nil {
				fmt.Fprintf(f, "listing consumers: %v\n", err)
			}
		}
	}
	for _, a := range w.agents {
		if a.running() {
			_ = a.cmd.Process.Signal(syscall.SIGQUIT)
			<-a.done
			a.cmd = nil
		}
	}
}
