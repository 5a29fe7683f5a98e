package jetstream

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/events"
)

func TestStreamConfigDefaultsAndSubjects(t *testing.T) {
	c := StreamConfig{}.WithDefaults()
	if c.Name != "WFP" || c.Prefix != "wfp" || c.Replicas != 1 {
		t.Fatalf("defaults: %+v", c)
	}
	want := []string{"wfp.filter.>", "wfp.callout.>", "wfp.session.*"}
	if got := (StreamConfig{}).Subjects(); !slices.Equal(got, want) {
		t.Fatalf("Subjects() = %v, want %v", got, want)
	}
	if got := (StreamConfig{Prefix: "acme.wfp"}).Subjects(); got[0] != "acme.wfp.filter.>" {
		t.Fatalf("Subjects() with dotted prefix = %v", got)
	}
	for _, bad := range []StreamConfig{{Prefix: "wfp.>"}, {Prefix: "a..b"}, {Prefix: "a*b"}, {Prefix: "w fp"}, {Name: "a.b"}} {
		if err := bad.WithDefaults().validate(); err == nil {
			t.Errorf("%+v: want validation error", bad)
		}
	}
}

func TestEnsureStreamCreatesWithOwnedSettings(t *testing.T) {
	_, s := setupStream(t)
	cfg := s.CachedInfo().Config
	if !slices.Equal(cfg.Subjects, []string{"wfp.filter.>", "wfp.callout.>", "wfp.session.*"}) {
		t.Errorf("subjects %v", cfg.Subjects)
	}
	if cfg.Storage != natsjs.FileStorage || !cfg.AllowAtomicPublish || !cfg.AllowDirect ||
		cfg.Duplicates != 2*time.Minute || cfg.Discard != natsjs.DiscardOld ||
		cfg.Retention != natsjs.LimitsPolicy || cfg.Replicas != 1 {
		t.Errorf("config %+v", cfg)
	}
	if cfg.MaxMsgs != -1 || cfg.MaxBytes != -1 || cfg.MaxAge != 0 || cfg.MaxMsgsPerSubject != -1 {
		t.Errorf("limits set: msgs %d bytes %d age %s per-subject %d",
			cfg.MaxMsgs, cfg.MaxBytes, cfg.MaxAge, cfg.MaxMsgsPerSubject)
	}
}

func TestEnsureStreamIdempotent(t *testing.T) {
	js, s1 := setupStream(t)
	ctx := testCtx(t)
	if _, err := js.Publish(ctx, "wfp.filter.C.k1", []byte("x")); err != nil {
		t.Fatal(err)
	}
	s2, err := EnsureStream(ctx, js, StreamConfig{})
	if err != nil {
		t.Fatalf("second EnsureStream: %v", err)
	}
	i1, i2 := s1.CachedInfo(), s2.CachedInfo()
	if !i1.Created.Equal(i2.Created) {
		t.Errorf("stream re-created: %v then %v", i1.Created, i2.Created)
	}
	if configDiff(i2.Config, StreamConfig{}.WithDefaults().natsConfig()) != nil {
		t.Errorf("config drifted: %+v", i2.Config)
	}
	if st := state(t, s2); st.Msgs != 1 {
		t.Errorf("messages lost: %d", st.Msgs)
	}
}

