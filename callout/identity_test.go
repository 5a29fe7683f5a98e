package callout_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
)

// conn opens another connection to the env's server (another process, as
// far as the server can tell), closed when the test ends.
func (e *env) conn(opts ...nats.Option) (*nats.Conn, natsjs.JetStream) {
	e.t.Helper()
	nc, err := e.srv.Connect(opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(nc.Close)
	return nc, testkit.JetStream(e.t, nc)
}

// registerOn registers an agent on js, closed when the test ends.
func (e *env) registerOn(js natsjs.JetStream, key string, h callout.Handler, opts ...callout.Option) (*callout.Agent, error) {
	opts = append([]callout.Option{callout.WithLogger(quietLogger())}, opts...)
	a, err := callout.Register(context.Background(), js, key, h, opts...)
	if err == nil {
		e.t.Cleanup(func() { a.Close() })
	}
	return a, err
}

// One running agent per id: a second instance of the same agent id, from
// another connection, is refused with ErrAgentIDInUse and takes nothing
// over (the first keeps its consumer and its adds); the same id under
// another callout is another agent. Once the first is closed, the id is
// free again.
func TestAgentID_SecondInstanceIsRefused(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	rec := newRecorder()
	first := e.register(ck, rec, callout.WithAgentID("only-one"))

	_, js2 := e.conn()
	_, err := e.registerOn(js2, ck, newRecorder(), callout.WithAgentID("only-one"))
	if !errors.Is(err, callout.ErrAgentIDInUse) || !strings.Contains(err.Error(), first.Instance()) {
		t.Fatalf("second instance: %v, want ErrAgentIDInUse naming the holder %s", err, first.Instance())
	}
	_, err = e.registerOn(js2, ck, newRecorder(), callout.WithAgentID("only-one"), callout.WithMode(callout.Replay))
	if !errors.Is(err, callout.ErrAgentIDInUse) {
		t.Fatalf("second instance in replay mode: %v, want ErrAgentIDInUse", err)
	}
	f := e.add(ck, "still mine")
	rec.expect(t, addNote(f, false))

	if _, err := e.registerOn(js2, newKey(), newRecorder(), callout.WithAgentID("only-one")); err != nil {
		t.Fatalf("same id under another callout: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.registerOn(js2, ck, newRecorder(), callout.WithAgentID("only-one")); err != nil {
		t.Fatalf("after the holder closed: %v", err)
	}
}

// A killed instance's hold on its id dies with its connection: the
// restart with the same id registers at once, takes over the consumer
// named after the id (here a replay agent's, killed in the middle of its
// snapshot), and goes on.
func TestAgentID_KilledInstanceFreesTheIDAtOnce(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	before := e.add(ck, "before")
	nc1, js1 := e.conn()
	stuck, inBefore, release := stuckIn("before")
	defer release()
	a, err := e.registerOn(js1, ck, stuck, callout.WithAgentID("phoenix"), callout.WithMode(callout.Replay))
	if err != nil {
		t.Fatal(err)
	}
	waitClosed(t, inBefore, "the handler in the snapshot")
	name := events.AgentConsumer(ck, "phoenix")
	if _, err := e.stream.Consumer(context.Background(), name); err != nil {
		t.Fatalf("consumer %s: %v", name, err)
	}
	nc1.Close() // as a SIGKILL would: no bye, the consumer stays behind
	ping := e.subj.AgentInstancePing(ck, "phoenix", a.Instance())
	testkit.Eventually(t, "the server to drop the killed connection", func() bool {
		_, err := e.nc.Request(ping, nil, 100*time.Millisecond)
		return errors.Is(err, nats.ErrNoResponders)
	})

	_, js2 := e.conn()
	rec := newRecorder()
	b, err := e.registerOn(js2, ck, rec, callout.WithAgentID("phoenix"), callout.WithMode(callout.Replay))
	if err != nil {
		t.Fatalf("restart with the same id: %v", err)
	}
	if b.Instance() == a.Instance() {
		t.Fatal("the restart has the killed instance's instance id")
	}
	rec.expect(t, addNote(before, true))
	f := e.add(ck, "after the restart")
	rec.expect(t, addNote(f, false))
}

// Two instances of one agent id started at the same moment: exactly one
// registers.
func TestAgentID_SimultaneousStartsOneWins(t *testing.T) {
	e := newEnv(t)
	for round := range 3 {
		ck := newKey()
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i := range errs {
			_, js := e.conn()
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = e.registerOn(js, ck, newRecorder(), callout.WithAgentID("twin"))
			}()
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, callout.ErrAgentIDInUse):
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d instances registered (%v), want exactly 1", round, won, errs)
		}
	}
}

