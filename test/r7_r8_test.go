package test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/google/uuid"

	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/engine"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
)

// agentJS gives an agent a connection of its own, so a test can "kill" it
// by closing that connection: no goodbye, no acks.
func (w *world) agentJS(t *testing.T) natsjs.JetStream {
	t.Helper()
	return testkit.JetStream(t, testkit.Conn(t, w.srv))
}

// registerOn registers an agent on js with a known id.
func registerOn(t *testing.T, js natsjs.JetStream, key, id string, h callout.Handler, opts ...callout.Option) *callout.Agent {
	t.Helper()
	opts = append([]callout.Option{callout.WithLogger(quietLog), callout.WithAgentID(id)}, opts...)
	a, err := callout.Register(ctxT(t), js, key, h, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	waitSynced(t, a)
	return a
}

// agentsOf lists the agent ids the engine has registered for a callout.
func (w *world) agentsOf(t *testing.T, key string) []string {
	t.Helper()
	resp, err := w.client.ListCallouts(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range resp.Callouts {
		if c.Key == key {
			for _, a := range c.Agents {
				ids = append(ids, a.AgentID)
			}
		}
	}
	return ids
}

func (w *world) waitAgents(t *testing.T, key string, ids ...string) {
	t.Helper()
	testkit.Eventually(t, fmt.Sprintf("agents %v registered for %s", ids, key), func() bool {
		return fmt.Sprint(w.agentsOf(t, key)) == fmt.Sprint(ids)
	})
}

// refusing wraps a recorder and refuses adds of filters whose name
// contains a word.
type refusing struct {
	*recorder
	word string
}

func (h refusing) Notify(ctx context.Context, t callout.NotifyType, f *callout.Filter) error {
	if t == callout.AddFilter && strings.Contains(f.Name, h.word) {
		h.recorder.mu.Lock()
		h.recorder.notes = append(h.recorder.notes, note{t: t, key: f.Key, id: f.ID})
		h.recorder.mu.Unlock()
		return fmt.Errorf("refusing %q: no %s here", f.Name, h.word)
	}
	return h.recorder.Notify(ctx, t, f)
}

func filterNamed(calloutKey, name string) events.Filter {
	return events.Filter{Name: name, Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionCalloutTerminating, CalloutKey: calloutKey}
}

// R7: an error from one of two agents' ADD notify fails the add with
// FWP_E_CALLOUT_NOTIFICATION_FAILED, naming the agent and its error, and
// the filter does not remain: it is not listed, and the agent that took it
// sees it deleted, with its context back.
func TestR7_AddRefusedByOneOfTwoAgentsIsNotAdded(t *testing.T) {
	w := newWorld(t)
	c := w.addCallout(t)
	ok, bad := newRecorder(), newRecorder()
	registerOn(t, w.agentJS(t), c, "agent-ok", ok)
	registerOn(t, w.agentJS(t), c, "agent-strict", refusing{bad, "telnet"})
	w.waitAgents(t, c, "agent-ok", "agent-strict")

	f := filterNamed(c, "allow telnet")
	f.Key = uuid.NewString()
	_, err := w.client.AddFilter(ctxT(t), f)
	if !errors.Is(err, engine.ErrCalloutNotificationFailed) {
		t.Fatalf("add refused by an agent: %v, want FWP_E_CALLOUT_NOTIFICATION_FAILED", err)
	}
	for _, want := range []string{"agent-strict", `refusing "allow telnet": no telnet here`} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not name %q", err, want)
		}
	}
	resp, err := w.client.ListFilters(ctxT(t), engine.ListFiltersRequest{CalloutKey: c})
	if err != nil || len(resp.Filters) != 0 {
		t.Fatalf("refused filter still listed: %+v %v", resp, err)
	}
	// The add fails as soon as one agent refuses: the other may take it
	// only now.
	added := ok.waitFor(t, callout.AddFilter, f.Key)
	del := ok.waitFor(t, callout.DeleteFilter, added.key)
	if del.ctx != added.ctx || del.ctx == nil {
		t.Fatal("the agent that took the refused filter did not get its context back at the delete")
	}
	if st := w.eng.Stats(); st.Rejected != 1 {
		t.Fatalf("engine counted %d rejections", st.Rejected)
	}

	// A filter both accept is added.
	if _, err := w.client.AddFilter(ctxT(t), filterNamed(c, "inspect ssh")); err != nil {
		t.Fatalf("add both agents accept: %v", err)
	}
}

