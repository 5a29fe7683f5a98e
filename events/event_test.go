package events

import (
	"errors"
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func sampleFilter() *Filter {
	return &Filter{
		Key: "5b1f0c0e-8a43-4b8e-9d7c-3c2f2d1a0b01", ID: 42, Name: "block telnet",
		Layer: "ALE_AUTH_CONNECT_V4", Weight: 7,
		Conditions: []Condition{{Field: "IP_REMOTE_PORT", Match: MatchEqual, Value: "23"}},
		Action:     ActionCalloutTerminating, CalloutKey: "0c8e7f1d-7c55-4d0e-a2e1-6f3b9d2f4e10",
		Flags: []string{FlagPermitIfCalloutUnregistered}, ProviderData: []byte{1, 2},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, ev := range []*Event{
		NewFilterEvent(FilterAdded, sampleFilter()),
		NewFilterEvent(FilterDeleted, sampleFilter()),
		NewCalloutEvent(CalloutAdded, &Callout{Key: "0c8e7f1d-7c55-4d0e-a2e1-6f3b9d2f4e10", Name: "c", Flags: []string{CalloutFlagCommitAddNotify}}),
	} {
		data, err := Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(data)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Known() {
			t.Fatalf("%s: decoded event not known", ev.Type)
		}
		if !got.Time.Equal(ev.Time) {
			t.Fatalf("time %v != %v", got.Time, ev.Time)
		}
		got.Time = ev.Time
		if !reflect.DeepEqual(got, ev) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, ev)
		}
	}
}

// R5: a newer writer's fields and types must not break this reader.
func TestR5_UnknownFieldsAndTypesDecode(t *testing.T) {
	future := map[string]any{
		"v": SchemaVersion, "t": string(FilterAdded), "id": "x", "new-field": []int{1, 2},
		"f": map[string]any{"k": "5b1f0c0e-8a43-4b8e-9d7c-3c2f2d1a0b01", "n": "a", "zz": "unknown"},
	}
	data, _ := msgpack.Marshal(future)
	ev, err := Decode(data)
	if err != nil {
		t.Fatalf("unknown field: %v", err)
	}
	if !ev.Known() || ev.Filter.Name != "a" {
		t.Fatalf("known fields lost: %+v", ev)
	}

	data, _ = msgpack.Marshal(map[string]any{"v": SchemaVersion, "t": "FilterRenamed", "id": "y"})
	ev, err = Decode(data)
	if err != nil {
		t.Fatalf("unknown type must decode: %v", err)
	}
	if ev.Known() {
		t.Fatal("unknown type reported as known")
	}

	data, _ = msgpack.Marshal(map[string]any{"v": SchemaVersion + 1, "t": string(FilterAdded), "f": map[string]any{"k": "k"}})
	if ev, err = Decode(data); err != nil || ev.Known() {
		t.Fatalf("newer schema: err=%v known=%v, want decoded and not known", err, ev.Known())
	}
}

func TestDecodeGarbage(t *testing.T) {
	for _, data := range [][]byte{nil, []byte("hello"), {0xc1}, []byte(`{"t":"FilterAdded"}`)} {
		if _, err := Decode(data); !errors.Is(err, ErrMalformed) {
			t.Errorf("Decode(%q) = %v, want ErrMalformed", data, err)
		}
	}
}

func TestMessageHeadersAndSubject(t *testing.T) {
	s := Subjects{Prefix: "wfp"}
	f := sampleFilter()
	ev := NewFilterEvent(FilterAdded, f)
	m, err := s.Message(ev)
	if err != nil {
		t.Fatal(err)
	}
	if want := "wfp.filter." + f.CalloutKey + "." + f.Key; m.Subject != want {
		t.Fatalf("subject %q, want %q", m.Subject, want)
	}
	for k, v := range map[string]string{HeaderMsgID: ev.ID, HeaderEvent: "FilterAdded", HeaderFilterKey: f.Key,
		HeaderFilterID: "42", HeaderCalloutKey: f.CalloutKey, HeaderLayer: f.Layer, HeaderSchema: "1", HeaderContentType: ContentType} {
		if got := m.Header[k]; len(got) != 1 || got[0] != v {
			t.Errorf("header %s = %v, want %q", k, got, v)
		}
	}
	f.CalloutKey, f.Action = "", ActionBlock
	if m, _ := s.Message(NewFilterEvent(FilterAdded, f)); m.Subject != "wfp.filter._."+f.Key {
		t.Fatalf("no-callout subject %q", m.Subject)
	}
}

func TestParseKey(t *testing.T) {
	const want = "5b1f0c0e-8a43-4b8e-9d7c-3c2f2d1a0b01"
	for _, in := range []string{"5B1F0C0E-8A43-4B8E-9D7C-3C2F2D1A0B01", "{5b1f0c0e-8a43-4b8e-9d7c-3c2f2d1a0b01}", "{5B1F0C0E-8A43-4B8E-9D7C-3C2F2D1A0B01}"} {
		if k, err := ParseKey(in); err != nil || k != want {
			t.Errorf("ParseKey(%q) = %q, %v; want %s", in, k, err, want)
		}
	}
	for _, bad := range []string{"", "x", "5b1f0c0e8a434b8e9d7c3c2f2d1a0b01", "{5b1f0c0e-8a43-4b8e-9d7c-3c2f2d1a0b01",
		"urn:uuid:5b1f0c0e-8a43-4b8e-9d7c-3c2f2d1a0b01", "00000000-0000-0000-0000-000000000000", "{00000000-0000-0000-0000-000000000000}"} {
		if _, err := ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) accepted", bad)
		}
	}
}

func TestCalloutOfFilters(t *testing.T) {
	s := Subjects{Prefix: "acme.wfp"}
	key := "0c8e7f1d-7c55-4d0e-a2e1-6f3b9d2f4e10"
	for subject, want := range map[string]string{s.CalloutFilters(key): key, s.CalloutFilters(""): NoCallout} {
		if got, ok := s.CalloutOfFilters(subject); !ok || got != want {
			t.Errorf("CalloutOfFilters(%q) = %q, %v; want %q", subject, got, ok, want)
		}
	}
	for _, bad := range []string{"acme.wfp.filter.>", "acme.wfp.filter.*.*", "acme.wfp.filter." + key + ".k", "wfp.filter." + key + ".*", "acme.wfp.callout." + key} {
		if got, ok := s.CalloutOfFilters(bad); ok {
			t.Errorf("CalloutOfFilters(%q) = %q, want no callout", bad, got)
		}
	}
}
