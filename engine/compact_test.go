package engine

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
)

// compactWorld is an engine with a short horizon on a real server, the
// log's stream and a client.
type compactWorld struct {
	t      *testing.T
	nc     *nats.Conn
	js     natsjs.JetStream
	stream natsjs.Stream
	eng    *Engine
	c      *Client
	cfg    Config
}

func newCompactWorld(t *testing.T, cfg Config) *compactWorld {
	t.Helper()
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	w := &compactWorld{t: t, nc: nc, js: testkit.JetStream(t, nc), c: NewClient(nc), cfg: cfg}
	w.start()
	s, err := w.js.Stream(context.Background(), events.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	w.stream = s
	return w
}

func (w *compactWorld) start() {
	w.t.Helper()
	e, err := Start(context.Background(), w.nc, w.cfg)
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(e.Close)
	w.eng = e
}

func (w *compactWorld) callout() string {
	w.t.Helper()
	co, err := w.c.AddCallout(context.Background(), events.Callout{Name: "c"})
	if err != nil {
		w.t.Fatal(err)
	}
	return co.Key
}

func (w *compactWorld) filter(calloutKey string) *events.Filter {
	w.t.Helper()
	f, err := w.c.AddFilter(context.Background(), events.Filter{Name: "f", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionCalloutInspection, CalloutKey: calloutKey})
	if err != nil {
		w.t.Fatal(err)
	}
	return f
}

// onSubject lists the messages stored on subject, oldest first.
func (w *compactWorld) onSubject(subject string) []*natsjs.RawStreamMsg {
	w.t.Helper()
	var out []*natsjs.RawStreamMsg
	for seq := uint64(1); ; seq++ {
		m, err := w.stream.GetMsg(context.Background(), seq, natsjs.WithGetMsgSubject(subject))
		if errors.Is(err, natsjs.ErrMsgNotFound) {
			return out
		}
		if err != nil {
			w.t.Fatal(err)
		}
		out = append(out, m)
		seq = m.Sequence
	}
}

func (w *compactWorld) filterSubject(f *events.Filter) string {
	return events.Subjects{Prefix: events.DefaultPrefix}.Filter(f)
}

// A delete rolls up its filter's subject and expires after the horizon;
// an engine started on the compacted log rebuilds the same state and can
// write, though the log's last message is gone.
func TestDeleteRollsUpExpiresAndTheEngineRestartsOnWhatIsLeft(t *testing.T) {
	w := newCompactWorld(t, Config{Horizon: time.Second})
	ctx := context.Background()
	co := w.callout()
	keep := w.filter(co)
	gone := w.filter(co)
	if err := w.c.DeleteFilter(ctx, FilterRef{FilterID: gone.ID}); err != nil {
		t.Fatal(err)
	}
	msgs := w.onSubject(w.filterSubject(gone))
	if len(msgs) != 1 || msgs[0].Sequence != 4 || msgs[0].Header.Get(events.HeaderEvent) != string(events.FilterDeleted) {
		t.Fatalf("deleted filter's subject holds %d messages, want only its tombstone at 4", len(msgs))
	}
	if h := msgs[0].Header; h.Get(events.HeaderRollup) != events.RollupSubject || h.Get(events.HeaderTTL) != "1" {
		t.Fatalf("tombstone headers %v, want a roll-up with a 1 s TTL", h)
	}
	testkit.Eventually(t, "the tombstone to expire", func() bool { return len(w.onSubject(w.filterSubject(gone))) == 0 })

	w.eng.Close()
	w.start() // rebuilds from the callout, one add, and nothing at 4
	if st := w.eng.Stats(); st.Seq != 4 || st.Filters != 1 || st.Callouts != 1 {
		t.Fatalf("rebuilt engine: %+v, want position 4 with 1 filter and 1 callout", st)
	}
	if _, ok := w.eng.state.FilterByID(keep.ID); !ok {
		t.Fatal("the live filter is missing after the rebuild")
	}
	if f := w.filter(co); f.ID != 5 {
		t.Fatalf("next add got id %d, want 5 (sequences are not reused)", f.ID)
	}
}

// A filter added and deleted in one transaction cannot roll up its
// subject (the server refuses a second roll-up of one subject in a batch):
// its tombstone stays plain, with no TTL, and the janitor purges the
// subject once the horizon has passed.
func TestPlainTombstoneOfATransactionIsPurgedAfterTheHorizon(t *testing.T) {
	w := newCompactWorld(t, Config{Horizon: time.Second})
	ctx := context.Background()
	co := w.callout()
	key := "5b1f0c0e-8a43-4b8e-9d7c-3c2f2d1a0b01"
	resp, err := w.c.ApplyTx(ctx, []TxOp{
		{Op: OpFilterAdd, Filter: &events.Filter{Key: key, Name: "f", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionCalloutInspection, CalloutKey: co}},
		{Op: OpFilterDelete, FilterKey: key},
	})
	if err != nil {
		t.Fatal(err)
	}
	subject := w.filterSubject(resp.Events[0].Filter)
	msgs := w.onSubject(subject)
	if len(msgs) != 2 || msgs[1].Header.Get(events.HeaderTTL) != "" || msgs[1].Header.Get(events.HeaderRollup) != "" {
		t.Fatalf("subject holds %d messages (want the add and a plain tombstone)", len(msgs))
	}
	if w.eng.Stats().PendingPurges != 1 {
		t.Fatalf("stats %+v, want one purge pending", w.eng.Stats())
	}
	testkit.Eventually(t, "the janitor to purge the subject", func() bool { return len(w.onSubject(subject)) == 0 })
	// The purge is counted once its answer is back, which may be just
	// after the subject is seen empty.
	testkit.Eventually(t, "the janitor to count the purge done", func() bool {
		st := w.eng.Stats()
		return st.Purged == 1 && st.PendingPurges == 0
	})
}

// The janitor's work is in the log: an engine that stopped before the
// horizon passed leaves it to the next one.
func TestPlainTombstonesAreFoundAgainOnRestart(t *testing.T) {
	w := newCompactWorld(t, Config{Horizon: 2 * time.Second})
	ctx := context.Background()
	co := w.callout()
	key := "5b1f0c0e-8a43-4b8e-9d7c-3c2f2d1a0b01"
	resp, err := w.c.ApplyTx(ctx, []TxOp{
		{Op: OpFilterAdd, Filter: &events.Filter{Key: key, Name: "f", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionCalloutInspection, CalloutKey: co}},
		{Op: OpFilterDelete, FilterKey: key},
	})
	if err != nil {
		t.Fatal(err)
	}
	w.eng.Close()
	w.start()
	if st := w.eng.Stats(); st.PendingPurges != 1 {
		t.Fatalf("restarted engine: %+v, want the purge found again", st)
	}
	subject := w.filterSubject(resp.Events[0].Filter)
	testkit.Eventually(t, "the restarted engine's janitor to purge", func() bool { return len(w.onSubject(subject)) == 0 })
}

// With NoHorizon a delete still rolls up, but stays.
func TestNoHorizonKeepsDeletes(t *testing.T) {
	w := newCompactWorld(t, Config{Horizon: NoHorizon})
	co := w.callout()
	f := w.filter(co)
	if err := w.c.DeleteFilter(context.Background(), FilterRef{FilterID: f.ID}); err != nil {
		t.Fatal(err)
	}
	msgs := w.onSubject(w.filterSubject(f))
	if len(msgs) != 1 || msgs[0].Header.Get(events.HeaderRollup) == "" || msgs[0].Header.Get(events.HeaderTTL) != "" {
		t.Fatalf("subject holds %d messages, want one roll-up without TTL", len(msgs))
	}
	if h, _ := w.stream.Info(context.Background()); h.Config.Metadata[events.MetaHorizon] != "0" {
		t.Fatalf("stream records horizon %q, want 0", h.Config.Metadata[events.MetaHorizon])
	}
}

// With an archive, a delete rolls up only what the archive already has:
// while the archive's sourcing is paused, the delete of a fresh filter
// stays plain, so when sourcing resumes the archive still gets the add.
func TestArchiveGetsEveryEventWhileTheLogCompacts(t *testing.T) {
	w := newCompactWorld(t, Config{Horizon: time.Second, Archive: "WFP_ARCHIVE"})
	ctx := context.Background()
	co := w.callout()
	archive, err := w.js.Stream(ctx, "WFP_ARCHIVE")
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the archive to source the callout", func() bool {
		info, err := archive.Info(ctx)
		return err == nil && info.State.Msgs == 1
	})
	// Pause sourcing.
	paused := archive.CachedInfo().Config
	sources := paused.Sources
	paused.Sources = nil
	if _, err := w.js.UpdateStream(ctx, paused); err != nil {
		t.Fatal(err)
	}
	f := w.filter(co)
	if err := w.c.DeleteFilter(ctx, FilterRef{FilterID: f.ID}); err != nil {
		t.Fatal(err)
	}
	if msgs := w.onSubject(w.filterSubject(f)); len(msgs) != 2 {
		t.Fatalf("with the archive behind, the subject holds %d messages, want the add and a plain tombstone", len(msgs))
	}
	// Resume: the archive gets both, then the janitor purges the log.
	paused.Sources = sources
	if _, err := w.js.UpdateStream(ctx, paused); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the janitor to purge the log", func() bool { return len(w.onSubject(w.filterSubject(f))) == 0 })
	info, err := archive.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 3 {
		t.Fatalf("archive holds %d messages, want the callout add, the filter add and its delete", info.State.Msgs)
	}
	for seq, want := range []events.Type{events.CalloutAdded, events.FilterAdded, events.FilterDeleted} {
		m, err := archive.GetMsg(ctx, uint64(seq+1))
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Header.Get(events.HeaderEvent); got != string(want) {
			t.Errorf("archive %d holds %s, want %s", seq+1, got, want)
		}
	}
}

