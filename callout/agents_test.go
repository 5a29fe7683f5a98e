package callout_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/events"
)

// announced is one announcement as received, with its subject.
type announced struct {
	events.Announcement
	subject string
}

// announcements subscribes to every agent announcement.
func (e *env) announcements() <-chan announced {
	e.t.Helper()
	ch := make(chan announced, 100)
	subscribeJSON(e, e.subj.AllAgents(), func(a events.Announcement, m *nats.Msg) {
		ch <- announced{a, m.Subject}
	})
	return ch
}

// An agent announces itself once its consumer exists, answers an
// engine's probe at once, re-announces every AnnounceInterval, and says
// bye when it closes, before Close returns.
func TestAgent_AnnouncesAnswersProbesAndSaysByeOnClose(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	anns := e.announcements()
	a := e.register(ck, newRecorder(), callout.WithAgentID("agent-1"), callout.WithDurable("dur"), callout.WithPostCommit())
	want := events.Announcement{AgentID: "agent-1", CalloutKey: ck, Instance: a.Instance(), Mode: "live", Durable: "dur", PostCommit: true, Status: events.AgentAlive}
	check := func(got announced, want events.Announcement) {
		t.Helper()
		if got.Announcement != want || got.subject != e.subj.Agent(ck, "agent-1") {
			t.Fatalf("announcement %+v on %s, want %+v on %s", got.Announcement, got.subject, want, e.subj.Agent(ck, "agent-1"))
		}
	}
	first := waitFor(t, anns)
	check(first, want)
	const probes = 30 // far more than wait / events.AnnounceInterval
	deadline := time.After(wait)
	if _, err := e.stream.Consumer(context.Background(), "dur"); err != nil {
		t.Fatalf("announced before its consumer existed: %v", err)
	}

	// Each probe is answered at once, not at the next periodic
	// announcement: 30 probes, one after the other, each waiting for its
	// answer, get 30 answers within one wait, where periodic announcements
	// alone would bring a handful.
	for i := range probes {
		if err := e.nc.Publish(e.subj.AgentProbe(), nil); err != nil {
			t.Fatal(err)
		}
		select {
		case probed := <-anns:
			check(probed, want)
		case <-deadline:
			t.Fatalf("%d of %d probes answered within %v: probes are not answered at once", i, probes, wait)
		}
	}
	// Then periodically, with no probe.
	periodic := waitFor(t, anns)
	check(periodic, want)

	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	for {
		got := waitFor(t, anns)
		if got.Status == events.AgentAlive {
			continue // a periodic one sent before the bye
		}
		want.Status = events.AgentBye
		check(got, want)
		break
	}
}

// Without WithAgentID an agent gets a fresh UUID; a replay agent says so.
func TestAgent_DefaultIDAndReplayAnnouncement(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	anns := e.announcements()
	a := e.register(ck, newRecorder(), callout.WithMode(callout.Replay))
	b := e.register(ck, newRecorder())
	if _, err := uuid.Parse(a.ID()); err != nil || a.ID() == b.ID() {
		t.Fatalf("IDs %q and %q: want two distinct UUIDs", a.ID(), b.ID())
	}
	got := waitFor(t, anns)
	want := events.Announcement{AgentID: a.ID(), CalloutKey: ck, Instance: a.Instance(), Mode: "replay", Status: events.AgentAlive}
	if got.Announcement != want || got.subject != e.subj.Agent(ck, a.ID()) {
		t.Fatalf("announcement %+v on %s, want %+v", got.Announcement, got.subject, want)
	}
}
