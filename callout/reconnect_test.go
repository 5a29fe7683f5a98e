package callout_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/internal/testkit"
	"github.com/wfpnats/wfp/jetstream/embedded"
)

// A server restart cuts a live or replay agent's live subscription: what
// is written before the agent's connection is back never reaches it. As
// soon as the connection is back, the agent catches up through a consumer
// from the first message it has not handled, so it misses nothing written
// while the server was down or after, and repeats nothing.
func TestReconnect_AgentsCatchUpAfterAServerRestart(t *testing.T) {
	dir := t.TempDir()
	srv := testkit.ServerIn(t, dir)
	listen := strings.TrimPrefix(srv.ClientURL(), "nats://")
	e := &env{t: t, srv: srv, nc: testkit.Conn(t, srv), subj: newEnv(t).subj}
	e.js = testkit.JetStream(t, e.nc)
	e.stream = testkit.Stream(t, e.js)

	agentNC, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(agentNC.Close)
	ck := newKey()
	before := e.add(ck, "before")
	live, replay := newRecorder(), newRecorder()
	var log logBuffer
	la, err := callout.Register(context.Background(), testkit.JetStream(t, agentNC), ck, live, callout.WithLogger(log.logger()))
	if err != nil {
		t.Fatal(err)
	}
	defer la.Close()
	ra, err := callout.Register(context.Background(), testkit.JetStream(t, agentNC), ck, replay, callout.WithMode(callout.Replay), callout.WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	replay.expect(t, addNote(before, true))
	first := e.add(ck, "first")
	live.expect(t, addNote(first, false))
	replay.expect(t, addNote(first, false))

	reconnected := agentNC.StatusChanged(nats.CONNECTED)
	srv.Shutdown()
	srv2, err := embedded.Start(embedded.Options{StoreDir: dir, Listen: listen, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv2.Shutdown)
	e.srv, e.nc = srv2, testkit.Conn(t, srv2)
	e.js = testkit.JetStream(t, e.nc)
	e.stream = testkit.Stream(t, e.js)
	select {
	case <-reconnected:
	case <-time.After(wait):
		t.Fatal("the agents' connection did not come back")
	}
	after := e.add(ck, "after the restart")
	live.expect(t, addNote(after, false))
	replay.expect(t, addNote(after, false))
	live.expectNone(t)
	replay.expectNone(t)
	// Because of the reconnect, not because a later check found a gap.
	if !strings.Contains(log.String(), "catching up through a consumer") || !strings.Contains(log.String(), "reconnected") {
		t.Fatalf("the live agent did not catch up on the reconnect:\n%s", log.String())
	}
}
