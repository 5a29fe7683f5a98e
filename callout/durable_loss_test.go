package callout_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
	"github.com/wfpnats/wfp/jetstream"
)

// envIn is newEnv on a server stored in dir, so that the test can stop
// it, damage the store, and start it again.
func envIn(t *testing.T, dir string) *env {
	t.Helper()
	srv := testkit.ServerIn(t, dir)
	nc := testkit.Conn(t, srv)
	js := testkit.JetStream(t, nc)
	return &env{t: t, srv: srv, nc: nc, js: js, stream: testkit.Stream(t, js), subj: events.Subjects{Prefix: jetstream.DefaultPrefix}}
}

// A durable agent whose position is past the end of the log (the store
// lost events it had handled) says so loudly and in its Stats.
func TestDurable_PositionPastTheEndOfTheLogIsReported(t *testing.T) {
	for _, cut := range []int64{100, -1} {
		t.Run(fmt.Sprint("cut ", cut), func(t *testing.T) {
			dir := t.TempDir()
			e := envIn(t, dir)
			ck := newKey()
			rec := newRecorder()
			a := e.register(ck, rec, callout.WithDurable("agent-1"))
			var fs []*events.Filter
			for i := range 5 {
				fs = append(fs, e.add(ck, fmt.Sprint("f", i)))
			}
			rec.expect(t, addNote(fs[0], false), addNote(fs[1], false), addNote(fs[2], false), addNote(fs[3], false), addNote(fs[4], false))
			if err := a.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			// A restart on an intact log reports nothing.
			var clean logBuffer
			a = e.register(ck, newRecorder(), callout.WithDurable("agent-1"), callout.WithLogger(clean.logger()))
			if s := a.Stats(); s.LogLoss != 0 || strings.Contains(clean.String(), "LOST") {
				t.Fatalf("LogLoss %d on an intact log:\n%s", s.LogLoss, clean.String())
			}
			if err := a.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			e.nc.Close()
			e.srv.Shutdown()

			// The block loses its end (or everything), and the server its
			// index of the stream, as in a disk fault.
			blocks, _ := filepath.Glob(filepath.Join(dir, "jetstream", "*", "streams", events.DefaultStream, "msgs", "*.blk"))
			fi, err := os.Stat(blocks[0])
			if err != nil {
				t.Fatal(err)
			}
			size := int64(0)
			if cut > 0 {
				size = fi.Size() - cut
			}
			if err := os.Truncate(blocks[0], size); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(filepath.Join(filepath.Dir(blocks[0]), "index.db")); err != nil {
				t.Fatal(err)
			}

			e = envIn(t, dir)
			var logs logBuffer
			a = e.register(ck, newRecorder(), callout.WithDurable("agent-1"), callout.WithLogger(logs.logger()))
			if s := a.Stats(); s.LogLoss == 0 || !strings.Contains(logs.String(), "THE LOG LOST EVENTS THIS AGENT HAD HANDLED") {
				t.Fatalf("stats %+v, log:\n%s\nwant the loss reported", s, logs.String())
			}
		})
	}
}
