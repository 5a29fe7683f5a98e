package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
	"github.com/wfpnats/wfp/jetstream"
	"github.com/wfpnats/wfp/jetstream/embedded"
)

const wait = 15 * time.Second

// TestBinary builds callout-agent and drives it as a user would: against a
// real nats-server, reading its stdout, stopping it with SIGTERM.
func TestBinary(t *testing.T) {
	bin := buildAgent(t)

	t.Run("live add and delete then SIGTERM exits 0", func(t *testing.T) {
		e := newServer(t)
		ck := uuid.NewString()
		old := e.add(ck) // before the agent: no add line (R2), a delete line without context (R4)

		p := startAgent(t, bin, "--callout", ck, "--server", e.srv.ClientURL())
		p.expect(t, line{Notify: "synced"})
		f := e.add(ck)
		p.expect(t, line{Notify: "add", FilterKey: f.Key, FilterID: f.ID})
		e.del(old)
		p.expect(t, line{Notify: "delete", FilterKey: old.Key, FilterID: old.ID, HadContext: false})
		e.del(f)
		p.expect(t, line{Notify: "delete", FilterKey: f.Key, FilterID: f.ID, HadContext: true})

		p.stop(t, syscall.SIGTERM)
	})

	t.Run("replay prints the snapshot then synced once", func(t *testing.T) {
		e := newServer(t)
		ck := uuid.NewString()
		a, b := e.add(ck), e.add(ck)
		e.del(a)
		c := e.add(ck)

		p := startAgent(t, bin, "--callout", ck, "--mode", "replay", "--server", e.srv.ClientURL())
		p.expect(t,
			line{Notify: "add", FilterKey: b.Key, FilterID: b.ID, Initial: true},
			line{Notify: "add", FilterKey: c.Key, FilterID: c.ID, Initial: true},
			line{Notify: "synced"})
		d := e.add(ck)
		p.expect(t, line{Notify: "add", FilterKey: d.Key, FilterID: d.ID})
		e.del(b)
		p.expect(t, line{Notify: "delete", FilterKey: b.Key, FilterID: b.ID, HadContext: true})
		p.stop(t, syscall.SIGINT)
	})

	t.Run("classify counts hits in the filter context, handed back at delete", func(t *testing.T) {
		e := newServer(t)
		ck := uuid.NewString()
		p := startAgent(t, bin, "--callout", ck, "--agent-id", "counter", "--server", e.srv.ClientURL())
		p.expect(t, line{Notify: "synced"})
		look, decide := e.add(ck), e.addAction(ck, "decide", events.ActionCalloutTerminating)
		p.expect(t, line{Notify: "add", FilterKey: look.Key, FilterID: look.ID},
			line{Notify: "add", FilterKey: decide.Key, FilterID: decide.ID})

		// As an engine asks it.
		ask := func(f *events.Filter) events.ClassifyAnswer {
			t.Helper()
			call, _ := json.Marshal(events.ClassifyCall{FilterID: f.ID, FilterKey: f.Key, Fields: map[string]string{"IP_REMOTE_PORT": "22"}})
			m, err := e.nc.Request(events.Subjects{Prefix: jetstream.DefaultPrefix}.Classify(ck, "counter"), call, wait)
			if err != nil {
				t.Fatal(err)
			}
			var a events.ClassifyAnswer
			if err := json.Unmarshal(m.Data, &a); err != nil {
				t.Fatalf("%q: %v", m.Data, err)
			}
			return a
		}
		for i, want := range []string{"hits=1", "hits=2", "hits=3"} {
			if a := ask(look); a.Verdict != events.VerdictContinue || a.Note != want || a.AgentID != "counter" || a.FilterID != look.ID {
				t.Fatalf("inspection filter, call %d: %+v", i+1, a)
			}
		}
		if a := ask(decide); a.Verdict != events.VerdictPermit || a.Note != "hits=1" {
			t.Fatalf("terminating filter: %+v", a)
		}
		if a := ask(&events.Filter{ID: decide.ID + 10, Key: uuid.NewString()}); a.Error != events.NoSuchFilter || a.Verdict != "" {
			t.Fatalf("a filter it does not hold: %+v", a)
		}
		e.del(look)
		p.expect(t, line{Notify: "delete", FilterKey: look.Key, FilterID: look.ID, HadContext: true, Hits: 3})
		p.stop(t, syscall.SIGTERM)
	})

	t.Run("--help lists every flag and exits 0; --version too", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(bin, "--help")
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil || stderr.Len() != 0 || !strings.HasPrefix(stdout.String(), "callout-agent: ") {
			t.Fatalf("--help: %v\n%s%s", err, stdout.String(), stderr.String())
		}
		for _, f := range []string{"callout", "mode", "durable", "agent-id", "reject-adds", "post-commit", "stream", "prefix",
			"metrics-addr", "log-level", "log-format", "server", "creds", "nkey", "user", "password-file", "token-file",
			"tlsca", "tlscert", "tlskey"} {
			if !strings.Contains(stdout.String(), "\n  --"+f+" ") && !strings.Contains(stdout.String(), "\n  --"+f+"\n") {
				t.Errorf("--help does not describe --%s", f)
			}
		}
		out, err := exec.Command(bin, "--version").Output()
		if err != nil || !regexp.MustCompile(`^callout-agent \S.*\n$`).Match(out) {
			t.Fatalf("--version: %q (%v)", out, err)
		}
	})

	t.Run("--log-format json --log-level debug: every log line a JSON object", func(t *testing.T) {
		e := newServer(t)
		ck := uuid.NewString()
		p := startAgent(t, bin, "--callout", ck, "--server", e.srv.ClientURL(), "--log-format", "json", "--log-level", "debug")
		p.expect(t, line{Notify: "synced"})
		f := e.add(ck)
		p.expect(t, line{Notify: "add", FilterKey: f.Key, FilterID: f.ID})
		e.del(f)
		p.expect(t, line{Notify: "delete", FilterKey: f.Key, FilterID: f.ID, HadContext: true})
		p.stop(t, syscall.SIGTERM)
		levels := map[string]bool{}
		for _, l := range strings.Split(strings.TrimSpace(p.stderr.String()), "\n") {
			var rec struct{ Level, Msg string }
			if err := json.Unmarshal([]byte(l), &rec); err != nil || rec.Msg == "" {
				t.Fatalf("log line %q is not a JSON record (%v)", l, err)
			}
			levels[rec.Level] = true
		}
		if !levels["DEBUG"] || !levels["INFO"] {
			t.Fatalf("levels logged: %v; want DEBUG (the freed context) and INFO", levels)
		}
	})

	t.Run("bad flags exit 2 with one line and a hint", func(t *testing.T) {
		for _, args := range [][]string{
			{"--no-such-flag"},
			{},
			{"--callout", "not-a-uuid"},
			{"--callout", uuid.NewString(), "--mode", "sideways"},
			{"--callout", uuid.NewString(), "--mode", "replay", "--durable", "d"},
			{"--callout", uuid.NewString(), "extra"},
			{"--callout", uuid.NewString(), "--agent-id", "a.b"},
		} {
			code, stderr := runOnce(t, bin, args...)
			lines := strings.Split(strings.TrimSpace(string(stderr)), "\n")
			if code != 2 || len(lines) != 2 || !strings.HasPrefix(lines[0], "callout-agent: ") || lines[1] != "run 'callout-agent --help'" {
				t.Errorf("%q: exit %d, stderr %q; want 2, one line and the hint", args, code, stderr)
			}
		}
	})

	t.Run("--reject-adds refuses matching adds and the delete says why", func(t *testing.T) {
		e := newServer(t)
		ck := uuid.NewString()
		results := e.subscribe(t, events.Subjects{Prefix: jetstream.DefaultPrefix}.Result(ck, "shell-agent"))
		p := startAgent(t, bin, "--callout", ck, "--reject-adds", "secret", "--agent-id", "shell-agent", "--server", e.srv.ClientURL())
		p.expect(t, line{Notify: "synced"})

		refused := e.addNamed(ck, "top secret")
		const why = `refusing filter "top secret": name contains "secret"`
		p.expect(t, line{Notify: "add", FilterKey: refused.Key, FilterID: refused.ID, Error: why})
		var r events.NotifyResult
		if err := json.Unmarshal(waitMsg(t, results).Data, &r); err != nil {
			t.Fatal(err)
		}
		if want := (events.NotifyResult{AgentID: "shell-agent", CalloutKey: ck, Instance: r.Instance, FilterKey: refused.Key, FilterID: refused.ID, Error: why}); r != want || r.Instance == "" {
			t.Fatalf("result %+v, want %+v", r, want)
		}
		// What the engine writes to take it back.
		back := events.NewFilterEvent(events.FilterDeleted, refused)
		back.Reason = "rejected by agent shell-agent: " + why
		e.publish(back)
		p.expect(t, line{Notify: "delete", FilterKey: refused.Key, FilterID: refused.ID, Reason: back.Reason})

		ok := e.addNamed(ck, "public")
		p.expect(t, line{Notify: "add", FilterKey: ok.Key, FilterID: ok.ID})
		var r2 events.NotifyResult
		if err := json.Unmarshal(waitMsg(t, results).Data, &r2); err != nil || r2.FilterID != ok.ID || r2.Error != "" {
			t.Fatalf("result %+v (%v), want success for %d", r2, err, ok.ID)
		}
		p.stop(t, syscall.SIGTERM)
	})

	t.Run("--post-commit prints post-commit lines after a transaction", func(t *testing.T) {
		e := newServer(t)
		ck := uuid.NewString()
		p := startAgent(t, bin, "--callout", ck, "--post-commit", "--server", e.srv.ClientURL())
		p.expect(t, line{Notify: "synced"})
		x, y := e.tx(ck, "x", "y")
		p.expect(t,
			line{Notify: "add", FilterKey: x.Key, FilterID: x.ID},
			line{Notify: "add", FilterKey: y.Key, FilterID: y.ID},
			line{Notify: "add-post-commit", FilterKey: x.Key, FilterID: x.ID, HadContext: true},
			line{Notify: "add-post-commit", FilterKey: y.Key, FilterID: y.ID, HadContext: true})
		plain := e.add(ck) // outside a transaction: no post-commit
		p.expect(t, line{Notify: "add", FilterKey: plain.Key, FilterID: plain.ID})
		p.stop(t, syscall.SIGTERM)
	})

	t.Run("announces its --agent-id, logs it, says bye on SIGTERM", func(t *testing.T) {
		e := newServer(t)
		ck := uuid.NewString()
		anns := e.subscribe(t, events.Subjects{Prefix: jetstream.DefaultPrefix}.AllAgents())
		p := startAgent(t, bin, "--callout", ck, "--agent-id", "cli-1", "--post-commit", "--durable", "d1", "--server", e.srv.ClientURL())
		p.expect(t, line{Notify: "synced"})
		want := events.Announcement{AgentID: "cli-1", CalloutKey: ck, Mode: "live", Durable: "d1", PostCommit: true, Classify: true, Status: events.AgentAlive}
		var a events.Announcement
		err := json.Unmarshal(waitMsg(t, anns).Data, &a)
		want.Instance = a.Instance
		if err != nil || a != want || a.Instance == "" {
			t.Fatalf("announcement %+v (%v), want %+v", a, err, want)
		}
		// stderr reaches the buffer through its own pipe, maybe after stdout.
		testkit.Eventually(t, "a registered log line with the agent id", func() bool {
			return regexp.MustCompile(`msg=registered .*agentId=cli-1`).MatchString(p.stderr.String())
		})
		p.stop(t, syscall.SIGTERM)
		for a.Status == events.AgentAlive {
			a = events.Announcement{}
			if err := json.Unmarshal(waitMsg(t, anns).Data, &a); err != nil {
				t.Fatal(err)
			}
		}
		want.Status = events.AgentBye
		if a != want {
			t.Fatalf("last announcement %+v, want %+v", a, want)
		}
	})

	t.Run("a second agent with the same --agent-id exits 1 with one line; the first runs on", func(t *testing.T) {
		e := newServer(t)
		ck := uuid.NewString()
		first := startAgent(t, bin, "--callout", ck, "--agent-id", "solo", "--server", e.srv.ClientURL())
		first.expect(t, line{Notify: "synced"})
		code, stderr := runOnce(t, bin, "--callout", ck, "--agent-id", "solo", "--server", e.srv.ClientURL())
		lines := bytes.Split(bytes.TrimSpace(stderr), []byte("\n"))
		last := string(lines[len(lines)-1])
		if code != 1 || !strings.HasPrefix(last, "callout-agent: ") || !strings.Contains(last, `agent id "solo"`) ||
			!strings.Contains(last, "held by a running instance") {
			t.Fatalf("exit %d, stderr %q; want 1 and a line saying the id is held", code, stderr)
		}
		f := e.add(ck)
		first.expect(t, line{Notify: "add", FilterKey: f.Key, FilterID: f.ID})
		first.stop(t, syscall.SIGTERM)
	})

	t.Run("unreachable server exits 1", func(t *testing.T) {
		code, stderr := runOnce(t, bin, "--callout", uuid.NewString(), "--server", "nats://"+closedAddr(t))
		if code != 1 || !bytes.Contains(stderr, []byte("connect to")) {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
	})
}

