package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/engine"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
	"github.com/wfpnats/wfp/jetstream"
)

// engineCLI runs the command in-process against a real embedded server with an
// engine on it.
type engineCLI struct {
	t   *testing.T
	url string
	js  natsjs.JetStream
}

func newCLI(t *testing.T) *engineCLI {
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	e, err := engine.Start(context.Background(), nc, engine.Config{Logger: slog.New(slog.DiscardHandler), Archive: jetstream.ArchiveName("WFP")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return &engineCLI{t, srv.ClientURL(), testkit.JetStream(t, nc)}
}

// run runs one command line and returns stdout and the error.
func (c *engineCLI) run(args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	words := 0 // the command words come before the first flag
	for words < len(args) && !strings.HasPrefix(args[words], "-") {
		words++
	}
	args = append(args[:words:words], append([]string{"--server", c.url}, args[words:]...)...)
	err := run(context.Background(), args, nil, &stdout, &stderr)
	return stdout.String(), err
}

func (c *engineCLI) ok(args ...string) string {
	c.t.Helper()
	out, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("engine %s: %v", strings.Join(args, " "), err)
	}
	return out
}

const calloutKey = "0c8e7f1d-7c55-4d0e-a2e1-6f3b9d2f4e10"

func TestManagementCommands(t *testing.T) {
	c := newCLI(t)
	if out := c.ok("callout", "add", "--key", calloutKey, "--name", "inspector"); !strings.Contains(out, calloutKey) {
		t.Fatalf("callout add printed %q", out)
	}
	out := c.ok("filter", "add", "--name", "block telnet", "--layer", "ALE_AUTH_CONNECT_V4", "--action", "callout-inspection",
		"--callout", calloutKey, "--condition", "IP_REMOTE_PORT=23", "--json")
	var added struct {
		Key string `json:"filterKey"`
		ID  uint64 `json:"filterId"`
	}
	if err := json.Unmarshal([]byte(out), &added); err != nil || added.Key == "" || added.ID != 2 {
		t.Fatalf("filter add --json: %q (%v)", out, err)
	}

	var listed []map[string]any
	if err := json.Unmarshal([]byte(c.ok("filter", "list", "--callout", calloutKey, "--json")), &listed); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0]["filterKey"] != added.Key || listed[0]["filterId"] != 2.0 ||
		listed[0]["calloutKey"] != calloutKey || listed[0]["layer"] != "ALE_AUTH_CONNECT_V4" || listed[0]["name"] != "block telnet" {
		t.Fatalf("filter list --json: %v", listed)
	}
	if out := c.ok("callout", "list"); !strings.Contains(out, "inspector") {
		t.Fatalf("callout list: %q", out)
	}

	for _, tc := range []struct {
		args []string
		code string
	}{
		{[]string{"callout", "add", "--key", calloutKey, "--name", "again"}, "FWP_E_ALREADY_EXISTS"},
		{[]string{"callout", "delete", "--key", calloutKey}, "FWP_E_IN_USE"},
		{[]string{"filter", "add", "--name", "x", "--layer", "ALE_AUTH_CONNECT_V4", "--action", "callout-terminating", "--callout", "5b1f0c0e-8a43-4b8e-9d7c-3c2f2d1a0b01"}, "FWP_E_CALLOUT_NOT_FOUND"},
		{[]string{"filter", "add", "--name", "x", "--layer", "ALE_AUTH_CONNECT_V4", "--action", "sideways"}, "FWP_E_INVALID_PARAMETER"},
		{[]string{"filter", "delete", "--id", "99"}, "FWP_E_FILTER_NOT_FOUND"},
		{[]string{"filter", "add", "--key", "not-a-uuid", "--name", "x", "--layer", "ALE_AUTH_CONNECT_V4", "--action", "block"}, "FWP_E_INVALID_PARAMETER: filterKey"},
	} {
		if _, err := c.run(tc.args...); err == nil || !strings.Contains(err.Error(), tc.code) {
			t.Errorf("engine %s: error %v, want %s", strings.Join(tc.args, " "), err, tc.code)
		}
	}

	// A delete rolls up only what the archive has already sourced.
	archived := func(seq uint64) {
		t.Helper()
		testkit.Eventually(t, "the archive to catch up", func() bool {
			n, err := jetstream.ArchivedThrough(context.Background(), c.js, jetstream.ArchiveName("WFP"))
			return err == nil && n >= seq
		})
	}
	archived(2)
	c.ok("filter", "delete", "--id", "2")
	archived(3)
	c.ok("callout", "delete", "--key", calloutKey)

	// events: the log as JSON lines, or one callout's filters. Each delete
	// rolled up its add: the log holds the two deletes.
	lines := strings.Split(strings.TrimSpace(c.ok("events")), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"FilterDeleted"`) || !strings.Contains(lines[1], `"CalloutDeleted"`) {
		t.Fatalf("events printed %d lines, want the 2 deletes:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	if out := c.ok("events", "--callout", calloutKey, "--from-seq", "3"); strings.Count(out, "\n") != 1 || !strings.Contains(out, `"FilterDeleted"`) {
		t.Fatalf("events --callout --from-seq 3: %q", out)
	}
	// The archive has the whole history, with the log's sequences.
	var lines2 []string
	testkit.Eventually(t, "the archive to have all 4 events", func() bool {
		lines2 = strings.Split(strings.TrimSpace(c.ok("events", "--archive")), "\n")
		return len(lines2) == 4
	})
	var first logLine
	if err := json.Unmarshal([]byte(lines2[1]), &first); err != nil || first.Seq != 2 || first.ArchiveSeq != 2 ||
		first.Type != events.FilterAdded || first.Filter.Key != added.Key {
		t.Fatalf("events --archive line 2: %s (%v)", lines2[1], err)
	}
	if out := c.ok("events", "--archive", "--callout", calloutKey, "--from-seq", "3"); strings.Count(out, "\n") != 1 || !strings.Contains(out, `"FilterDeleted"`) {
		t.Fatalf("events --archive --callout --from-seq 3: %q", out)
	}
}

func TestDecode(t *testing.T) {
	ev := events.NewFilterEvent(events.FilterAdded, &events.Filter{Key: calloutKey, ID: 7, Name: "n", Layer: "ALE_AUTH_CONNECT_V4", Action: events.ActionBlock})
	data, err := events.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"decode"}, bytes.NewReader(data), &out, &out); err != nil {
		t.Fatal(err)
	}
	var got events.Event
	if err := json.Unmarshal(out.Bytes(), &got); err != nil || got.Filter.ID != 7 || got.Type != events.FilterAdded {
		t.Fatalf("decode printed %q (%v)", out.String(), err)
	}
	if err := run(context.Background(), []string{"decode"}, strings.NewReader("garbage"), &out, &out); err == nil {
		t.Fatal("decode accepted garbage")
	}
}

// events --follow prints the log so far, then new events as they come,
// until interrupted, and then exits cleanly.
func TestEventsFollow(t *testing.T) {
	c := newCLI(t)
	c.ok("callout", "add", "--key", calloutKey, "--name", "inspector")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out testkit.SyncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"events", "--server", c.url, "--follow"}, nil, &out, io.Discard) }()
	waitFor := func(n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for strings.Count(out.String(), "\n") < n {
			if time.Now().After(deadline) {
				t.Fatalf("events --follow printed %q, want %d lines", out.String(), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor(1)
	c.ok("filter", "add", "--name", "later", "--layer", "ALE_AUTH_CONNECT_V4", "--action", "block")
	waitFor(2)
	if !strings.Contains(out.String(), `"name":"later"`) {
		t.Fatalf("followed event missing: %s", out.String())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("events --follow after interrupt: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("events --follow did not stop when interrupted")
	}
}

// tx apply writes all of a transaction or, if one operation is invalid,
// nothing, naming the operation.
func TestTxApply(t *testing.T) {
	c := newCLI(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	writeFile(t, good, `{"ops":[
		{"op":"callout.add","callout":{"calloutKey":"`+calloutKey+`","name":"c"}},
		{"op":"filter.add","filter":{"filterKey":"11111111-1111-4111-8111-111111111111","name":"a","layer":"ALE_AUTH_CONNECT_V4","action":"callout-inspection","calloutKey":"`+calloutKey+`"}},
		{"op":"filter.add","filter":{"filterKey":"22222222-2222-4222-8222-222222222222","name":"b","layer":"ALE_AUTH_CONNECT_V4","action":"block"}},
		{"op":"filter.delete","filterKey":"22222222-2222-4222-8222-222222222222"}]}`)
	out := c.ok("tx", "apply", good)
	for _, want := range []string{"committed 4 operation(s) at log sequences 1-4", "added filter 11111111-1111-4111-8111-111111111111 id 2",
		"deleted filter 22222222-2222-4222-8222-222222222222 id 3"} {
		if !strings.Contains(out, want) {
			t.Fatalf("tx apply printed:\n%s\nwant %q", out, want)
		}
	}
	bad := filepath.Join(dir, "bad.json")
	writeFile(t, bad, `[
		{"op":"filter.add","filter":{"name":"ok","layer":"ALE_AUTH_CONNECT_V4","action":"block"}},
		{"op":"filter.delete","filterId":999}]`)
	if _, err := c.run("tx", "apply", bad); err == nil || !strings.Contains(err.Error(), "FWP_E_FILTER_NOT_FOUND: ops[1] (filter.delete)") {
		t.Fatalf("invalid tx: %v", err)
	}
	if out := c.ok("events"); strings.Count(out, "\n") != 4 {
		t.Fatalf("the refused transaction wrote to the log:\n%s", out)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestServeRefusesANegativeHorizon(t *testing.T) {
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"serve", "--horizon", "-5s", "--data", t.TempDir()}, nil, io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "--horizon") {
		t.Fatalf("serve --horizon -5s: %v", err)
	}
}

// load applies any number of operations in transactions of 1000, in
// order: a later transaction may delete what an earlier one added. A
// refused transaction stops the load, naming it; what came before stays.
func TestLoad(t *testing.T) {
	c := newCLI(t)
	dir := t.TempDir()
	var ops []string
	ops = append(ops, `{"op":"callout.add","callout":{"calloutKey":"`+calloutKey+`","name":"c"}}`)
	keyOf := func(i int) string { return fmt.Sprintf("%08d-0000-4000-8000-000000000000", i) }
	for i := 1; i <= 2500; i++ {
		ops = append(ops, `{"op":"filter.add","filter":{"filterKey":"`+keyOf(i)+`","name":"f","layer":"ALE_AUTH_CONNECT_V4","action":"callout-inspection","calloutKey":"`+calloutKey+`"}}`)
	}
	ops = append(ops, `{"op":"filter.delete","filterKey":"`+keyOf(1)+`"}`) // added in the first transaction
	good := filepath.Join(dir, "good.json")
	writeFile(t, good, "["+strings.Join(ops, ",\n")+"]")
	out := c.ok("load", good, "--in-flight", "2")
	if want := "loaded 2502 operation(s) in 3 transaction(s) at log sequences 1-2502\n"; out != want {
		t.Fatalf("load printed %q, want %q", out, want)
	}
	var listed []map[string]any
	if err := json.Unmarshal([]byte(c.ok("filter", "list", "--callout", calloutKey, "--json")), &listed); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 2499 {
		t.Fatalf("%d filters after the load, want 2499", len(listed))
	}

	bad := filepath.Join(dir, "bad.json")
	ops = ops[:0]
	for i := 3001; i <= 4500; i++ {
		ops = append(ops, `{"op":"filter.add","filter":{"filterKey":"`+keyOf(i)+`","name":"f","layer":"ALE_AUTH_CONNECT_V4","action":"block"}}`)
	}
	ops[1200] = `{"op":"filter.delete","filterId":999999}` // in the second transaction
	writeFile(t, bad, "["+strings.Join(ops, ",")+"]")
	out, err := c.run("load", bad)
	if err == nil || !strings.Contains(err.Error(), "transaction from ops[1000]") || !strings.Contains(err.Error(), "FWP_E_FILTER_NOT_FOUND") {
		t.Fatalf("load of a bad file: %v", err)
	}
	if !strings.HasPrefix(out, "loaded 1000 operation(s) in 1 transaction(s)") {
		t.Fatalf("load of a bad file printed %q, want the first transaction reported", out)
	}
}

// engine permissions prints the permission sets of package permissions:
// a config entry by default, the JWT form with --json.
func TestPermissionsCommand(t *testing.T) {
	var out bytes.Buffer
	args := []string{"permissions", "agent", "--callout", calloutKey, "--agent-id", "a-1", "--durable", "d1", "--prefix", "acme"}
	if err := run(context.Background(), args, nil, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"permissions: {", `"$JS.ACK.WFP.d1.>"`, `"acme.result.` + calloutKey + `.a-1"`, "allow_responses"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("missing %s in:\n%s", want, out.String())
		}
	}
	for _, role := range []string{"operator", "manager", "engine"} {
		out.Reset()
		if err := run(context.Background(), []string{"permissions", role, "--json"}, nil, &out, io.Discard); err != nil {
			t.Fatal(err)
		}
		var p struct{ Pub, Sub struct{ Allow []string } }
		if err := json.Unmarshal(out.Bytes(), &p); err != nil || len(p.Pub.Allow) == 0 || len(p.Sub.Allow) == 0 {
			t.Errorf("%s --json: %q (%v)", role, out.String(), err)
		}
	}
	for _, bad := range [][]string{
		{"permissions"}, {"permissions", "root"}, {"permissions", "agent"}, {"permissions", "agent", "--callout", "x", "--agent-id", "a"},
		{"permissions", "agent", "--callout", calloutKey, "--agent-id", "a.b"},
	} {
		if err := run(context.Background(), bad, nil, io.Discard, io.Discard); err == nil {
			t.Errorf("%q: want error", bad)
		}
	}
}

// filter get and callout get show one object; a missing one is refused
// with its code.
func TestGetCommands(t *testing.T) {
	c := newCLI(t)
	c.ok("callout", "add", "--key", calloutKey, "--name", "inspector", "--layer", "ALE_AUTH_CONNECT_V4")
	c.ok("filter", "add", "--key", "11111111-1111-4111-8111-111111111111", "--name", "telnet", "--layer", "ALE_AUTH_CONNECT_V4",
		"--action", "callout-inspection", "--callout", calloutKey, "--condition", "IP_REMOTE_PORT=23")
	for _, ref := range [][]string{{"--id", "2"}, {"--key", "11111111-1111-4111-8111-111111111111"}} {
		var f events.Filter
		if err := json.Unmarshal([]byte(c.ok(append([]string{"filter", "get"}, ref...)...)), &f); err != nil || f.ID != 2 ||
			f.Name != "telnet" || len(f.Conditions) != 1 || f.CalloutKey != calloutKey {
			t.Fatalf("filter get %v: %+v (%v)", ref, f, err)
		}
	}
	out := c.ok("callout", "get", "--key", calloutKey)
	if !regexp.MustCompile(`(?m)^` + calloutKey + ` +inspector +ALE_AUTH_CONNECT_V4 +1 +no +-$`).MatchString(out) {
		t.Fatalf("callout get:\n%s", out)
	}
	var info engine.CalloutInfo
	if err := json.Unmarshal([]byte(c.ok("callout", "get", "--key", calloutKey, "--json")), &info); err != nil || info.FilterCount != 1 || info.Name != "inspector" {
		t.Fatalf("callout get --json: %+v (%v)", info, err)
	}
	if _, err := c.run("filter", "get", "--id", "9"); err == nil || !strings.Contains(err.Error(), "FWP_E_FILTER_NOT_FOUND") {
		t.Fatalf("filter get of no filter: %v", err)
	}
	if _, err := c.run("callout", "get", "--key", "5b1f0c0e-8a43-4b8e-9d7c-3c2f2d1a0b01"); err == nil || !strings.Contains(err.Error(), "FWP_E_CALLOUT_NOT_FOUND") {
		t.Fatalf("callout get of no callout: %v", err)
	}
}

// events --from-seq past the end of the log says where the log ends; one
// just past it (where a reader that saw everything resumes) prints
// nothing, and so does --follow until the log gets there.
func TestEventsFromPastTheEnd(t *testing.T) {
	c := newCLI(t)
	c.ok("callout", "add", "--key", calloutKey, "--name", "inspector")
	c.ok("filter", "add", "--name", "x", "--layer", "ALE_AUTH_CONNECT_V4", "--action", "block")
	if out := c.ok("events", "--from-seq", "3"); out != "" {
		t.Fatalf("events from the next sequence printed %q", out)
	}
	_, err := c.run("events", "--from-seq", "9")
	if err == nil || !strings.Contains(err.Error(), "--from-seq 9 is past the end of the log: stream WFP ends at sequence 2") {
		t.Fatalf("events --from-seq 9: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut testkit.SyncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"events", "--server", c.url, "--from-seq", "4", "--follow"}, nil, &out, &errOut)
	}()
	testkit.Eventually(t, "the note on where the log ends", func() bool {
		return strings.Contains(errOut.String(), "engine: the log ends at sequence 2; waiting for sequence 4")
	})
	c.ok("filter", "add", "--name", "y", "--layer", "ALE_AUTH_CONNECT_V4", "--action", "block")
	c.ok("filter", "add", "--name", "z", "--layer", "ALE_AUTH_CONNECT_V4", "--action", "block")
	testkit.Eventually(t, "the event at sequence 4", func() bool { return strings.Contains(out.String(), `"seq":4`) })
	if strings.Contains(out.String(), `"seq":3`) {
		t.Fatalf("events from 4 printed 3:\n%s", out.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