// Every consumer an agent makes is named after the callout and the agent
// id (so permissions can name it), or is its durable: a replay agent's
// snapshot consumer, deleted once it has synced (then it reads its live
// subscription, as a live agent does from the start, with no consumer),
// and a durable agent's durable.
func TestAgentID_ConsumerNamesArePinnable(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	before := e.add(ck, "before")
	names := func() map[string]bool {
		out := map[string]bool{}
		for n := range e.stream.ConsumerNames(context.Background()).Name() {
			out[n] = true
		}
		return out
	}
	e.register(ck, newRecorder(), callout.WithAgentID("l1"))
	stuck, inBefore, release := stuckIn("before")
	defer release()
	r1 := e.register(ck, stuck, callout.WithAgentID("r1"), callout.WithMode(callout.Replay))
	e.register(ck, newRecorder(), callout.WithAgentID("d1"), callout.WithDurable("d1-durable"))
	waitClosed(t, inBefore, "the replay agent in its snapshot")
	want := map[string]bool{events.AgentConsumer(ck, "r1"): true, "d1-durable": true}
	if got := names(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("consumers %v, want %v", got, want)
	}
	release()
	stuck.expect(t, addNote(before, true))
	waitClosed(t, r1.Synced(), "the replay agent synced")
	testkit.Eventually(t, "the snapshot consumer to go once synced", func() bool { return !names()[events.AgentConsumer(ck, "r1")] })
	if got := names(); fmt.Sprint(got) != fmt.Sprint(map[string]bool{"d1-durable": true}) {
		t.Fatalf("consumers %v once synced, want the durable alone", got)
	}
}

// The SDK cannot change the caller's connection: it warns when the
// connection's inbox prefix is not the agent's (then NATS permissions
// cannot confine the agent), and not when it is.
func TestAgentID_WarnsAboutAnotherInboxPrefix(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	var plain, own logBuffer
	_, js := e.conn()
	a, err := callout.Register(context.Background(), js, ck, newRecorder(), callout.WithAgentID("a"), callout.WithLogger(plain.logger()))
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	_, js = e.conn(nats.CustomInboxPrefix(e.subj.AgentInbox(ck, "b")))
	b, err := callout.Register(context.Background(), js, ck, newRecorder(), callout.WithAgentID("b"), callout.WithLogger(own.logger()))
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	if !strings.Contains(plain.String(), "inbox prefix") {
		t.Errorf("no warning with the default inbox prefix:\n%s", plain.String())
	}
	if strings.Contains(own.String(), "inbox prefix") {
		t.Errorf("a warning with the agent's own inbox prefix:\n%s", own.String())
	}
}

func TestAgentID_Validated(t *testing.T) {
	e := newEnv(t)
	for _, opt := range []callout.Option{
		callout.WithAgentID("a.b"), callout.WithAgentID("a*"), callout.WithAgentID("a b"), callout.WithAgentID(""),
		callout.WithAgentID(strings.Repeat("x", events.MaxNameLen+1)), callout.WithDurable("d/1"), callout.WithDurable("d.1"),
	} {
		if _, err := callout.Register(context.Background(), e.js, newKey(), newRecorder(), opt); !errors.Is(err, callout.ErrInvalidOption) {
			t.Errorf("Register: %v, want ErrInvalidOption", err)
		}
	}
}
