// Command capacity measures the per-unit costs the capacity model in
// docs/DEPLOYMENT.md rests on, with a nats-server (built from this module)
// in a process of its own so that its memory and CPU are its alone
// (Linux: read from /proc):
//
//   - per filter: server memory (RSS), disk, server CPU per add written;
//   - per agent, for each kind of consumer the SDK opens (live: ordered,
//     filtered on one callout; replay: ordered, last per subject, after its
//     snapshot; durable: a pull consumer acknowledged per unit): server
//     memory;
//   - per notification delivered (one add fanned out to many live agents
//     of one callout): server CPU, and the delivery rate;
//   - replay: snapshot messages per second served to many agents at once.
//
// go run ./test/bench/capacity [-filters 100000] [-callouts 100]
// [-consumers 100] [-fanout 50] [-adds 2000]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/jetstream"
)

func main() {
	filters := flag.Int("filters", 100_000, "live filters in the stream")
	callouts := flag.Int("callouts", 100, "callouts the filters are spread over")
	consumers := flag.Int("consumers", 300, "consumers of each kind")
	fanout := flag.Int("fanout", 50, "live agents on one callout in the fan-out measurement")
	adds := flag.Int("adds", 2000, "adds fanned out to them")
	flag.Parse()
	if err := run(*filters, *callouts, *consumers, *fanout, *adds); err != nil {
		fmt.Fprintln(os.Stderr, "capacity:", err)
		os.Exit(1)
	}
}

// server is the nats-server child process.
type server struct {
	cmd  *exec.Cmd
	url  string
	prof string // its profiling endpoint
}

// sample is the server's memory and CPU time so far.
type sample struct {
	rss  int64 // resident bytes
	heap int64 // live Go heap after a GC (HeapAlloc)
	cpu  time.Duration
}