func TestEnsureStreamFixesChangedSettings(t *testing.T) {
	e := startServer(t)
	js := connectJS(t, e)
	ctx := testCtx(t)
	// A stream of our name that captures everything and ages out: both wrong.
	_, err := js.CreateStream(ctx, natsjs.StreamConfig{
		Name: "WFP", Subjects: []string{"wfp.>"}, MaxAge: time.Hour, Description: "operator note",
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := EnsureStream(ctx, js, StreamConfig{})
	if err != nil {
		t.Fatalf("EnsureStream: %v", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := configDiff(info.Config, StreamConfig{}.WithDefaults().natsConfig()); d != nil {
		t.Fatalf("not fixed: %v", d)
	}
	if info.Config.Description != "operator note" {
		t.Errorf("setting we do not own was overwritten: %q", info.Config.Description)
	}
	// The API subjects are no longer captured by the stream.
	if _, err := js.Publish(ctx, "wfp.api.filter.add", []byte("{}")); !errors.Is(err, natsjs.ErrNoStreamResponse) {
		t.Errorf("publish on API subject: want ErrNoStreamResponse, got %v", err)
	}
}

func TestEnsureStreamRefusedUpdate(t *testing.T) {
	e := startServer(t)
	js := connectJS(t, e)
	ctx := testCtx(t)
	// Storage cannot change on update: the server refuses.
	_, err := js.CreateStream(ctx, natsjs.StreamConfig{
		Name: "WFP", Subjects: []string{"wfp.filter.>", "wfp.callout.>"}, Storage: natsjs.MemoryStorage,
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = EnsureStream(ctx, js, StreamConfig{})
	if err == nil {
		t.Fatal("want error for a memory stream of the same name")
	}
	for _, want := range []string{`"WFP"`, "storage", "refused"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	var apiErr *natsjs.APIError
	if !errors.As(err, &apiErr) {
		t.Errorf("server error not wrapped: %v", err)
	}
}

func TestEnsureStreamCustomNameAndPrefix(t *testing.T) {
	js := connectJS(t, startServer(t))
	ctx := testCtx(t)
	s, err := EnsureStream(ctx, js, StreamConfig{Name: "TENANT_A", Prefix: "a.wfp"})
	if err != nil {
		t.Fatal(err)
	}
	if s.CachedInfo().Config.Name != "TENANT_A" {
		t.Fatal("wrong name")
	}
	ack, err := js.Publish(ctx, "a.wfp.callout.C", nil)
	if err != nil || ack.Stream != "TENANT_A" {
		t.Fatalf("publish under custom prefix: %v %+v", err, ack)
	}
}

func TestEnsureStreamSubjectsTakenByAnotherStream(t *testing.T) {
	js := connectJS(t, startServer(t))
	ctx := testCtx(t)
	if _, err := js.CreateStream(ctx, natsjs.StreamConfig{Name: "OTHER", Subjects: []string{"wfp.>"}}); err != nil {
		t.Fatal(err)
	}
	_, err := EnsureStream(ctx, js, StreamConfig{})
	if err == nil || !strings.Contains(err.Error(), "another stream already captures") {
		t.Fatalf("want overlap error, got %v", err)
	}
}

// The compaction settings are owned: roll-ups and TTLs allowed, purge not
// denied (the server refuses roll-ups without it), the horizon recorded
// for readers. What an operator set beside them stays.
func TestEnsureStreamOwnsCompactionSettings(t *testing.T) {
	e := startServer(t)
	js := connectJS(t, e)
	ctx := testCtx(t)
	_, err := js.CreateStream(ctx, natsjs.StreamConfig{
		Name: "WFP", Subjects: []string{"wfp.filter.>", "wfp.callout.>"},
		DenyDelete: true, Metadata: map[string]string{"team": "netsec"},
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := EnsureStream(ctx, js, StreamConfig{Horizon: 90 * time.Minute})
	if err != nil {
		t.Fatalf("EnsureStream: %v", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := info.Config
	if !c.AllowRollup || c.DenyPurge || !c.AllowMsgTTL {
		t.Errorf("rollup %v deny purge %v msg ttl %v", c.AllowRollup, c.DenyPurge, c.AllowMsgTTL)
	}
	if !c.DenyDelete || c.Metadata["team"] != "netsec" {
		t.Errorf("operator settings lost: deny delete %v, metadata %v", c.DenyDelete, c.Metadata)
	}
	if h, err := Horizon(info); err != nil || h != 90*time.Minute {
		t.Errorf("Horizon = %v, %v; want 1h30m", h, err)
	}
	// A new horizon is an update, and 0 records "for ever".
	if s, err = EnsureStream(ctx, js, StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	if h, err := Horizon(s.CachedInfo()); err != nil || h != 0 || s.CachedInfo().Config.Metadata[events.MetaHorizon] != "0" {
		t.Errorf("Horizon after reset = %v, %v (metadata %v)", h, err, s.CachedInfo().Config.Metadata)
	}
}

// A stream that denies purge cannot take roll-ups, and the server never
// lifts deny_purge on an existing stream: EnsureStream says so.
func TestEnsureStreamDenyPurgeIsExplained(t *testing.T) {
	e := startServer(t)
	js := connectJS(t, e)
	ctx := testCtx(t)
	if _, err := js.CreateStream(ctx, natsjs.StreamConfig{
		Name: "WFP", Subjects: []string{"wfp.filter.>", "wfp.callout.>"}, DenyPurge: true,
	}); err != nil {
		t.Fatal(err)
	}
	_, err := EnsureStream(ctx, js, StreamConfig{})
	if err == nil || !strings.Contains(err.Error(), "deny_purge") || !strings.Contains(err.Error(), "roll-ups") {
		t.Fatalf("want an error explaining deny_purge, got %v", err)
	}
}

// Hardening: the server refuses to delete a message from the log, also
// on a stream made before deny_delete existed; purge stays possible
// because compaction's roll-ups need it.
func TestEnsureStreamDeniesMessageDelete(t *testing.T) {
	e := startServer(t)
	js := connectJS(t, e)
	ctx := testCtx(t)
	if _, err := js.CreateStream(ctx, natsjs.StreamConfig{Name: "WFP", Subjects: []string{"wfp.filter.>", "wfp.callout.>"}}); err != nil {
		t.Fatal(err)
	}
	s, err := EnsureStream(ctx, js, StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg := s.CachedInfo().Config; !cfg.DenyDelete || cfg.DenyPurge {
		t.Fatalf("deny_delete %v deny_purge %v, want true and false", cfg.DenyDelete, cfg.DenyPurge)
	}
	ack, err := js.Publish(ctx, "wfp.filter.C.k1", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMsg(ctx, ack.Sequence); err == nil {
		t.Fatal("message delete allowed")
	}
	if err := s.SecureDeleteMsg(ctx, ack.Sequence); err == nil {
		t.Fatal("secure message delete allowed")
	}
	if st := state(t, s); st.Msgs != 1 {
		t.Fatalf("%d messages after refused deletes, want 1", st.Msgs)
	}
}

// The stream republishes every filter event to its live subject, with
// its stream sequence, for agents on core subscriptions, and caps its
// consumers explicitly (the server's default cap is 1,000): also on a
// stream made before either existed.
func TestEnsureStreamRepublishesFilterEventsAndSetsMaxConsumers(t *testing.T) {
	e := startServer(t)
	js := connectJS(t, e)
	nc := js.Conn()
	ctx := testCtx(t)
	if _, err := js.CreateStream(ctx, natsjs.StreamConfig{Name: "WFP", Subjects: []string{"wfp.filter.>", "wfp.callout.>"}}); err != nil {
		t.Fatal(err)
	}
	s, err := EnsureStream(ctx, js, StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if c := s.CachedInfo().Config; c.MaxConsumers != DefaultMaxConsumers || c.RePublish == nil {
		t.Fatalf("max consumers %d, republish %+v", c.MaxConsumers, c.RePublish)
	}
	live := make(chan *nats.Msg, 4)
	sub, err := nc.ChanSubscribe(events.Subjects{Prefix: "wfp"}.LiveFilters("C"), live)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, subject := range []string{"wfp.filter.C.k1", "wfp.callout.C", "wfp.filter.C.k2"} {
		ack, err := js.Publish(ctx, subject, []byte(subject))
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, ack.Sequence)
	}
	// In order, and the callout event is not among them.
	for i, want := range []int{0, 2} {
		select {
		case m := <-live:
			subject := []string{"wfp.filter.C.k1", "wfp.callout.C", "wfp.filter.C.k2"}[want]
			if m.Subject != "wfp.live."+strings.TrimPrefix(subject, "wfp.") || m.Header.Get(natsjs.SequenceHeader) != fmt.Sprint(seqs[want]) ||
				m.Header.Get(natsjs.SubjectHeader) != subject || string(m.Data) != subject {
				t.Fatalf("republished #%d: %s %v %q", i, m.Subject, m.Header, m.Data)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("republished #%d never came", i)
		}
	}
}
