package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
	"github.com/wfpnats/wfp/jetstream"
)

// The guards of the engine, each tested here, in the package that owns
// it: R7's refusal and take-back, the fence on chains and on transactions,
// and the filter id being the add's stream sequence.

// logMsg is one message of the stream as stored.
type logMsg struct {
	seq    uint64
	header nats.Header
	ev     *events.Event // nil: not an event
}

// readStream reads every message the log holds in order (the log is
// compacted: what a roll-up removed is not there).
func readStream(t *testing.T, nc *nats.Conn) []logMsg {
	t.Helper()
	return readMessages(t, nc, events.DefaultStream, false)
}

// readArchive reads every event of the log from its archive (engines
// started with Config.Archive): the whole history, compaction or not,
// each at the sequence it had in the log. It waits for the archive to
// have sourced the log up to its end.
func readArchive(t *testing.T, nc *nats.Conn) []logMsg {
	t.Helper()
	js := testkit.JetStream(t, nc)
	ctx, cancel := context.WithTimeout(context.Background(), defaultWait)
	defer cancel()
	s, err := js.Stream(ctx, events.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	last := s.CachedInfo().State.LastSeq
	testkit.Eventually(t, "the archive to source the whole log", func() bool {
		n, err := jetstream.ArchivedThrough(ctx, js, jetstream.ArchiveName(events.DefaultStream))
		return err == nil && n >= last
	})
	return readMessages(t, nc, jetstream.ArchiveName(events.DefaultStream), true)
}

func readMessages(t *testing.T, nc *nats.Conn, stream string, archive bool) []logMsg {
	t.Helper()
	js := testkit.JetStream(t, nc)
	ctx, cancel := context.WithTimeout(context.Background(), defaultWait)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	last := s.CachedInfo().State.LastSeq
	var out []logMsg
	for seq := uint64(1); seq <= last; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, natsjs.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		ev, err := events.Decode(m.Data)
		if err != nil {
			ev = nil
		}
		lm := logMsg{seq: m.Sequence, header: m.Header, ev: ev}
		if archive {
			if lm.seq, err = jetstream.SourceSeq(m.Header.Get(jetstream.HeaderStreamSource)); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, lm)
	}
	return out
}

// checkLog holds the log to what fencing promises: no key added twice
// while live, no delete of what is not live, and every FilterAdded
// carries its own stream sequence as the filter id, in the payload and in
// the header. It returns the live keys and the key added at each seq.
func checkLog(t *testing.T, log []logMsg) (live map[string]bool, addedAt map[uint64]string) {
	t.Helper()
	live, addedAt = map[string]bool{}, map[uint64]string{}
	for _, m := range log {
		if m.ev == nil || m.ev.Filter == nil {
			continue
		}
		k := m.ev.Filter.Key
		switch m.ev.Type {
		case events.FilterAdded:
			if live[k] {
				t.Fatalf("seq %d: filter %s added while already live", m.seq, k)
			}
			if m.ev.Filter.ID != m.seq || m.header.Get(events.HeaderFilterID) != strconv.FormatUint(m.seq, 10) {
				t.Fatalf("seq %d: FilterAdded with id %d in its payload and %q in its header", m.seq, m.ev.Filter.ID, m.header.Get(events.HeaderFilterID))
			}
			live[k], addedAt[m.seq] = true, k
		case events.FilterDeleted:
			if !live[k] {
				t.Fatalf("seq %d: filter %s deleted while not live", m.seq, k)
			}
			live[k] = false
		}
	}
	return live, addedAt
}

// Two engines on one stream, many callers racing on few keys, plain
// commands (group commit chains) and transactions mixed: the fence keeps
// the log consistent, every success is in the log where it was said to
// be, and both engines hold the log's state.
func TestFenceKeepsTwoEnginesConsistent(t *testing.T) {
	srv := testkit.Server(t)
	// The log is compacted (a delete rolls up its add): the archive keeps
	// the whole history to check.
	cfg := Config{Archive: jetstream.ArchiveName(events.DefaultStream)}
	a, b := startEngineConfig(t, testkit.Conn(t, srv), cfg), startEngineConfig(t, testkit.Conn(t, srv), cfg)
	nc := testkit.Conn(t, srv)
	client := NewClient(nc)
	ctx := context.Background()
	keys := make([]string, 12)
	for i := range keys {
		keys[i] = uuid.NewString()
	}
	type added struct {
		key string
		id  uint64
	}
	var mu sync.Mutex
	var ok []added
	var wg sync.WaitGroup
	for w := range 12 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 2))
			for range 40 {
				key := keys[r.IntN(len(keys))]
				filter := &events.Filter{Key: key, Name: "f", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionBlock}
				switch r.IntN(4) {
				case 0, 1:
					f, err := client.AddFilter(ctx, *filter)
					if err == nil {
						mu.Lock()
						ok = append(ok, added{key, f.ID})
						mu.Unlock()
					} else if !errors.Is(err, ErrAlreadyExists) {
						t.Errorf("add: %v", err)
					}
				case 2:
					if err := client.DeleteFilter(ctx, FilterRef{FilterKey: key}); err != nil && !errors.Is(err, ErrFilterNotFound) {
						t.Errorf("delete: %v", err)
					}
				case 3: // a transaction: the key and another, or nothing
					other := keys[r.IntN(len(keys))]
					if other == key {
						continue
					}
					resp, err := client.ApplyTx(ctx, []TxOp{{Op: OpFilterAdd, Filter: filter},
						{Op: OpFilterAdd, Filter: &events.Filter{Key: other, Name: "g", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionBlock}}})
					if err == nil {
						mu.Lock()
						for _, ev := range resp.Events {
							ok = append(ok, added{ev.Filter.Key, ev.Filter.ID})
						}
						mu.Unlock()
					} else if !errors.Is(err, ErrAlreadyExists) {
						t.Errorf("tx: %v", err)
					}
				}
			}
		})
	}
	wg.Wait()

	log := readArchive(t, nc)
	live, addedAt := checkLog(t, log)
	for _, o := range ok {
		if addedAt[o.id] != o.key {
			t.Fatalf("add of %s answered id %d, but the log has %q there", o.key, o.id, addedAt[o.id])
		}
	}
	if len(ok) != len(addedAt) {
		t.Fatalf("%d adds answered success, %d in the log", len(ok), len(addedAt))
	}
	last := log[len(log)-1].seq
	testkit.Eventually(t, "both engines to fold the log", func() bool { return a.Seq() == last && b.Seq() == last })
	for name, e := range map[string]*Engine{"a": a, "b": b} {
		n, _ := e.state.Len()
		want := 0
		for _, l := range live {
			if l {
				want++
			}
		}
		if n != want {
			t.Fatalf("engine %s holds %d filters, the log %d", name, n, want)
		}
	}
	if a.Stats().Fenced+b.Stats().Fenced == 0 {
		t.Fatal("no write lost the fence: the test did not race the engines")
	}
}

