package engine

import (
	"testing"
	"time"

	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
)

// The lease clock hands out each abandoned session once while its end is
// being written, again if that write failed, and forgets heartbeats of
// sessions it never sees open.
func TestLeasesHandOutAnEndOnce(t *testing.T) {
	clock := newFakeClock()
	l := newLeases(clock.now)
	s := &events.Session{ID: "3e9a1c2b-4d5e-4f60-8a7b-9c0d1e2f3a4b", LeaseMs: 1000}
	open := []*events.Session{s}
	if got := l.expired(open); len(got) != 0 {
		t.Fatalf("first sight: %v", got)
	}
	clock.advance(2 * time.Second)
	if got := l.expired(open); len(got) != 1 {
		t.Fatalf("after the lease: %v, want the session", got)
	}
	if got := l.expired(open); len(got) != 0 {
		t.Fatalf("while its end is written: %v, want nothing", got)
	}
	l.ended(s.ID, false) // the write failed: try again
	if got := l.expired(open); len(got) != 1 {
		t.Fatalf("after a failed end: %v, want the session again", got)
	}
	l.ended(s.ID, true)
	if !l.last(s.ID).IsZero() {
		t.Fatal("an ended session is still on the clock")
	}

	l.beat("5b1f0c0e-8a43-4b8e-9d7c-3c2f2d1a0b01") // never seen open
	clock.advance(staleBeat)
	l.expired(nil)
	if l.last("5b1f0c0e-8a43-4b8e-9d7c-3c2f2d1a0b01").IsZero() {
		t.Fatal("a heartbeat was forgotten before staleBeat")
	}
	clock.advance(time.Millisecond)
	l.expired(nil)
	if !l.last("5b1f0c0e-8a43-4b8e-9d7c-3c2f2d1a0b01").IsZero() {
		t.Fatal("a heartbeat for a session never seen open is kept for ever")
	}
}

// A heartbeat names its session by subject; one whose last token is not a
// session id is ignored, neither counted nor kept.
func TestHeartbeatForGarbageIgnored(t *testing.T) {
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	e := startEngine(t, nc)
	subj := events.Subjects{Prefix: "wfp"}
	n := e.Stats().Heartbeats
	for _, bad := range []string{"not-a-session", "x"} {
		if err := nc.Publish(subj.Heartbeat(bad), []byte("junk")); err != nil {
			t.Fatal(err)
		}
	}
	const id = "3e9a1c2b-4d5e-4f60-8a7b-9c0d1e2f3a4b"
	if err := nc.Publish(subj.Heartbeat(id), nil); err != nil {
		t.Fatal(err)
	}
	// Messages of one connection arrive in order: once the good one is
	// counted, the garbage before it has been handled.
	testkit.Eventually(t, "the heartbeat", func() bool { return e.Stats().Heartbeats > n })
	if got := e.Stats().Heartbeats - n; got != 1 || !e.leases.last("not-a-session").IsZero() || e.leases.last(id).IsZero() {
		t.Fatalf("counted %d heartbeats, want 1; garbage kept: %v", got, !e.leases.last("not-a-session").IsZero())
	}
}