func buildAgent(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "callout-agent")
	out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// server is an embedded nats-server on a TCP port, with the stream.
type server struct {
	t   *testing.T
	srv *embedded.Server
	nc  *nats.Conn
	js  natsjs.JetStream
	s   natsjs.Stream
}

func newServer(t *testing.T) *server {
	t.Helper()
	srv := testkit.Server(t)
	nc := testkit.Conn(t, srv)
	js := testkit.JetStream(t, nc)
	return &server{t: t, srv: srv, nc: nc, js: js, s: testkit.Stream(t, js)}
}

// add writes a FilterAdded fenced on the last sequence, so its ID is the
// sequence it gets (as the engine does).
func (e *server) add(calloutKey string) *events.Filter { return e.addNamed(calloutKey, "f") }

func (e *server) addNamed(calloutKey, name string) *events.Filter {
	return e.addAction(calloutKey, name, events.ActionCalloutInspection)
}

func (e *server) addAction(calloutKey, name string, action events.ActionType) *events.Filter {
	e.t.Helper()
	info, err := e.s.Info(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	f := &events.Filter{Key: uuid.NewString(), ID: info.State.LastSeq + 1, Name: name, Layer: "ALE_AUTH_CONNECT_V4",
		Action: action, CalloutKey: calloutKey}
	e.publish(events.NewFilterEvent(events.FilterAdded, f), natsjs.WithExpectLastSequence(info.State.LastSeq))
	return f
}

// tx writes the adds of filters named names as one transaction, one
// fenced atomic batch stamped as the engine stamps it, and returns them.
func (e *server) tx(calloutKey string, names ...string) (first, second *events.Filter) {
	e.t.Helper()
	info, err := e.s.Info(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	id := uuid.NewString()
	var msgs []*nats.Msg
	var fs []*events.Filter
	for i, name := range names {
		f := &events.Filter{Key: uuid.NewString(), ID: info.State.LastSeq + 1 + uint64(i), Name: name, Layer: "ALE_AUTH_CONNECT_V4",
			Action: events.ActionCalloutInspection, CalloutKey: calloutKey}
		m, err := events.Subjects{Prefix: jetstream.DefaultPrefix}.Message(events.NewFilterEvent(events.FilterAdded, f))
		if err != nil {
			e.t.Fatal(err)
		}
		h := nats.Header(m.Header)
		h.Set(events.HeaderTxID, id)
		h.Set(events.HeaderTxPart, events.TxPart(i+1, len(names)))
		msgs = append(msgs, &nats.Msg{Subject: m.Subject, Data: m.Data, Header: h})
		fs = append(fs, f)
	}
	if _, err := jetstream.PublishFenced(context.Background(), e.js, info.State.LastSeq, msgs); err != nil {
		e.t.Fatal(err)
	}
	return fs[0], fs[1]
}

// subscribe records the core NATS messages on subject.
func (e *server) subscribe(t *testing.T, subject string) <-chan *nats.Msg {
	t.Helper()
	ch := make(chan *nats.Msg, 100)
	sub, err := e.nc.ChanSubscribe(subject, ch)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return ch
}

func waitMsg(t *testing.T, ch <-chan *nats.Msg) *nats.Msg {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(wait):
		t.Fatalf("no message within %v", wait)
		return nil
	}
}

func (e *server) del(f *events.Filter) {
	e.t.Helper()
	e.publish(events.NewFilterEvent(events.FilterDeleted, f))
}

func (e *server) publish(ev *events.Event, opts ...natsjs.PublishOpt) {
	e.t.Helper()
	m, err := events.Subjects{Prefix: jetstream.DefaultPrefix}.Message(ev)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.js.PublishMsg(context.Background(), &nats.Msg{Subject: m.Subject, Data: m.Data, Header: nats.Header(m.Header)}, opts...); err != nil {
		e.t.Fatal(err)
	}
}

// proc is a running agent with its stdout split into lines.
type proc struct {
	cmd    *exec.Cmd
	lines  chan string
	stderr *testkit.SyncBuffer
	exited chan struct{}
}

func startAgent(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "NATS_URL=")
	p := &proc{cmd: cmd, lines: make(chan string, 100), stderr: &testkit.SyncBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	go func() { _ = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("agent stderr:\n%s", p.stderr)
		}
	})
	return p
}

// expect reads the next lines and compares them, as JSON, to want.
func (p *proc) expect(t *testing.T, want ...line) {
	t.Helper()
	for _, w := range want {
		select {
		case s, ok := <-p.lines:
			if !ok {
				t.Fatalf("stdout closed, want %+v", w)
			}
			var got line
			if err := json.Unmarshal([]byte(s), &got); err != nil {
				t.Fatalf("not a JSON line: %q: %v", s, err)
			}
			if got != w {
				t.Fatalf("got %s, want %+v", s, w)
			}
		case <-time.After(wait):
			t.Fatalf("no line within %v, want %+v", wait, w)
		}
	}
}

// stop signals the agent and checks it exits 0 with nothing more printed.
func (p *proc) stop(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(wait):
		t.Fatalf("no exit within %v of %v", wait, sig)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d after %v, want 0", code, sig)
	}
	for s := range p.lines {
		t.Errorf("unexpected line after the last notification: %s", s)
	}
}

func runOnce(t *testing.T, bin string, args ...string) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "NATS_URL=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("%q: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), stderr.Bytes()
}

// closedAddr is a local address nobody listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
