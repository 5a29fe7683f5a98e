package engine

import (
	"context"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wfpnats/wfp/internal/testkit"
)

// A rebuild of a large log says how far it is while it runs: lines with
// done of total, as often as ProgressInterval asks (here often, so that
// the test needs no long log).
func TestRebuildOfALargeLogLogsProgress(t *testing.T) {
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	const n = 100_000
	last := testkit.Populate(t, testkit.JetStream(t, nc), uuid.NewString(), n, 0)

	var logs testkit.SyncBuffer
	e, err := Start(context.Background(), nc, Config{Logger: testLogger(&logs), ProgressInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if st := e.Stats(); st.Filters != n || st.Seq != last {
		t.Fatalf("rebuilt %d filters up to %d, want %d up to %d", st.Filters, st.Seq, n, last)
	}
	line := regexp.MustCompile(`msg="engine: rebuilding state from the log" done=(\d+) total=(\d+) rate=\d+`)
	lines := line.FindAllStringSubmatch(logs.String(), -1)
	if len(lines) == 0 {
		t.Fatalf("no progress line in the rebuild's log:\n%s", logs.String())
	}
	for _, l := range lines {
		done, _ := strconv.ParseUint(l[1], 10, 64)
		if total, _ := strconv.ParseUint(l[2], 10, 64); total != last || done > last {
			t.Fatalf("progress line %q: want done of %d", l[0], last)
		}
	}
	if !regexp.MustCompile(`msg="engine ready" .* filters=100000 .* rebuild=`).MatchString(logs.String()) {
		t.Fatalf("no ready line with the filters and the rebuild's time:\n%s", logs.String())
	}
}