func (s *server) sample() (sample, error) {
	pid := s.cmd.Process.Pid
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return sample{}, err
	}
	// Fields after the command name (which ends with ')'): utime is the
	// 14th field of the line, stime the 15th, in clock ticks (100/s).
	f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	stt, _ := strconv.ParseInt(f[12], 10, 64)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return sample{}, err
	}
	var rss int64
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			rss = kb * 1024
		}
	}
	smp := sample{rss: rss, cpu: time.Duration(ut+stt) * 10 * time.Millisecond}
	// The heap profile's text form ends with the runtime's MemStats; gc=1
	// collects first, so HeapAlloc is what is live.
	resp, err := http.Get(s.prof + "/debug/pprof/heap?debug=1&gc=1")
	if err != nil {
		return sample{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return sample{}, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "# HeapAlloc = "); ok {
			smp.heap, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return smp, nil
}

// settle waits until the server's live heap stops moving (the file store
// drops the message blocks it cached after 10 s idle; a restarted server
// frees what recovery loaded) and samples it.
func (s *server) settle() (sample, error) {
	time.Sleep(11 * time.Second)
	prev, err := s.sample()
	if err != nil {
		return prev, err
	}
	for range 20 {
		time.Sleep(3 * time.Second)
		cur, err := s.sample()
		if err != nil {
			return cur, err
		}
		if d := cur.heap - prev.heap; d < 256<<10 && d > -256<<10 {
			return cur, nil
		}
		prev = cur
	}
	return prev, nil
}

func (s *server) stop() {
	s.cmd.Process.Kill()
	s.cmd.Wait()
}

// startServer starts the nats-server (built into dir on first use) on the
// store in dir.
func startServer(dir string) (*server, error) {
	bin := filepath.Join(dir, "nats-server")
	if _, err := os.Stat(bin); err != nil {
		if out, err := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2").CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build nats-server: %v\n%s", err, out)
		}
	}
	l, err := freePort()
	if err != nil {
		return nil, err
	}
	pp, err := freePort()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "server.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("listen: 127.0.0.1:%d\nprof_port: %d\njetstream { store_dir: %q, max_file_store: 8GB }\n",
		l, pp, filepath.Join(dir, "store"))), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-c", conf)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, url: fmt.Sprintf("nats://127.0.0.1:%d", l), prof: fmt.Sprintf("http://127.0.0.1:%d", pp)}
	for range 200 {
		if nc, err := nats.Connect(s.url); err == nil {
			nc.Close()
			return s, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Kill()
	return nil, fmt.Errorf("nats-server did not start")
}

func run(nFilters, nCallouts, nConsumers, nFanout, nAdds int) error {
	dir, err := os.MkdirTemp("", "wfp-capacity-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var (
		srv *server
		nc  *nats.Conn
		js  natsjs.JetStream
		s   natsjs.Stream
	)
	ctx := context.Background()
	// restart starts the server (again) on the store with a new
	// connection, so each measurement starts from a server with nothing
	// cached and no consumers.
	restart := func() error {
		if srv != nil {
			nc.Close()
			srv.stop()
		}
		var err error
		if srv, err = startServer(dir); err != nil {
			return err
		}
		if nc, err = nats.Connect(srv.url); err != nil {
			return err
		}
		if js, err = natsjs.New(nc, natsjs.WithPublishAsyncMaxPending(4096)); err != nil {
			return err
		}
		if s, err = jetstream.EnsureStream(ctx, js, jetstream.StreamConfig{}); err != nil {
			return err
		}
		// Past the default cap of 1,000 consumers per stream.
		cfg := s.CachedInfo().Config
		cfg.MaxConsumers = 100_000
		s, err = js.UpdateStream(ctx, cfg)
		return err
	}
	if err := restart(); err != nil {
		return err
	}
	defer func() { nc.Close(); srv.stop() }()
	callouts := make([]string, nCallouts)
	for i := range callouts {
		callouts[i] = uuid.NewString()
	}
	subj := events.Subjects{Prefix: events.DefaultPrefix}
	report := func(name string, v float64, unit, how string) {
		fmt.Printf("%-44s %12.1f %-6s %s\n", name, v, unit, how)
	}
	fmt.Printf("nats-server in its own process; %d filters over %d callouts, %d consumers of each kind\n\n", nFilters, nCallouts, nConsumers)

	// Filters.
	base, err := srv.settle()
	if err != nil {
		return err
	}
	start := time.Now()
	if err := publish(js, subj, callouts, nFilters); err != nil {
		return err
	}
	took := time.Since(start)
	after, err := srv.settle()
	if err != nil {
		return err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return err
	}
	report("server heap per filter", float64(after.heap-base.heap)/float64(nFilters), "B", "live Go heap after GC, growth over the filters")
	report("server RSS per filter", float64(after.rss-base.rss)/float64(nFilters), "B", "resident memory growth (block caches, garbage not yet returned)")
	report("disk per filter", float64(info.State.Bytes)/float64(nFilters), "B", "stream bytes (one add event: subject, headers, payload)")
	report("server CPU per add written", float64(after.cpu-base.cpu)/float64(time.Microsecond)/float64(nFilters), "µs", "async publishes, R1 file store")
	report("adds written per second (one publisher)", float64(nFilters)/took.Seconds(), "/s", "")

	// Consumers of each kind, on distinct callouts, each kind on a server
	// started afresh.
	last := info.State.LastSeq
	var its []natsjs.MessagesContext
	kinds := []struct {
		name string
		open func(i int) (natsjs.MessagesContext, int, error) // and the snapshot size to read
	}{
		{"live (ordered, one callout, from now)", func(i int) (natsjs.MessagesContext, int, error) {
			c, err := js.OrderedConsumer(ctx, s.CachedInfo().Config.Name, natsjs.OrderedConsumerConfig{
				FilterSubjects: []string{subj.CalloutFilters(callouts[i%nCallouts])},
				DeliverPolicy:  natsjs.DeliverByStartSequencePolicy, OptStartSeq: last + 1})
			if err != nil {
				return nil, 0, err
			}
			it, err := c.Messages()
			return it, 0, err
		}},
		{"replay (ordered, last per subject, synced)", func(i int) (natsjs.MessagesContext, int, error) {
			c, err := js.OrderedConsumer(ctx, s.CachedInfo().Config.Name, natsjs.OrderedConsumerConfig{
				FilterSubjects: []string{subj.CalloutFilters(callouts[i%nCallouts])},
				DeliverPolicy:  natsjs.DeliverLastPerSubjectPolicy})
			if err != nil {
				return nil, 0, err
			}
			it, err := c.Messages()
			return it, int(c.CachedInfo().NumPending), err
		}},
		{"durable (pull, AckAll, one callout)", func(i int) (natsjs.MessagesContext, int, error) {
			c, err := s.CreateConsumer(ctx, natsjs.ConsumerConfig{
				Durable: fmt.Sprintf("agent-%d", i), AckPolicy: natsjs.AckAllPolicy, AckWait: 30 * time.Second,
				DeliverPolicy: natsjs.DeliverNewPolicy, MaxAckPending: 2000,
				FilterSubject: subj.CalloutFilters(callouts[i%nCallouts])})
			if err != nil {
				return nil, 0, err
			}
			it, err := c.Messages()
			return it, 0, err
		}},
	}
	for _, k := range kinds {
		for _, it := range its {
			it.Stop()
		}
		its = nil
		if err := restart(); err != nil {
			return err
		}
		before, err := srv.settle()
		if err != nil {
			return err
		}
		start := time.Now()
		var snapshot atomic.Int64
		var wg sync.WaitGroup
		for i := range nConsumers {
			it, n, err := k.open(i)
			if err != nil {
				return fmt.Errorf("%s %d: %w", k.name, i, err)
			}
			its = append(its, it)
			wg.Go(func() {
				for range n {
					if _, err := it.Next(); err != nil {
						return
					}
					snapshot.Add(1)
				}
			})
		}
		wg.Wait()
		took := time.Since(start)
		after, err := srv.settle()
		if err != nil {
			return err
		}
		report("server heap per "+k.name, float64(after.heap-before.heap)/float64(nConsumers), "B", "live Go heap after GC, iterators open")
		report("server RSS per "+k.name, float64(after.rss-before.rss)/float64(nConsumers), "B", "resident memory growth")
		if n := snapshot.Load(); n > 0 {
			report("replay: snapshot messages served per second", float64(n)/took.Seconds(), "/s",
				fmt.Sprintf("%d agents at once, %d filters each", nConsumers, n/int64(nConsumers)))
			report("server CPU per snapshot message", float64(after.cpu-before.cpu)/float64(time.Microsecond)/float64(n), "µs", "")
		}
	}

	// Fan-out: nFanout live agents on one callout, nAdds adds to it.
	for _, it := range its {
		it.Stop()
	}
	if err := restart(); err != nil {
		return err
	}
	co := uuid.NewString()
	var got atomic.Int64
	var fits []natsjs.MessagesContext
	for range nFanout {
		c, err := js.OrderedConsumer(ctx, s.CachedInfo().Config.Name, natsjs.OrderedConsumerConfig{
			FilterSubjects: []string{subj.CalloutFilters(co)}, DeliverPolicy: natsjs.DeliverNewPolicy})
		if err != nil {
			return err
		}
		it, err := c.Messages()
		if err != nil {
			return err
		}
		fits = append(fits, it)
		go func() {
			for range nAdds {
				if _, err := it.Next(); err != nil {
					return
				}
				got.Add(1)
			}
		}()
	}
	before, err := srv.sample()
	if err != nil {
		return err
	}
	start = time.Now()
	if err := publish(js, subj, []string{co}, nAdds); err != nil {
		return err
	}
	want := int64(nFanout * nAdds)
	for got.Load() < want && time.Since(start) < 5*time.Minute {
		time.Sleep(5 * time.Millisecond)
	}
	took = time.Since(start)
	after, err = srv.sample()
	if err != nil {
		return err
	}
	for _, it := range fits {
		it.Stop()
	}
	if got.Load() < want {
		return fmt.Errorf("fan-out: %d of %d notifications delivered", got.Load(), want)
	}
	report("fan-out: notifications delivered per second", float64(want)/took.Seconds(), "/s", fmt.Sprintf("%d adds to one callout, %d live agents", nAdds, nFanout))
	report("server CPU per notification delivered", float64(after.cpu-before.cpu)/float64(time.Microsecond)/float64(want), "µs", "includes the adds' own writes")
	return nil
}

// publish writes n add events, exactly as the engine writes them, spread
// over callouts, and waits for every ack.
func publish(js natsjs.JetStream, subj events.Subjects, callouts []string, n int) error {
	for i := range n {
		f := &events.Filter{Key: uuid.NewString(), Name: fmt.Sprintf("capacity filter %024d", i), Layer: "ALE_AUTH_CONNECT_V4",
			Conditions: []events.Condition{{Field: "IP_REMOTE_PORT", Match: events.MatchEqual, Value: strconv.Itoa(1024 + i%60000)}},
			Action:     events.ActionCalloutInspection, CalloutKey: callouts[i%len(callouts)]}
		m, err := subj.Message(events.NewFilterEvent(events.FilterAdded, f))
		if err != nil {
			return err
		}
		h := nats.Header(m.Header)
		// As test/bench does: a same-length header the server ignores in
		// place of Nats-Msg-Id, so that the duplicate window (ids of the
		// last two minutes of writes) does not count as per-filter memory.
		h["Bnch-Msg-Id"] = h[events.HeaderMsgID]
		delete(h, events.HeaderMsgID)
		if _, err := js.PublishMsgAsync(&nats.Msg{Subject: m.Subject, Data: m.Data, Header: h}); err != nil {
			return err
		}
		if i%2000 == 1999 {
			// Let the acks catch up rather than stall the publisher.
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(time.Minute):
				return fmt.Errorf("publishing adds: no acks for a minute at %d", i)
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
		return nil
	case <-time.After(5 * time.Minute):
		return fmt.Errorf("publishing %d adds: not all acknowledged", n)
	}
}

func freePort() (int, error) {
	nc, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	return nc.Addr().(*net.TCPAddr).Port, nil
}