// The filter id is the stream sequence of the add, in the payload and in
// the header, for a lone add, for adds written together as one chain, and
// for adds in a transaction.
func TestFilterIDIsTheAddsSequence(t *testing.T) {
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	startEngine(t, nc)
	c := NewClient(nc)
	ctx := context.Background()
	var answered []uint64
	one, err := c.AddFilter(ctx, events.Filter{Name: "lone", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionBlock})
	if err != nil {
		t.Fatal(err)
	}
	answered = append(answered, one.ID)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 64 { // concurrent: written in groups
		wg.Go(func() {
			f, err := c.AddFilter(ctx, events.Filter{Name: fmt.Sprint("g", i), Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionBlock})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			answered = append(answered, f.ID)
			mu.Unlock()
		})
	}
	wg.Wait()
	resp, err := c.ApplyTx(ctx, []TxOp{
		{Op: OpFilterAdd, Filter: &events.Filter{Name: "t1", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionBlock}},
		{Op: OpFilterAdd, Filter: &events.Filter{Name: "t2", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionBlock}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range resp.Events {
		answered = append(answered, ev.Filter.ID)
	}
	_, addedAt := checkLog(t, readStream(t, nc))
	for _, id := range answered {
		if addedAt[id] == "" {
			t.Fatalf("answered id %d is not the sequence of an add", id)
		}
	}
	if len(addedAt) != 67 {
		t.Fatalf("%d adds in the log, want 67", len(addedAt))
	}
}

// R7: an agent's refusal fails the add, and the engine takes the filter
// back (a delete with the reason), so it is neither listed nor held by
// the agents that took it; a silent agent is the same after the notify
// timeout; an accepted add stays.
func TestR7RefusalAndTimeoutTakeTheFilterBack(t *testing.T) {
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	e := startEngine(t, nc)
	c := NewClient(nc)
	ctx := context.Background()
	co, err := c.AddCallout(ctx, events.Callout{Name: "c"})
	if err != nil {
		t.Fatal(err)
	}
	js := testkit.JetStream(t, testkit.Conn(t, srv))
	silent := make(chan struct{})
	agent, err := callout.Register(ctx, js, co.Key, callout.HandlerFunc(func(ctx context.Context, nt callout.NotifyType, f *callout.Filter) error {
		if nt != callout.AddFilter {
			return nil
		}
		switch {
		case strings.HasPrefix(f.Name, "refuse"):
			return errors.New("not this one")
		case strings.HasPrefix(f.Name, "silent"):
			select {
			case <-silent:
			case <-ctx.Done():
			}
		}
		return nil
	}), callout.WithAgentID("judge"), callout.WithLogger(testLogger(io.Discard)))
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	waitAgents(t, e, co.Key, 1)
	filter := func(name string) events.Filter {
		return events.Filter{Name: name, Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionCalloutInspection, CalloutKey: co.Key}
	}

	if _, err := c.AddFilter(ctx, filter("refuse me")); !errors.Is(err, ErrCalloutNotificationFailed) || !strings.Contains(err.Error(), "not this one") {
		t.Fatalf("refused add: %v", err)
	}
	if _, err := c.AddFilter(ctx, filter("silent one"), WithNotifyTimeout(200*time.Millisecond)); !errors.Is(err, ErrTimeout) {
		t.Fatalf("unanswered add: %v", err)
	}
	close(silent) // the agent goes on with the next add
	kept, err := c.AddFilter(ctx, filter("keep me"))
	if err != nil {
		t.Fatal(err)
	}
	list, err := c.ListFilters(ctx, ListFiltersRequest{CalloutKey: co.Key})
	if err != nil || len(list.Filters) != 1 || list.Filters[0].ID != kept.ID {
		t.Fatalf("listed %+v, %v; want only the accepted filter", list, err)
	}
	reasons := 0
	for _, m := range readStream(t, nc) {
		if m.ev != nil && m.ev.Type == events.FilterDeleted && m.ev.Reason != "" {
			reasons++
		}
	}
	if reasons != 2 {
		t.Fatalf("%d take-backs in the log, want 2 (the refused and the unanswered add)", reasons)
	}
	if s := e.Stats(); s.Rejected != 1 || s.Unanswered != 1 {
		t.Fatalf("stats %+v", s)
	}
}
