package callout_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
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
	"github.com/wfpnats/wfp/jetstream/embedded"
)

// wait bounds every wait on a channel in these tests.
const wait = 10 * time.Second

// env is a real embedded nats-server with the event-log stream.
type env struct {
	t      *testing.T
	srv    *embedded.Server
	nc     *nats.Conn
	js     natsjs.JetStream
	stream natsjs.Stream
	subj   events.Subjects
	mu     sync.Mutex // publishes are fenced on the last sequence
	// horizon, when set, goes on every filter event as the engine puts it
	// (events.HeaderHorizon): agents learn it there.
	horizon time.Duration
	// lastOn is, per callout, the last filter event written, for
	// events.HeaderPrev (the engine keeps it in its state).
	lastOn map[string]uint64
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	js := testkit.JetStream(t, nc)
	s := testkit.Stream(t, js)
	return &env{t: t, srv: srv, nc: nc, js: js, stream: s, subj: events.Subjects{Prefix: jetstream.DefaultPrefix}}
}

func newKey() string { return uuid.NewString() }

// add writes a FilterAdded naming calloutKey. Like the engine, it fences
// on the last sequence so the payload's ID is the sequence the add gets.
func (e *env) add(calloutKey, name string) *events.Filter {
	e.t.Helper()
	return e.addKey(calloutKey, newKey(), name)
}

