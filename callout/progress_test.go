package callout_test

import (
	"context"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/internal/testkit"
)

// A replay of a large snapshot says how far it is while it runs (lines
// with done of total, as often as WithProgressInterval asks: here often,
// so that the test needs no long log), and once synced tells the filters
// apart from the tombstones the snapshot held.
func TestReplayOfALargeSnapshotLogsProgress(t *testing.T) {
	e := newEnv(t)
	ck := newKey()
	const filters, tombstones = 100_000, 10
	testkit.Populate(t, e.js, ck, filters+tombstones, tombstones)

	var logs logBuffer
	h := callout.HandlerFunc(func(context.Context, callout.NotifyType, *callout.Filter) error { return nil })
	a := e.register(ck, h, callout.WithMode(callout.Replay), callout.WithLogger(logs.logger()),
		callout.WithProgressInterval(10*time.Millisecond))
	select {
	case <-a.Synced():
	case <-a.Done():
		t.Fatalf("agent stopped: %v", a.Err())
	case <-time.After(time.Minute):
		t.Fatalf("no sync within a minute: %+v", a.Stats())
	}
	const snapshot = filters + tombstones // the last message of each filter subject
	out := logs.String()
	if !regexp.MustCompile(`msg=registered .*snapshotMessages=` + strconv.Itoa(snapshot)).MatchString(out) {
		t.Fatalf("no registered line with the snapshot's message count:\n%.2000s", out)
	}
	lines := regexp.MustCompile(`msg=replaying .*done=(\d+) total=(\d+) rate=\d+`).FindAllStringSubmatch(out, -1)
	if len(lines) == 0 {
		t.Fatalf("no progress line in the replay's log:\n%.2000s", out)
	}
	for _, l := range lines {
		done, _ := strconv.Atoi(l[1])
		if total, _ := strconv.Atoi(l[2]); total != snapshot || done > snapshot {
			t.Fatalf("progress line %q: want done of %d", l[0], snapshot)
		}
	}
	if !regexp.MustCompile(`msg=synced .*filters=100000 tombstones=10 `).MatchString(out) {
		t.Fatalf("no synced line telling filters from tombstones:\n%s", out[max(0, len(out)-2000):])
	}
}
