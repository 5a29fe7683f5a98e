package events

import (
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

const testSession = "3e9a1c2b-4d5e-4f60-8a7b-9c0d1e2f3a4b"

func TestSessionEventSubjectAndHeaders(t *testing.T) {
	s := Subjects{Prefix: "wfp"}
	ev := NewSessionEvent(SessionOpened, &Session{ID: testSession, Dynamic: true, LeaseMs: 10000})
	if !ev.Known() {
		t.Fatal("SessionOpened with a session is not known")
	}
	m, err := s.Message(ev)
	if err != nil {
		t.Fatal(err)
	}
	if want := "wfp.session." + testSession; m.Subject != want {
		t.Fatalf("subject %q, want %q", m.Subject, want)
	}
	for k, v := range map[string]string{HeaderEvent: "SessionOpened", HeaderSession: testSession, HeaderMsgID: ev.ID} {
		if got := m.Header[k]; len(got) != 1 || got[0] != v {
			t.Errorf("header %s = %v, want %q", k, got, v)
		}
	}
	for _, h := range []string{HeaderFilterKey, HeaderCalloutKey, HeaderLayer} {
		if _, ok := m.Header[h]; ok {
			t.Errorf("session event carries %s", h)
		}
	}

	f := sampleFilter()
	f.Session = testSession
	if m, _ := s.Message(NewFilterEvent(FilterAdded, f)); m.Header[HeaderSession][0] != testSession {
		t.Fatalf("filter in a session: header %v", m.Header[HeaderSession])
	}
	c := &Callout{Key: f.CalloutKey, Name: "c", Session: testSession}
	if m, _ := s.Message(NewCalloutEvent(CalloutAdded, c)); m.Header[HeaderSession][0] != testSession {
		t.Fatalf("callout in a session: header %v", m.Header[HeaderSession])
	}
	if m, _ := s.Message(NewFilterEvent(FilterAdded, sampleFilter())); m.Header[HeaderSession] != nil {
		t.Fatalf("permanent filter carries %s", HeaderSession)
	}

	// An event with no body has no subject: an error, not a panic.
	if _, err := s.Message(&Event{Schema: 1, Type: SessionClosed}); err == nil {
		t.Fatal("a session event without a session got a subject")
	}
}

func TestSessionEventKnownNeedsItsBody(t *testing.T) {
	for _, ev := range []*Event{
		{Schema: 1, Type: SessionOpened},
		{Schema: 1, Type: SessionClosed, Session: &Session{}},
		{Schema: 1, Type: SessionOpened, Filter: sampleFilter()},
	} {
		if ev.Known() {
			t.Errorf("%+v is known", ev)
		}
	}
}

// R5 both ways: an older reader's view of a session event is an unknown
// type (it skips it), and a filter's session key is a key it ignores.
// This reader, for its part, ignores unknown keys inside the session.
func TestR5_SessionKeysAndFutureSessionFields(t *testing.T) {
	data, _ := msgpack.Marshal(map[string]any{
		"v": 1, "t": "SessionClosed", "id": "x",
		"s": map[string]any{"k": testSession, "dy": true, "ls": 5000, "holder": map[string]any{"pid": 7}},
	})
	ev, err := Decode(data)
	if err != nil || !ev.Known() || ev.Session.ID != testSession || ev.Session.LeaseMs != 5000 || !ev.Session.Dynamic {
		t.Fatalf("future session field: %+v %v", ev, err)
	}
	if ev.Session.Lease().Seconds() != 5 {
		t.Fatalf("Lease() = %v", ev.Session.Lease())
	}
	// A nil dynamic flag reads as false, as the reflection decoder reads it.
	data, _ = msgpack.Marshal(map[string]any{"v": 1, "t": "SessionOpened", "s": map[string]any{"k": testSession, "dy": nil}})
	if ev, err := Decode(data); err != nil || ev.Session.Dynamic {
		t.Fatalf("nil dynamic: %+v %v", ev, err)
	}
}