// R7: with no agent registered for the callout, an add waits for no one.
func TestR7_AddWithNoRegisteredAgentSucceeds(t *testing.T) {
	w := newWorld(t)
	c := w.addCallout(t)
	// Even a notify timeout of 1 ms is enough: nothing is waited for.
	f, err := w.client.AddFilter(ctxT(t), filterNamed(c, "lonely"), engine.WithNotifyTimeout(time.Millisecond))
	if err != nil || f.ID == 0 {
		t.Fatalf("add with no agents: %+v, %v", f, err)
	}
	if st := w.eng.Stats(); st.Rejected+st.Unanswered != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// R7: an agent that does not answer in time does not block the add
// forever: the caller gets FWP_E_TIMEOUT naming it, and the filter is
// taken back.
func TestR7_UnansweredAddTimesOutAndIsTakenBack(t *testing.T) {
	w := newWorld(t)
	c := w.addCallout(t)
	release := make(chan struct{})
	defer close(release)
	stuck := callout.HandlerFunc(func(_ context.Context, nt callout.NotifyType, _ *callout.Filter) error {
		if nt == callout.AddFilter {
			<-release
		}
		return nil
	})
	registerOn(t, w.agentJS(t), c, "agent-stuck", stuck)
	w.waitAgents(t, c, "agent-stuck")
	_, err := w.client.AddFilter(ctxT(t), filterNamed(c, "slow"), engine.WithNotifyTimeout(200*time.Millisecond))
	if !errors.Is(err, engine.ErrTimeout) || !strings.Contains(err.Error(), "agent-stuck") {
		t.Fatalf("unanswered add: %v, want FWP_E_TIMEOUT naming agent-stuck", err)
	}
	resp, _ := w.client.ListFilters(ctxT(t), engine.ListFiltersRequest{CalloutKey: c})
	if len(resp.Filters) != 0 {
		t.Fatal("an unconfirmed filter stayed")
	}
}

// R7: an error from DELETE notify is logged and counted; the delete stands.
func TestR7_DeleteWhoseNotifyFailsStillDeletes(t *testing.T) {
	w := newWorld(t)
	c := w.addCallout(t)
	h := callout.HandlerFunc(func(_ context.Context, nt callout.NotifyType, _ *callout.Filter) error {
		if nt == callout.DeleteFilter {
			return errors.New("cleanup failed")
		}
		return nil
	})
	a := registerOn(t, w.agentJS(t), c, "agent-messy", h)
	w.waitAgents(t, c, "agent-messy")
	f, err := w.client.AddFilter(ctxT(t), filterNamed(c, "f"))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.client.DeleteFilter(ctxT(t), engine.FilterRef{FilterKey: f.Key}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	testkit.Eventually(t, "the delete's notify error counted", func() bool { return a.Stats().HandlerErrors == 1 })
	if _, ok := a.Lookup(f.ID); ok {
		t.Fatal("the agent still holds a filter whose delete notify failed")
	}
	if _, err := w.client.GetFilter(ctxT(t), engine.FilterRef{FilterID: f.ID}); !errors.Is(err, engine.ErrFilterNotFound) {
		t.Fatalf("filter still there after delete: %v", err)
	}
}

// Agents are listed per callout while alive: a cleanly closed one leaves
// at once, a killed one (no goodbye) within 10 seconds.
func TestAgentRegistry_CloseLeavesAtOnce_KillWithin10s(t *testing.T) {
	w := newWorld(t)
	c := w.addCallout(t)
	closing := registerOn(t, w.agentJS(t), c, "agent-a", newRecorder())
	killJS := w.agentJS(t)
	registerOn(t, killJS, c, "agent-b", newRecorder())
	w.waitAgents(t, c, "agent-a", "agent-b")

	if err := closing.Close(); err != nil {
		t.Fatal(err)
	}
	w.waitAgents(t, c, "agent-b") // the goodbye is immediate; this waits at most for delivery

	killed := time.Now()
	killJS.Conn().Close() // as if the process died: no goodbye
	w.waitAgents(t, c)
	if gone := time.Since(killed); gone > 10*time.Second {
		t.Fatalf("a killed agent stayed listed for %v", gone)
	}
}

// R8: a transaction is validated as a whole; one invalid operation and
// nothing is written.
func TestR8_TransactionWithAnInvalidOperationWritesNothing(t *testing.T) {
	w := newWorld(t)
	c := w.addCallout(t)
	before := w.eng.Seq()
	f := filterNamed(c, "a")
	_, err := w.client.ApplyTx(ctxT(t), []engine.TxOp{
		{Op: engine.OpFilterAdd, Filter: &f},
		{Op: engine.OpCalloutDelete, CalloutKey: c}, // in use by the filter just added
	})
	if !errors.Is(err, engine.ErrInUse) || !strings.Contains(err.Error(), "ops[1]") {
		t.Fatalf("invalid transaction: %v, want FWP_E_IN_USE naming ops[1]", err)
	}
	if log := readLog(t, w.js); log[len(log)-1].seq != before {
		t.Fatalf("a refused transaction wrote: log at %d, was %d", log[len(log)-1].seq, before)
	}
	// Too big for one atomic batch: refused up front, naming the limit.
	ops := make([]engine.TxOp, engine.MaxTxOps+1)
	for i := range ops {
		g := filterNamed(c, fmt.Sprint("f", i))
		ops[i] = engine.TxOp{Op: engine.OpFilterAdd, Filter: &g}
	}
	if _, err := w.client.ApplyTx(ctxT(t), ops); !errors.Is(err, engine.ErrInvalidParameter) ||
		!strings.Contains(err.Error(), "1000") {
		t.Fatalf("oversized transaction: %v", err)
	}
}

// txOf builds a transaction adding n filters for callout c.
func txOf(c string, n int) ([]engine.TxOp, []string) {
	var ops []engine.TxOp
	var keys []string
	for i := range n {
		f := filterNamed(c, fmt.Sprint("tx filter ", i))
		f.Key = fmt.Sprintf("%08d-0000-4000-8000-000000000000", i+1)
		keys = append(keys, f.Key)
		ops = append(ops, engine.TxOp{Op: engine.OpFilterAdd, Filter: &f})
	}
	return ops, keys
}

// R8: a transaction's filters reach an agent all together: a durable agent
// killed while they are being delivered gets all of them again, together,
// when it comes back.
func TestR8_TransactionReachesAgentWholeAcrossAKill(t *testing.T) {
	w := newWorld(t)
	c := w.addCallout(t)

	// First run: the handler blocks inside the second add of the
	// transaction; then the process "dies".
	first := newRecorder()
	inSecond := make(chan struct{})
	block := make(chan struct{})
	defer close(block)
	n := 0
	firstH := callout.HandlerFunc(func(ctx context.Context, nt callout.NotifyType, f *callout.Filter) error {
		if n++; n == 2 {
			close(inSecond)
			<-block
		}
		return first.Notify(ctx, nt, f)
	})
	killJS := w.agentJS(t)
	registerOn(t, killJS, c, "agent-durable", firstH, callout.WithDurable("tx-agent"))
	w.waitAgents(t, c, "agent-durable")

	ops, keys := txOf(c, 4)
	done := make(chan error, 1)
	go func() {
		// The dead agent will not answer: give up on it soon.
		_, err := w.client.ApplyTx(context.Background(), ops, engine.WithNotifyTimeout(300*time.Millisecond))
		done <- err
	}()
	<-inSecond
	killJS.Conn().Close()
	// The engine waits for the dead agent until it gives up on it; the
	// transaction itself is committed.
	if err := <-done; err != nil {
		t.Fatalf("transaction: %v", err)
	}

	// Second run, same durable: all four adds, in order, together.
	second := newRecorder()
	registerOn(t, w.agentJS(t), c, "agent-durable-2", second, callout.WithDurable("tx-agent"))
	testkit.Eventually(t, "the transaction redelivered", func() bool { return len(second.snapshot()) >= 4 })
	got := second.snapshot()
	for i, k := range keys {
		if got[i].t != callout.AddFilter || got[i].key != k {
			t.Fatalf("after restart, notification %d is %v %s, want add %s (all: %+v)", i, got[i].t, got[i].key, k, got)
		}
	}
}

// R8: agents that asked for post-commit notifications get
// AddFilterPostCommit for each filter of a transaction, after its
// AddFilter; others, and plain adds, get none.
func TestR8_PostCommitAfterAddOnlyForAgentsThatAsked(t *testing.T) {
	w := newWorld(t)
	c := w.addCallout(t)
	asked, plain := newRecorder(), newRecorder()
	registerOn(t, w.agentJS(t), c, "agent-post", asked, callout.WithPostCommit())
	registerOn(t, w.agentJS(t), c, "agent-plain", plain)
	w.waitAgents(t, c, "agent-plain", "agent-post")

	req, keys := txOf(c, 2)
	resp, err := w.client.ApplyTx(ctxT(t), req)
	if err != nil || len(resp.Rejected) != 0 {
		t.Fatalf("transaction: %+v %v", resp, err)
	}
	single := w.addFilter(t, c)
	asked.waitFor(t, callout.AddFilter, single.Key)
	plain.waitFor(t, callout.AddFilter, single.Key)

	var seq []string
	for _, n := range asked.snapshot() {
		seq = append(seq, n.t.String()+" "+n.key)
	}
	want := []string{"add " + keys[0], "add " + keys[1], "add-post-commit " + keys[0], "add-post-commit " + keys[1], "add " + single.Key}
	if fmt.Sprint(seq) != fmt.Sprint(want) {
		t.Fatalf("post-commit agent saw\n %v\nwant\n %v", seq, want)
	}
	for _, n := range plain.snapshot() {
		if n.t == callout.AddFilterPostCommit {
			t.Fatalf("an agent that did not ask got %+v", n)
		}
	}
}

// R7 inside a transaction: a refusal rejects only the filter it names; the
// commit response lists it and the rest stands.
func TestR7_TransactionRefusalRejectsOnlyThatFilter(t *testing.T) {
	w := newWorld(t)
	c := w.addCallout(t)
	registerOn(t, w.agentJS(t), c, "agent-picky", refusing{newRecorder(), "filter 1"})
	w.waitAgents(t, c, "agent-picky")
	req, keys := txOf(c, 3)
	resp, err := w.client.ApplyTx(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Rejected) != 1 || resp.Rejected[0].FilterKey != keys[1] || resp.Rejected[0].AgentID != "agent-picky" ||
		resp.Rejected[0].Code != engine.CodeCalloutNotificationFailed {
		t.Fatalf("rejected: %+v", resp.Rejected)
	}
	list, _ := w.client.ListFilters(ctxT(t), engine.ListFiltersRequest{CalloutKey: c})
	var have []string
	for _, f := range list.Filters {
		have = append(have, f.Key)
	}
	if fmt.Sprint(have) != fmt.Sprint([]string{keys[0], keys[2]}) {
		t.Fatalf("after the transaction: %v, want %v", have, []string{keys[0], keys[2]})
	}
}