// A delete does not roll up an add that a durable consumer of its callout
// has delivered and not acknowledged: the server would count the removed
// message as acknowledged, and with it (ack all) everything before it, so
// a durable agent killed meanwhile would never get those again. An add
// the durable has acknowledged rolls up as usual.
func TestDeleteKeepsAddsADurableHasNotAcknowledged(t *testing.T) {
	w := newCompactWorld(t, Config{Horizon: time.Hour})
	ctx := context.Background()
	co := w.callout()
	d, err := w.stream.CreateConsumer(ctx, natsjs.ConsumerConfig{
		Durable: "agent", AckPolicy: natsjs.AckAllPolicy, DeliverPolicy: natsjs.DeliverNewPolicy,
		FilterSubject: events.Subjects{Prefix: events.DefaultPrefix}.CalloutFilters(co),
	})
	if err != nil {
		t.Fatal(err)
	}
	f, g := w.filter(co), w.filter(co)
	batch, err := d.Fetch(2, natsjs.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var got []natsjs.Msg
	for m := range batch.Messages() {
		got = append(got, m)
	}
	if len(got) != 2 {
		t.Fatalf("fetched %d messages, want f's and g's adds", len(got))
	}
	if err := got[0].DoubleAck(ctx); err != nil { // f handled; g still in hand
		t.Fatal(err)
	}
	if err := w.c.DeleteFilter(ctx, FilterRef{FilterID: f.ID}); err != nil {
		t.Fatal(err)
	}
	if err := w.c.DeleteFilter(ctx, FilterRef{FilterID: g.ID}); err != nil {
		t.Fatal(err)
	}
	if msgs := w.onSubject(w.filterSubject(f)); len(msgs) != 1 {
		t.Errorf("f, acknowledged: subject holds %d messages, want its tombstone only", len(msgs))
	}
	if msgs := w.onSubject(w.filterSubject(g)); len(msgs) != 2 || msgs[1].Header.Get(events.HeaderTTL) != "" {
		t.Errorf("g, in the durable's hands: subject holds %d messages, want its add and a plain tombstone", len(msgs))
	}
	if ci, err := d.Info(ctx); err != nil || ci.AckFloor.Stream != f.ID || ci.NumAckPending != 1 {
		t.Fatalf("durable: %+v %v; want floor at f and g still pending", ci, err)
	}
}

// A delete's look at the durable consumers vouches for a callout it
// found none on only up to the log's position then: a durable made since
// starts after that, and an add it has been given since must not be
// rolled up under it, though the engine has not looked again.
func TestDeleteKeepsAddsOfADurableMadeSinceTheLastLook(t *testing.T) {
	defer func(d time.Duration) { floorsEvery = d }(floorsEvery)
	floorsEvery = time.Hour // no second look in this test
	w := newCompactWorld(t, Config{Horizon: time.Hour})
	ctx := context.Background()
	co := w.callout()
	f := w.filter(co)
	if err := w.c.DeleteFilter(ctx, FilterRef{FilterID: f.ID}); err != nil { // the look: no durable
		t.Fatal(err)
	}
	if msgs := w.onSubject(w.filterSubject(f)); len(msgs) != 1 {
		t.Fatalf("f, no durable: subject holds %d messages, want its tombstone only", len(msgs))
	}
	d, err := w.stream.CreateConsumer(ctx, natsjs.ConsumerConfig{
		Durable: "agent", AckPolicy: natsjs.AckAllPolicy, DeliverPolicy: natsjs.DeliverNewPolicy,
		FilterSubject: events.Subjects{Prefix: events.DefaultPrefix}.CalloutFilters(co),
	})
	if err != nil {
		t.Fatal(err)
	}
	g := w.filter(co)
	if err := w.c.DeleteFilter(ctx, FilterRef{FilterID: g.ID}); err != nil {
		t.Fatal(err)
	}
	if msgs := w.onSubject(w.filterSubject(g)); len(msgs) != 2 || msgs[1].Header.Get(events.HeaderTTL) != "" {
		t.Errorf("g, added after the durable was made: subject holds %d messages, want its add and a plain tombstone", len(msgs))
	}
	batch, err := d.Fetch(2, natsjs.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for m := range batch.Messages() {
		if n == 0 && m.Headers().Get(events.HeaderEvent) != string(events.FilterAdded) {
			t.Errorf("the durable's first message is %q, want g's add", m.Headers().Get(events.HeaderEvent))
		}
		n++
	}
	if n != 2 {
		t.Fatalf("the durable got %d messages, want g's add and its delete", n)
	}
}

// On a cluster, the consumer list holds only the consumers whose leaders
// answered; one on a node just lost is left out, and a durable left out
// must not look like none: the delete of an add it has not acknowledged
// stays plain.
func TestDeleteKeepsAddsOfADurableThatDidNotAnswer(t *testing.T) {
	defer func(d time.Duration) { lookTimeout = d }(lookTimeout)
	lookTimeout = 15 * time.Second // past the server's 4 s wait for the lost consumer
	c := testkit.NewCluster(t, 3)
	ctx := context.Background()
	cfg := Config{Replicas: 3, Horizon: time.Hour, WriteTimeout: 15 * time.Second, Logger: testLogger(io.Discard)}
	// A first engine makes the stream and the callout.
	first, err := Start(ctx, c.Nodes[0].Connect(t, c.URLs()), cfg)
	if err != nil {
		t.Fatal(err)
	}
	setup := testkit.JetStream(t, c.Nodes[0].Connect(t, c.URLs()))
	co, err := NewClient(setup.Conn()).AddCallout(ctx, events.Callout{Name: "c"})
	first.Close()
	if err != nil {
		t.Fatal(err)
	}
	s, err := setup.Stream(ctx, events.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	// The durable's one replica goes with the node it sits on, which must
	// lead neither the stream nor the meta layer: then the rest of the
	// cluster answers at once, and the consumer list leaves it out after
	// the server's 4 s wait for it. The server picks the node.
	streamLeader := c.StreamLeader(setup, events.DefaultStream)
	lost := -1
	testkit.Eventually(t, "a durable on a node that leads nothing", func() bool {
		_ = s.DeleteConsumer(ctx, "agent")
		d, err := s.CreateConsumer(ctx, natsjs.ConsumerConfig{
			Durable: "agent", Replicas: 1, AckPolicy: natsjs.AckAllPolicy, DeliverPolicy: natsjs.DeliverNewPolicy,
			FilterSubject: events.Subjects{Prefix: events.DefaultPrefix}.CalloutFilters(co.Key),
		})
		if err != nil {
			t.Fatal(err)
		}
		lost = c.Index(d.CachedInfo().Cluster.Leader)
		return lost >= 0 && lost != streamLeader && !c.Nodes[lost].Server().JetStreamIsLeader()
	})
	other := (lost + 1) % 3
	nc := c.Nodes[other].Connect(t, c.URLs())
	e, err := Start(ctx, nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	js, client := testkit.JetStream(t, nc), NewClient(nc)
	g, err := client.AddFilter(ctx, events.Filter{Name: "g", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionCalloutInspection, CalloutKey: co.Key})
	if err != nil {
		t.Fatal(err)
	}
	c.Crash(lost)
	// A look at the consumers waits out the server's 4 s for the lost
	// one, and the engine's tail may have gone with the node too.
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := client.DeleteFilter(dctx, FilterRef{FilterID: g.ID}); err != nil {
		t.Fatal(err)
	}
	s, err = js.Stream(ctx, events.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	subject := events.Subjects{Prefix: events.DefaultPrefix}.Filter(g)
	m, err := s.GetMsg(ctx, 1, natsjs.WithGetMsgSubject(subject))
	if err != nil {
		t.Fatal(err)
	}
	if m.Sequence != g.ID {
		t.Fatalf("g's subject starts at %d, want its add at %d: the delete rolled up an add the durable had not acknowledged", m.Sequence, g.ID)
	}
}
