package jetstream

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/events"
)

// waitArchived waits until the archive has sourced the log up to seq.
func waitArchived(t *testing.T, js natsjs.JetStream, archive string, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := ArchivedThrough(testCtx(t), js, archive)
		if err != nil {
			t.Fatal(err)
		}
		if got >= seq {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("archive %s at %d after 20s, want %d", archive, got, seq)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// What sourcing keeps: every message with its subject, payload and
// headers, roll-up and TTL headers included but not acted on; the fence
// headers are dropped; Nats-Stream-Source names the log sequence.
func TestArchiveKeepsWhatTheLogCompacts(t *testing.T) {
	js, s := setupStream(t)
	ctx := testCtx(t)
	a, err := EnsureArchive(ctx, js, ArchiveConfig{Name: "WFP_ARCHIVE"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := PublishFenced(ctx, js, 0, []*nats.Msg{newMsg("wfp.filter.C.a", "add-a")}); err != nil {
		t.Fatal(err)
	}
	waitArchived(t, js, "WFP_ARCHIVE", 1) // the roll-up waits for the archive, as the engine does
	if _, err := PublishChain(ctx, js, 1, []*nats.Msg{
		tombstone("wfp.filter.C.a", "del-a", time.Second), newMsg("wfp.filter.C.b", "add-b"),
	}); err != nil {
		t.Fatal(err)
	}
	waitArchived(t, js, "WFP_ARCHIVE", 3)
	waitGone(t, s, 2) // the log's tombstone expired
	// One more TTL'd tombstone, gone from the log too: by then the
	// archive's copy of the first would have expired as well, had the
	// archive applied TTLs.
	if _, err := PublishFenced(ctx, js, 3, []*nats.Msg{tombstone("wfp.filter.C.b", "del-b", time.Second)}); err != nil {
		t.Fatal(err)
	}
	waitArchived(t, js, "WFP_ARCHIVE", 4)
	waitGone(t, s, 4)
	if st := state(t, s); st.Msgs != 0 || st.LastSeq != 4 {
		t.Fatalf("log state %+v, want empty at 4", st)
	}

	if st := state(t, a); st.Msgs != 4 {
		t.Fatalf("archive holds %d messages, want all 4", st.Msgs)
	}
	for seq, want := range map[uint64]struct {
		subject, id string
		rollup      bool
	}{1: {"wfp.filter.C.a", "add-a", false}, 2: {"wfp.filter.C.a", "del-a", true}, 3: {"wfp.filter.C.b", "add-b", false}, 4: {"wfp.filter.C.b", "del-b", true}} {
		m, err := a.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		h := m.Header
		if m.Subject != want.subject || h.Get(natsjs.MsgIDHeader) != want.id || string(m.Data) != "payload of "+want.subject {
			t.Errorf("archive %d: %s %q %q", seq, m.Subject, h.Get(natsjs.MsgIDHeader), m.Data)
		}
		if (h.Get(events.HeaderRollup) != "") != want.rollup || (h.Get(events.HeaderTTL) != "") != want.rollup {
			t.Errorf("archive %d: roll-up/TTL headers %v, want present %v", seq, h, want.rollup)
		}
		for _, k := range []string{natsjs.ExpectedLastSeqHeader, natsjs.ExpectedLastMsgIDHeader} {
			if h.Get(k) != "" {
				t.Errorf("archive %d kept %s", seq, k)
			}
		}
		if src := h.Get(HeaderStreamSource); !strings.HasPrefix(src, fmt.Sprintf("WFP %d ", seq)) {
			t.Errorf("archive %d: %s %q, want the log's name and sequence", seq, HeaderStreamSource, src)
		}
	}
}

func TestEnsureArchiveRefusesWhatIsNotAnArchive(t *testing.T) {
	js, _ := setupStream(t)
	ctx := testCtx(t)
	if _, err := EnsureArchive(ctx, js, ArchiveConfig{Name: "WFP"}); err == nil {
		t.Error("the log itself accepted as its archive")
	}
	if _, err := js.CreateStream(ctx, natsjs.StreamConfig{Name: "COMPACTING", AllowRollup: true,
		Sources: []*natsjs.StreamSource{{Name: "WFP"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureArchive(ctx, js, ArchiveConfig{Name: "COMPACTING"}); err == nil || !strings.Contains(err.Error(), "roll-ups") {
		t.Errorf("a stream that rolls up accepted as an archive: %v", err)
	}
	if _, err := js.CreateStream(ctx, natsjs.StreamConfig{Name: "OTHER", Subjects: []string{"other.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureArchive(ctx, js, ArchiveConfig{Name: "OTHER"}); err == nil || !strings.Contains(err.Error(), "does not source") {
		t.Errorf("a stream that does not source the log accepted: %v", err)
	}
	// Idempotent on a real archive.
	for range 2 {
		if _, err := EnsureArchive(ctx, js, ArchiveConfig{Name: "WFP_ARCHIVE"}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSourceSeq(t *testing.T) {
	if n, err := SourceSeq("WFP 42 > > wfp.filter.C.a"); err != nil || n != 42 {
		t.Errorf("sourceSeq = %d, %v", n, err)
	}
	for _, bad := range []string{"", "WFP", "WFP x"} {
		if _, err := SourceSeq(bad); err == nil {
			t.Errorf("SourceSeq(%q) accepted", bad)
		}
	}
}
