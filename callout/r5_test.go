package callout_test

import (
	"context"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/vmihailenco/msgpack/v5"
	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
)

// R5: what the agent cannot act on is skipped, counted and (durable)
// acked; the agent goes on with the next event.
func TestR5_GarbageUnknownTypeNewerSchemaAndCalloutEventsAreSkipped(t *testing.T) {
	for _, mode := range []string{"live", "durable", "replay"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			ck := newKey()
			rec := newRecorder()
			logs := &logBuffer{}
			opts := []callout.Option{callout.WithLogger(logs.logger())}
			switch mode {
			case "durable":
				opts = append(opts, callout.WithDurable("r5"))
			case "replay":
				opts = append(opts, callout.WithMode(callout.Replay))
			}
			publishJunk := func() {
				subject := e.subj.Filter(&events.Filter{Key: newKey(), CalloutKey: ck})
				e.publishRaw(subject, []byte("not msgpack at all"), nil)
				unknown, _ := msgpack.Marshal(map[string]any{"v": events.SchemaVersion, "t": "FilterRenamed", "id": "x"})
				e.publishRaw(e.subj.Filter(&events.Filter{Key: newKey(), CalloutKey: ck}), unknown, nats.Header{events.HeaderEvent: {"FilterRenamed"}})
				newer, _ := msgpack.Marshal(map[string]any{"v": events.SchemaVersion + 1, "t": string(events.FilterAdded), "f": map[string]any{"k": newKey(), "ck": ck}})
				e.publishRaw(e.subj.Filter(&events.Filter{Key: newKey(), CalloutKey: ck}), newer, nil)
				cev, _ := events.Encode(events.NewCalloutEvent(events.CalloutAdded, &events.Callout{Key: ck, Name: "c"}))
				e.publishRaw(e.subj.Filter(&events.Filter{Key: newKey(), CalloutKey: ck}), cev, nil)
			}
			if mode == "replay" {
				publishJunk() // in the snapshot: it counts towards it but is skipped
			}
			a := e.register(ck, rec, opts...)
			if mode == "replay" {
				waitClosed(t, a.Synced(), "Synced")
			}
			publishJunk()
			f := e.add(ck, "after the junk")
			rec.expect(t, addNote(f, false))

			want := uint64(4)
			if mode == "replay" {
				want = 8
			}
			waitStats(t, a, func(s callout.Stats) bool { return s.Skipped == want && s.Adds == 1 })
			for _, why := range []string{"undecodable payload", "unknown event type or schema", "not a filter event"} {
				if !strings.Contains(logs.String(), "skipping event: "+why) {
					t.Errorf("no log line for %q in:\n%s", why, logs)
				}
			}
			for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
				if strings.Contains(line, "skipping event") && (!strings.Contains(line, "subject=wfp.filter."+ck) || !strings.Contains(line, "seq=")) {
					t.Errorf("skip log without subject and sequence: %s", line)
				}
			}
			if mode == "durable" {
				testkit.Eventually(t, "every message acked", func() bool {
					info, err := e.stream.Consumer(context.Background(), "r5")
					if err != nil {
						t.Fatal(err)
					}
					ci := info.CachedInfo()
					return ci.NumAckPending == 0 && ci.AckFloor.Stream == f.ID
				})
			}
		})
	}
}

// R5 for the handler side: a notify type the handler does not know must
// be ignored; the SDK's own types print as documented.
func TestR5_NotifyTypeAndModeNames(t *testing.T) {
	for nt, s := range map[callout.NotifyType]string{callout.AddFilter: "add", callout.DeleteFilter: "delete", callout.AddFilterPostCommit: "add-post-commit"} {
		if nt.String() != s {
			t.Errorf("%d.String() = %q, want %q", int(nt), nt.String(), s)
		}
	}
	if callout.NotifyType(42).String() == "" {
		t.Error("unknown notify type has no name")
	}
	for _, s := range []string{"live", "replay"} {
		m, err := callout.ParseMode(s)
		if err != nil || m.String() != s {
			t.Errorf("ParseMode(%q) = %v, %v", s, m, err)
		}
	}
	if _, err := callout.ParseMode("later"); err == nil {
		t.Error("ParseMode accepted a bad mode")
	}
}