// addKey is add with a given filter key.
func (e *env) addKey(calloutKey, key, name string) *events.Filter {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	info, err := e.stream.Info(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	f := &events.Filter{
		Key: key, ID: info.State.LastSeq + 1, Name: name, Layer: "ALE_AUTH_CONNECT_V4",
		Action: events.ActionCalloutInspection, CalloutKey: calloutKey,
	}
	if seq := e.publish(events.NewFilterEvent(events.FilterAdded, f), natsjs.WithExpectLastSequence(info.State.LastSeq)); seq != f.ID {
		e.t.Fatalf("add stored at %d, want %d", seq, f.ID)
	}
	return f
}

// del writes the FilterDeleted of f (the whole filter, with its ID).
func (e *env) del(f *events.Filter) {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.publish(events.NewFilterEvent(events.FilterDeleted, f.Clone()))
}

func (e *env) publish(ev *events.Event, opts ...natsjs.PublishOpt) uint64 {
	e.t.Helper()
	m, err := e.subj.Message(ev)
	if err != nil {
		e.t.Fatal(err)
	}
	e.stampHorizon(m)
	return e.publishStamped(ev, m, opts...)
}

// publishStamped publishes m, the message of ev, with the previous
// filter event of its callout in events.HeaderPrev, as the engine writes
// it.
func (e *env) publishStamped(ev *events.Event, m events.Message, opts ...natsjs.PublishOpt) uint64 {
	e.t.Helper()
	if ev.Filter == nil {
		return e.publishRaw(m.Subject, m.Data, nats.Header(m.Header), opts...)
	}
	if e.lastOn == nil {
		e.lastOn = map[string]uint64{}
	}
	ck := ev.Filter.CalloutKey
	m.Header[events.HeaderPrev] = []string{fmt.Sprint(e.lastOn[ck])}
	seq := e.publishRaw(m.Subject, m.Data, nats.Header(m.Header), opts...)
	e.lastOn[ck] = seq
	return seq
}

// stampHorizon puts the env's horizon on m, as the engine does.
func (e *env) stampHorizon(m events.Message) {
	if e.horizon > 0 {
		m.Header[events.HeaderHorizon] = []string{events.FormatTTL(e.horizon)}
	}
}

func (e *env) publishRaw(subject string, data []byte, h nats.Header, opts ...natsjs.PublishOpt) uint64 {
	e.t.Helper()
	ack, err := e.js.PublishMsg(context.Background(), &nats.Msg{Subject: subject, Data: data, Header: h}, opts...)
	if err != nil {
		e.t.Fatalf("publish %s: %v", subject, err)
	}
	return ack.Sequence
}

// register starts an agent and closes it when the test ends.
func (e *env) register(key string, h callout.Handler, opts ...callout.Option) *callout.Agent {
	e.t.Helper()
	opts = append([]callout.Option{callout.WithLogger(quietLogger())}, opts...)
	a, err := callout.Register(context.Background(), e.js, key, h, opts...)
	if err != nil {
		e.t.Fatalf("Register: %v", err)
	}
	e.t.Cleanup(func() { a.Close() })
	return a
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// note is one handler call as the test saw it.
type note struct {
	t       callout.NotifyType
	key     string
	id      uint64
	initial bool
	ctx     any
	reason  string
}

func (n note) String() string {
	return fmt.Sprintf("%s %s id=%d initial=%v ctx=%v", n.t, n.key[:8], n.id, n.initial, n.ctx)
}

// recorder is a handler that sets a context at add and reports each call.
type recorder struct {
	notes chan note
	// before, if set, runs first; its error is returned.
	before func(ctx context.Context, t callout.NotifyType, f *callout.Filter) error
}

func newRecorder() *recorder { return &recorder{notes: make(chan note, 10000)} }

// filterState is the per-filter context the tests' handlers attach.
type filterState struct{ id uint64 }

func (r *recorder) Notify(ctx context.Context, t callout.NotifyType, f *callout.Filter) error {
	if r.before != nil {
		if err := r.before(ctx, t, f); err != nil {
			return err
		}
	}
	if t == callout.AddFilter {
		f.Context = &filterState{id: f.ID}
	}
	r.notes <- note{t: t, key: f.Key, id: f.ID, initial: f.Initial, ctx: f.Context, reason: f.Reason}
	return nil
}

// next returns the next note or fails the test after the deadline.
func (r *recorder) next(t *testing.T) note {
	t.Helper()
	select {
	case n := <-r.notes:
		return n
	case <-time.After(wait):
		t.Fatal("no notification within", wait)
		return note{}
	}
}

// expect reads notes and checks them against want, in order.
func (r *recorder) expect(t *testing.T, want ...note) {
	t.Helper()
	for i, w := range want {
		got := r.next(t)
		if got.t != w.t || got.key != w.key || got.id != w.id || got.initial != w.initial {
			t.Fatalf("notification %d: got %v, want %v", i, got, w)
		}
	}
}

func addNote(f *events.Filter, initial bool) note {
	return note{t: callout.AddFilter, key: f.Key, id: f.ID, initial: initial}
}

func delNote(f *events.Filter, initial bool) note {
	return note{t: callout.DeleteFilter, key: f.Key, id: f.ID, initial: initial}
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(wait):
		t.Fatalf("%s not closed within %v", what, wait)
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// ctxTimeout is a deadline channel for selects.
func ctxTimeout(t *testing.T) <-chan time.Time {
	t.Helper()
	return time.After(wait)
}

// logBuffer collects an agent's log lines for assertions.
type logBuffer struct{ testkit.SyncBuffer }

func (b *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

func natsjsNew(nc *nats.Conn) (natsjs.JetStream, error) { return natsjs.New(nc) }

// waitStats waits until the agent's counters satisfy ok. Counters move
// just after the handler returns, so a test that has seen the handler's
// note may read them a moment early.
func waitStats(t *testing.T, a *callout.Agent, ok func(callout.Stats) bool) {
	t.Helper()
	deadline := time.After(wait)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !ok(a.Stats()) {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("stats %+v: not as expected within %v", a.Stats(), wait)
		}
	}
}

// txOp is one operation of a test transaction: the add of a filter named
// name under callout ck, or the delete of the filter added by operation
// delOf-1 of the same transaction.
type txOp struct {
	ck, name string
	delOf    int
}

func addOp(ck, name string) txOp { return txOp{ck: ck, name: name} }

// delOfOp deletes the filter that operation i (0-based) of the same
// transaction adds.
func delOfOp(i int) txOp { return txOp{delOf: i + 1} }

// txBatch is a transaction ready to write: its messages, stamped as the
// engine stamps them, and per message the filter it adds or deletes.
type txBatch struct {
	id      string
	msgs    []*nats.Msg
	filters []*events.Filter
}

// prepareTx builds a transaction's messages, with the ids the adds get if
// the transaction is the next thing written. Each filter message carries
// the transaction id and its place i/n among the transaction's messages
// on its callout's subjects (events.HeaderTxPart counts per callout).
func (e *env) prepareTx(ops ...txOp) *txBatch {
	e.t.Helper()
	info, err := e.stream.Info(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	b := &txBatch{id: uuid.NewString()}
	total := map[string]int{}
	for _, op := range ops {
		ck := op.ck
		if op.delOf > 0 {
			ck = ops[op.delOf-1].ck
		}
		total[ck]++
	}
	seen := map[string]int{}
	for i, op := range ops {
		var ev *events.Event
		if op.delOf > 0 {
			ev = events.NewFilterEvent(events.FilterDeleted, b.filters[op.delOf-1].Clone())
		} else {
			ev = events.NewFilterEvent(events.FilterAdded, &events.Filter{
				Key: newKey(), ID: info.State.LastSeq + 1 + uint64(i), Name: op.name, Layer: "ALE_AUTH_CONNECT_V4",
				Action: events.ActionCalloutInspection, CalloutKey: op.ck,
			})
		}
		m, err := e.subj.Message(ev)
		if err != nil {
			e.t.Fatal(err)
		}
		h := nats.Header(m.Header)
		ck := ev.Filter.CalloutKey
		seen[ck]++
		h.Set(events.HeaderTxID, b.id)
		h.Set(events.HeaderTxPart, events.TxPart(seen[ck], total[ck]))
		b.msgs = append(b.msgs, &nats.Msg{Subject: m.Subject, Data: m.Data, Header: h})
		b.filters = append(b.filters, ev.Filter)
	}
	return b
}

// commitTx writes the whole transaction as one fenced atomic batch, as
// the engine does.
func (e *env) commitTx(b *txBatch) {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	first := b.filters[0].ID
	if _, err := jetstream.PublishFenced(context.Background(), e.js, first-1, b.msgs); err != nil {
		e.t.Fatalf("commit transaction: %v", err)
	}
}

// publishPart writes message i of the transaction on its own, as a plain
// publish, so a test can look at the agent between parts. An add's id is
// the sequence it really gets.
func (e *env) publishPart(b *txBatch, i int) {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	seq := e.publishRaw(b.msgs[i].Subject, b.msgs[i].Data, b.msgs[i].Header)
	if ev, _ := events.Decode(b.msgs[i].Data); ev != nil && ev.Type == events.FilterAdded {
		b.filters[i].ID = seq
	}
}

func pcNote(f *events.Filter) note {
	return note{t: callout.AddFilterPostCommit, key: f.Key, id: f.ID}
}

// expectNone checks that no notification has been recorded (yet): call it
// when the agent is known to have taken in what it might act on.
func (r *recorder) expectNone(t *testing.T) {
	t.Helper()
	select {
	case n := <-r.notes:
		t.Fatalf("unexpected notification %v", n)
	default:
	}
}

// subscribeJSON hands each message on subject, decoded from JSON as T, to
// each, from the moment it returns (the subscription is flushed) until the
// test ends.
func subscribeJSON[T any](e *env, subject string, each func(T, *nats.Msg)) {
	e.t.Helper()
	sub, err := e.nc.Subscribe(subject, func(m *nats.Msg) {
		var v T
		if err := json.Unmarshal(m.Data, &v); err != nil {
			e.t.Errorf("message on %s: %q: %v", m.Subject, m.Data, err)
			return
		}
		each(v, m)
	})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.nc.Flush(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = sub.Unsubscribe() })
}
