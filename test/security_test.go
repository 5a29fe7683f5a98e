package test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"

	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/engine"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
	"github.com/wfpnats/wfp/jetstream/embedded"
)

// The security test: a real nats-server configured, user by user, from
// exactly what `engine permissions` prints, in one account. An agent of
// callout C1 holding its printed permissions works in every mode, and
// nothing it may try reaches callout C2: not C2's filters, deliveries or
// consumers, not the engine's answers to others, not the stream, not the
// management API, not C2's adds or agents.

// secured is the deployment: the server, the engine (as user "engine"),
// a management client (as "manager"), and the admin's unrestricted view.
type secured struct {
	t       *testing.T
	srv     *embedded.Server
	url     string
	eng     *engine.Engine
	client  *engine.Client
	admin   *nats.Conn
	adminJS natsjs.JetStream
	subj    events.Subjects
	c1, c2  string
	agents  map[string]*callout.Agent
	// via, per agent user, the URL its agent connects to, if not url (a
	// hop the test can cut).
	via map[string]string
}

const (
	c1Key = "11111111-aaaa-4aaa-8aaa-111111111111"
	c2Key = "22222222-bbbb-4bbb-8bbb-222222222222"
)

// agentUsers are the agent users of the configuration: name, callout,
// agent id and durable name.
var agentUsers = []struct{ user, callout, id, durable string }{
	{"c1-live", c1Key, "c1-live", ""},
	{"c1-replay", c1Key, "c1-replay", ""},
	{"c1-durable", c1Key, "c1-durable", "c1-dur"},
	{"c1-bin", c1Key, "c1-bin", ""},
	{"c2-live", c2Key, "c2-live", ""},
	{"c2-durable", c2Key, "c2-durable", "c2-dur"},
}

// printed runs `engine permissions args...` and returns what it prints.
func printed(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(binary(t, "cmd/engine"), append([]string{"permissions"}, args...)...).Output()
	if err != nil {
		t.Fatalf("engine permissions %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

func password(user string) string { return "pw-" + user }

func newSecured(t *testing.T) *secured {
	t.Helper()
	return newSecuredWith(t, engine.Config{})
}

// newSecuredWith is newSecured with an engine configured as cfg.
func newSecuredWith(t *testing.T, cfg engine.Config) *secured {
	t.Helper()
	var users []string
	user := func(name, perms string) {
		users = append(users, fmt.Sprintf("      { user: %q, password: %q\n%s      }", name, password(name), perms))
	}
	user("engine", printed(t, "engine"))
	user("manager", printed(t, "manager"))
	user("operator", printed(t, "operator"))
	for _, a := range agentUsers {
		args := []string{"agent", "--callout", a.callout, "--agent-id", a.id}
		if a.durable != "" {
			args = append(args, "--durable", a.durable)
		}
		user(a.user, printed(t, args...))
	}
	users = append(users, fmt.Sprintf("      { user: admin, password: %q }", password("admin")))
	conf := fmt.Sprintf("listen: \"127.0.0.1:-1\"\naccounts {\n  WFP {\n    jetstream: enabled\n    users: [\n%s\n    ]\n  }\n}\n",
		strings.Join(users, "\n"))
	srv := testkit.ServerFromConfig(t, conf)
	s := &secured{t: t, srv: srv, url: srv.ClientURL(), subj: events.Subjects{Prefix: events.DefaultPrefix}, c1: c1Key, c2: c2Key,
		agents: map[string]*callout.Agent{}}
	s.admin = s.connect("admin")
	s.adminJS = testkit.JetStream(t, s.admin)
	var err error
	cfg.Logger = quietLog
	s.eng, err = engine.Start(ctxT(t), s.connect("engine"), cfg)
	if err != nil {
		t.Fatalf("engine with its printed permissions: %v", err)
	}
	t.Cleanup(s.eng.Close)
	s.client = engine.NewClient(s.connect("manager"))
	for _, k := range []string{c1Key, c2Key} {
		if _, err := s.client.AddCallout(ctxT(t), events.Callout{Key: k, Name: "c"}); err != nil {
			t.Fatalf("manager with its printed permissions: %v", err)
		}
	}
	return s
}

// connect opens a connection as user, closed when the test ends.
func (s *secured) connect(user string, opts ...nats.Option) *nats.Conn {
	s.t.Helper()
	nc, err := nats.Connect(s.url, append([]nats.Option{nats.UserInfo(user, password(user)), nats.Name(user)}, opts...)...)
	if err != nil {
		s.t.Fatalf("connect as %s: %v", user, err)
	}
	s.t.Cleanup(nc.Close)
	return nc
}

// agentConn connects as an agent user, with its own inbox prefix (as
// callout-agent does).
func (s *secured) agentConn(user, calloutKey, id string, opts ...nats.Option) *nats.Conn {
	s.t.Helper()
	opts = append([]nats.Option{nats.CustomInboxPrefix(s.subj.AgentInbox(calloutKey, id))}, opts...)
	if url := s.via[user]; url != "" {
		nc, err := nats.Connect(url, append([]nats.Option{nats.UserInfo(user, password(user)), nats.Name(user),
			nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond)}, opts...)...)
		if err != nil {
			s.t.Fatalf("connect as %s via %s: %v", user, url, err)
		}
		s.t.Cleanup(nc.Close)
		return nc
	}
	return s.connect(user, opts...)
}

// agent registers an SDK agent as user u that refuses the adds of filters
// whose name contains "secret" and serves classify (it permits, with its
// agent id in the note), and waits until the engine lists it.
func (s *secured) agent(u string, rec *recorder, opts ...callout.Option) *callout.Agent {
	s.t.Helper()
	for _, a := range agentUsers {
		if a.user != u {
			continue
		}
		nc := s.agentConn(u, a.callout, a.id)
		h := refusing{recorder: rec, word: "secret"}
		id := a.id
		permit := callout.ClassifierFunc(func(context.Context, *callout.Filter, callout.Fields) (callout.Verdict, error) {
			return callout.Permit.WithNote("from " + id), nil
		})
		opts = append([]callout.Option{callout.WithAgentID(a.id), callout.WithLogger(quietLog), callout.WithClassifier(permit)}, opts...)
		if a.durable != "" {
			opts = append(opts, callout.WithDurable(a.durable))
		}
		ag, err := callout.Register(ctxT(s.t), testkit.JetStream(s.t, nc), a.callout, h, opts...)
		if err != nil {
			s.t.Fatalf("agent %s with its printed permissions: %v", u, err)
		}
		s.t.Cleanup(func() { _ = ag.Close() })
		waitSynced(s.t, ag)
		s.waitListed(a.callout, ag.Instance())
		return ag
	}
	s.t.Fatalf("no agent user %s", u)
	return nil
}

func (s *secured) agentClose(t *testing.T, user string) error {
	t.Helper()
	return s.agents[user].Close()
}

func (s *secured) waitListed(calloutKey, instance string) {
	s.t.Helper()
	testkit.Eventually(s.t, "agent instance "+instance+" listed", func() bool { return s.listed(calloutKey, instance) })
}

func (s *secured) listed(calloutKey, instance string) bool {
	resp, err := s.client.ListCallouts(ctxT(s.t))
	if err != nil {
		s.t.Fatal(err)
	}
	for _, c := range resp.Callouts {
		for _, a := range c.Agents {
			if c.Key == calloutKey && a.Instance == instance {
				return true
			}
		}
	}
	return false
}

// classify asks the engine about traffic with these fields, as the
// manager.
func (s *secured) classify(fields map[string]string) *engine.ClassifyResponse {
	s.t.Helper()
	r, err := s.client.Classify(ctxT(s.t), engine.ClassifyRequest{Layer: "ALE_AUTH_CONNECT_V4", Fields: fields})
	if err != nil {
		s.t.Fatal(err)
	}
	if len(r.Filters) == 0 {
		s.t.Fatal("classify matched no filter")
	}
	return r
}

func (s *secured) add(calloutKey, name string) (*events.Filter, error) {
	return s.client.AddFilter(ctxT(s.t), filterNamed(calloutKey, name))
}

func (s *secured) mustAdd(calloutKey, name string) *events.Filter {
	s.t.Helper()
	f, err := s.add(calloutKey, name)
	if err != nil {
		s.t.Fatalf("add %q: %v", name, err)
	}
	return f
}

// An agent of C1 with exactly its printed permissions, in each mode:
// registers, gets its notifications, refuses (R7), and a durable one
// resumes after a restart.
func TestSecurity_AgentWorksWithItsPrintedPermissions(t *testing.T) {
	s := newSecured(t)
	before := s.mustAdd(s.c1, "before the agents")

	live, replay, durable := newRecorder(), newRecorder(), newRecorder()
	hop := testkit.NewCutter(t, s.srv.NATS.Addr().String())
	s.via = map[string]string{"c1-live": hop.URL()}
	la := s.agent("c1-live", live)
	s.agents["c1-replay"] = s.agent("c1-replay", replay, callout.WithMode(callout.Replay))
	d := s.agent("c1-durable", durable)
	replay.waitFor(t, callout.AddFilter, before.Key) // the snapshot

	f := s.mustAdd(s.c1, "after")
	for _, r := range []*recorder{live, replay, durable} {
		r.waitFor(t, callout.AddFilter, f.Key)
	}
	// Classify: the engine asks C1's agents on their own subjects, and they
	// answer. Only the replay agent holds the filter added before them
	// (R2): the live and durable ones, asked first, pass it on.
	if r := s.classify(nil); r.Filters[0].Filter.ID != before.ID || r.Filters[0].AgentID != "c1-replay" || r.Filters[0].Note != "from c1-replay" {
		t.Fatalf("classify with printed permissions: %+v", r.Filters[0])
	}
	_, err := s.add(s.c1, "secret")
	if !errors.Is(err, engine.ErrCalloutNotificationFailed) {
		t.Fatalf("add the agents refuse: %v", err)
	}

	// The durable agent resumes where it stopped.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	missed := s.mustAdd(s.c1, "while the durable agent was away")
	again := newRecorder()
	s.agent("c1-durable", again)
	again.waitFor(t, callout.AddFilter, missed.Key)

	// A cut: the live agent reads its callout's live subject, with no
	// consumer; what is added while its connection is down never reaches
	// it there. Back, it catches up through a consumer of its own name.
	hop.Cut()
	g := s.mustAdd(s.c1, "while the live agent was cut off") // the engine stops waiting for it
	hop.Mend()
	live.waitFor(t, callout.AddFilter, g.Key)
	if st := la.Stats(); st.CatchUps == 0 {
		t.Fatalf("live agent stats %+v: no catch-up", st)
	}

	// A replay agent whose consumer is lost in the middle of its snapshot
	// finds where the snapshot ends with a direct get its permissions
	// allow (on its own callout's subject only).
	if err := s.agentClose(t, "c1-replay"); err != nil {
		t.Fatal(err)
	}
	var ops []engine.TxOp
	for range engine.MaxTxOps { // more than the agent reads ahead (a pull and its decoded queue), so that the reset lands mid-snapshot
		f := filterNamed(s.c1, "bulk")
		ops = append(ops, engine.TxOp{Op: engine.OpFilterAdd, Filter: &f})
	}
	if resp, err := s.client.ApplyTx(ctxT(t), ops); err != nil || len(resp.Rejected) != 0 {
		t.Fatalf("transaction: %v %+v", err, resp)
	}
	gated := newRecorder()
	gated.gate, gated.held = make(chan struct{}), make(chan struct{})
	var log testkit.SyncBuffer
	nc := s.agentConn("c1-replay", s.c1, "c1-replay")
	ra, err := callout.Register(ctxT(t), testkit.JetStream(t, nc), s.c1, gated, callout.WithAgentID("c1-replay"),
		callout.WithMode(callout.Replay), callout.WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	<-gated.held
	if err := s.adminJS.DeleteConsumer(ctxT(t), "WFP", events.AgentConsumer(s.c1, "c1-replay")); err != nil {
		t.Fatal(err)
	}
	close(gated.gate)
	select {
	case <-ra.Synced():
	case <-time.After(20 * time.Second):
		t.Fatalf("replay agent never synced after a reset mid-snapshot:\n%s", log.String())
	}
	if l := log.String(); !strings.Contains(l, "consumer reset during the snapshot") || strings.Contains(l, "cannot read the last sequence") {
		t.Fatalf("replay reset under permissions:\n%s", l)
	}

	// callout-agent itself, with its printed permissions and a password
	// file: it sets its own inbox prefix.
	dir := t.TempDir()
	p := startAgentProc(t, "--callout", s.c1, "--agent-id", "c1-bin", "--server", s.url,
		"--user", "c1-bin", "--password-file", testkit.WriteFile(t, dir, "pw", password("c1-bin")+"\n"))
	p.waitLine(t, `"notify":"synced"`)
	h := filterNamed(s.c1, "for the binary")
	h.Weight, h.Conditions = 10, []events.Condition{{Field: "IP_REMOTE_PORT", Value: "2222"}}
	added, err := s.client.AddFilter(ctxT(t), h)
	if err != nil {
		t.Fatal(err)
	}
	p.waitLine(t, added.Key)
	// It serves classify with them too, first of C1's agents by id.
	if r := s.classify(map[string]string{"IP_REMOTE_PORT": "2222"}); r.Filters[0].Filter.ID != added.ID ||
		r.Filters[0].AgentID != "c1-bin" || r.Filters[0].Note != "hits=1" {
		t.Fatalf("classify answered by callout-agent: %+v", r.Filters[0])
	}
	p.stop(t)
}

// Compaction under the printed permissions. A durable agent away for
// longer than the horizon (a delete it never saw has expired) learns the
// horizon from the events it may read, resyncs through the consumer of
// its own agent id, and records how far it has read in its durable's
// metadata; an operator reads the archive that keeps the expired delete.
func TestSecurity_ResyncWithPrintedPermissions(t *testing.T) {
	const horizon = 2 * time.Second
	s := newSecuredWith(t, engine.Config{Horizon: horizon, Archive: "WFP_ARCHIVE"})
	rec := newRecorder()
	d := s.agent("c1-durable", rec)
	f1, f2 := s.mustAdd(s.c1, "f1"), s.mustAdd(s.c1, "f2")
	rec.waitFor(t, callout.AddFilter, f2.Key)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.client.DeleteFilter(ctxT(t), engine.FilterRef{FilterID: f1.ID}); err != nil {
		t.Fatal(err)
	}
	del := s.lastSeq(t)
	logStream, err := s.adminJS.Stream(ctxT(t), "WFP")
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "f1's delete to expire", func() bool {
		_, err := logStream.GetMsg(ctxT(t), del)
		return errors.Is(err, natsjs.ErrMsgNotFound)
	})
	f3 := s.mustAdd(s.c1, "f3")

	again := newRecorder()
	a := s.agent("c1-durable", again)
	testkit.Eventually(t, "the durable agent to resync", func() bool {
		st := a.Stats()
		return st.Resyncs == 1 && st.Held == 2
	})
	for _, f := range []*events.Filter{f2, f3} {
		if n := again.waitFor(t, callout.AddFilter, f.Key); !n.initial {
			t.Errorf("%s after the resync: not initial", f.Name)
		}
	}
	if _, ok := a.Lookup(f1.ID); ok {
		t.Fatal("the resync handed over a deleted filter")
	}
	// The snapshot's consumer is gone, and the durable carries the record.
	if s.consumers(t)[events.AgentConsumer(s.c1, "c1-durable")] {
		t.Fatal("the snapshot consumer outlived the resync")
	}
	// Live again, on the durable made anew at the snapshot's end.
	f4 := s.mustAdd(s.c1, "f4")
	again.waitFor(t, callout.AddFilter, f4.Key)
	c, err := s.adminJS.Consumer(ctxT(t), "WFP", "c1-dur")
	if err != nil {
		t.Fatal(err)
	}
	if md := c.CachedInfo().Config.Metadata; md["wfp.caught-up"] == "" || md[events.MetaHorizon] != "2" {
		t.Fatalf("durable metadata %v, want the caught-up time and the horizon", md)
	}

	// The operator reads the archive: the delete is there.
	dir := t.TempDir()
	out, err := exec.Command(binary(t, "cmd/engine"), "events", "--archive", "--callout", s.c1, "--server", s.url,
		"--user", "operator", "--password-file", testkit.WriteFile(t, dir, "pw", password("operator"))).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"type":"FilterDeleted"`) {
		t.Fatalf("events --archive as the operator: %v\n%s", err, out)
	}
}

// attacker is a connection as an agent user of C1 that records the
// permission violations the server reports to it.
type attacker struct {
	nc         *nats.Conn
	js         natsjs.JetStream
	mu         sync.Mutex
	violations []string
}

func (s *secured) attacker(user, id string) *attacker {
	a := &attacker{}
	a.nc = s.agentConn(user, s.c1, id, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		a.mu.Lock()
		a.violations = append(a.violations, err.Error())
		a.mu.Unlock()
	}))
	a.js = testkit.JetStream(s.t, a.nc)
	return a
}

// denied waits until the server has refused what on subject.
func (a *attacker) denied(t *testing.T, what, subject string) {
	t.Helper()
	want := strings.ToLower(fmt.Sprintf("permissions violation for %s to %q", what, subject))
	testkit.Eventually(t, want, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, v := range a.violations {
			if strings.Contains(strings.ToLower(v), want) {
				return true
			}
		}
		return false
	})
}

// request sends a request that the server must refuse, and checks that
// it is refused and that no answer comes.
func (a *attacker) request(t *testing.T, subject string, body []byte) {
	t.Helper()
	replies, err := a.nc.SubscribeSync(a.nc.NewInbox())
	if err != nil {
		t.Fatal(err)
	}
	defer replies.Unsubscribe()
	if err := a.nc.PublishRequest(subject, replies.Subject, body); err != nil {
		t.Fatal(err)
	}
	a.denied(t, "publish", subject)
	if err := a.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if m, err := replies.NextMsg(0); err == nil {
		t.Fatalf("request on %s answered: %s", subject, m.Data)
	}
}

func (a *attacker) publish(t *testing.T, subject string, body []byte) {
	t.Helper()
	if err := a.nc.Publish(subject, body); err != nil {
		t.Fatal(err)
	}
	a.denied(t, "publish", subject)
}

// subscribe subscribes where the server must refuse, and returns what
// the subscription gets (it must get nothing).
func (a *attacker) subscribe(t *testing.T, subject string) chan *nats.Msg {
	t.Helper()
	ch := make(chan *nats.Msg, 100)
	if _, err := a.nc.ChanSubscribe(subject, ch); err != nil {
		t.Fatal(err)
	}
	a.denied(t, "subscription", subject)
	return ch
}

// What an agent of C1, holding its printed permissions, may try against
// callout C2, the stream, the API and the other agents: each is refused
// by the server or dropped by the engine, and C2's adds and agents are as
// they were.
func TestSecurity_AgentOfC1CannotReachC2(t *testing.T) {
	s := newSecured(t)
	c2rec, c2dur := newRecorder(), newRecorder()
	c2 := s.agent("c2-live", c2rec)
	c2d := s.agent("c2-durable", c2dur)
	s.agent("c1-live", newRecorder())
	old := s.mustAdd(s.c2, "existing C2 filter")
	c2dur.waitFor(t, callout.AddFilter, old.Key)

	x := s.attacker("c1-live", "c1-live")
	own := events.AgentConsumer(s.c1, "c1-live")
	c2Filters := s.subj.CalloutFilters(s.c2)

	t.Run("no consumer on C2's subjects", func(t *testing.T) {
		for _, cfg := range []natsjs.ConsumerConfig{
			{Name: own, FilterSubject: c2Filters},
			{Name: events.AgentConsumer(s.c2, "c2-live"), FilterSubject: c2Filters},
			{Name: "c2-dur", FilterSubject: c2Filters},
		} {
			ctx, cancel := context.WithTimeout(ctxT(t), 200*time.Millisecond)
			_, err := x.js.CreateConsumer(ctx, "WFP", cfg)
			cancel()
			if err == nil {
				t.Fatalf("consumer %s on %s created", cfg.Name, c2Filters)
			}
			x.denied(t, "publish", "$JS.API.CONSUMER.CREATE.WFP."+cfg.Name+"."+c2Filters)
		}
		x.request(t, "$JS.API.CONSUMER.CREATE.WFP", []byte(`{"stream_name":"WFP","config":{"filter_subject":"`+c2Filters+`"}}`))
		x.request(t, "$JS.API.CONSUMER.CREATE.WFP.x", []byte(`{"stream_name":"WFP","config":{"name":"x","filter_subject":"`+c2Filters+`"}}`))
		x.request(t, "$JS.API.CONSUMER.DURABLE.CREATE.WFP.x", []byte(`{"stream_name":"WFP","config":{"durable_name":"x","filter_subject":"`+c2Filters+`"}}`))
		// Its own consumer's subject with C2's filter in the body: the
		// server refuses the mismatch.
		m, err := x.nc.Request("$JS.API.CONSUMER.CREATE.WFP."+own+"."+s.subj.CalloutFilters(s.c1),
			[]byte(`{"stream_name":"WFP","config":{"name":"`+own+`","filter_subject":"`+c2Filters+`"}}`), 5*time.Second)
		if err != nil || !strings.Contains(string(m.Data), `"error"`) {
			t.Fatalf("own subject, C2 filter in the body: %s (%v), want an error", m.Data, err)
		}
		// Whatever reads C2's subjects is C2's own.
		for name := range s.consumers(t) {
			info, err := s.adminJS.Consumer(ctxT(t), "WFP", name)
			if err != nil {
				t.Fatal(err)
			}
			if info.CachedInfo().Config.FilterSubject == c2Filters && name != events.AgentConsumer(s.c2, "c2-live") && name != "c2-dur" {
				t.Fatalf("consumer %s reads C2's subjects", name)
			}
		}
	})

	t.Run("no C2 deliveries, no replies to others, no raw events", func(t *testing.T) {
		var got []chan *nats.Msg
		for _, subj := range []string{"_INBOX.>", ">", s.subj.AgentInbox(s.c2, "c2-live") + ".>", s.subj.Prefix + ".inbox.>",
			s.subj.LiveFilters(s.c2), s.subj.Prefix + ".live.>", s.subj.LiveDestination(),
			s.subj.AllFilters(), c2Filters, s.subj.Prefix + ".callout.>", s.subj.AllResults(), s.subj.AllAgents(),
			s.subj.AgentPing(s.c2, "c2-live"), s.subj.AgentInstancePing(s.c2, "c2-live", c2.Instance()), s.subj.API(">"),
			"$JS.ACK.WFP.c2-dur.>", s.subj.Classify(s.c2, "c2-live"), s.subj.Classify(s.c2, "c2-durable"), s.subj.AllClassify(),
			s.subj.Prefix + ".classify.>"} {
			got = append(got, x.subscribe(t, subj))
		}
		f := s.mustAdd(s.c2, "C2 business")
		c2rec.waitFor(t, callout.AddFilter, f.Key)
		c2dur.waitFor(t, callout.AddFilter, f.Key)
		// C2's classify calls go to C2's agents, and only there.
		if r := s.classify(nil); r.Filters[0].Filter.ID != old.ID || r.Filters[0].AgentID != "c2-durable" {
			t.Fatalf("classify of C2's filter: %+v", r.Filters[0])
		}
		if _, err := s.client.ListFilters(ctxT(t), engine.ListFiltersRequest{CalloutKey: s.c2}); err != nil {
			t.Fatal(err)
		}
		if err := x.nc.Flush(); err != nil {
			t.Fatal(err)
		}
		for _, ch := range got {
			select {
			case m := <-ch:
				t.Fatalf("the C1 agent received %s: %s", m.Subject, m.Data)
			default:
			}
		}
	})

	t.Run("no pull, ack, delete or info on C2's consumers", func(t *testing.T) {
		for _, name := range []string{"c2-dur", events.AgentConsumer(s.c2, "c2-live")} {
			x.request(t, "$JS.API.CONSUMER.MSG.NEXT.WFP."+name, []byte(`{"batch":1}`))
			x.request(t, "$JS.API.CONSUMER.DELETE.WFP."+name, nil)
			x.request(t, "$JS.API.CONSUMER.INFO.WFP."+name, nil)
		}
		x.publish(t, "$JS.ACK.WFP.c2-dur.1.2.2.1700000000000000000.0", []byte("+ACK"))
		if _, err := s.adminJS.Consumer(ctxT(t), "WFP", "c2-dur"); err != nil {
			t.Fatalf("C2's consumer c2-dur: %v", err)
		}
		f := s.mustAdd(s.c2, "C2 still served")
		c2dur.waitFor(t, callout.AddFilter, f.Key)
		c2rec.waitFor(t, callout.AddFilter, f.Key)
		if c2d.Err() != nil {
			t.Fatal(c2d.Err())
		}
	})

	t.Run("no write to the stream, no stream API, no reading C2 by direct get", func(t *testing.T) {
		last := s.lastSeq(t)
		x.publish(t, s.subj.Prefix+".filter."+s.c1+".00000000-0000-4000-8000-000000000001", []byte("forged"))
		x.publish(t, s.subj.Prefix+".callout."+s.c2, []byte("forged"))
		for _, subj := range []string{"$JS.API.STREAM.INFO.WFP", "$JS.API.STREAM.PURGE.WFP", "$JS.API.STREAM.MSG.DELETE.WFP",
			"$JS.API.STREAM.DELETE.WFP", "$JS.API.STREAM.UPDATE.WFP", "$JS.API.STREAM.MSG.GET.WFP", "$JS.API.DIRECT.GET.WFP",
			"$JS.API.DIRECT.GET.WFP." + c2Filters, "$JS.API.CONSUMER.LIST.WFP", "$JS.API.CONSUMER.NAMES.WFP", "$JS.API.INFO"} {
			x.request(t, subj, []byte(`{"seq":1,"last_by_subj":"`+c2Filters+`"}`))
		}
		if got := s.lastSeq(t); got != last {
			t.Fatalf("stream last sequence %d, was %d", got, last)
		}
	})

	t.Run("no management endpoint", func(t *testing.T) {
		for _, ep := range []string{engine.EndpointFilterList, engine.EndpointFilterGet, engine.EndpointFilterAdd, engine.EndpointFilterDelete,
			engine.EndpointCalloutList, engine.EndpointCalloutAdd, engine.EndpointCalloutDelete, engine.EndpointTxApply} {
			x.request(t, s.subj.API(ep), []byte(`{}`))
		}
		x.request(t, "$SRV.INFO", nil)
	})

	t.Run("no announcing, answering or bye for C2 or another agent id", func(t *testing.T) {
		bye := events.Announcement{AgentID: "c2-live", CalloutKey: s.c2, Instance: c2.Instance(), Mode: "live", Status: events.AgentBye}
		fake := events.Announcement{AgentID: "c2-fake", CalloutKey: s.c2, Instance: "fakeinstance", Mode: "live", Status: events.AgentAlive}
		other := events.Announcement{AgentID: "c1-other", CalloutKey: s.c1, Instance: "fakeinstance", Mode: "live", Status: events.AgentAlive}
		next := s.eng.Seq() + 1
		refusal := events.NotifyResult{AgentID: "c2-live", CalloutKey: s.c2, Instance: c2.Instance(), FilterKey: "x", FilterID: next, Error: "forged"}
		for subj, v := range map[string]any{
			s.subj.Agent(s.c2, "c2-live"):     bye,
			s.subj.Agent(s.c2, "c2-fake"):     fake,
			s.subj.Agent(s.c1, "c1-other"):    other,
			s.subj.Result(s.c2, "c2-live"):    refusal,
			s.subj.Result(s.c1, "c1-other"):   refusal,
			s.subj.AgentProbe():               nil,
			s.subj.AgentPing(s.c2, "c2-live"): nil,
			// An answer to a classify call it never received: to the
			// engine's inbox, or on a C2 agent's classify subject.
			"_INBOX.anything":                events.ClassifyAnswer{AgentID: "c2-live", CalloutKey: s.c2, FilterID: old.ID, Verdict: events.VerdictBlock},
			s.subj.Classify(s.c2, "c2-live"): events.ClassifyAnswer{AgentID: "c2-live", CalloutKey: s.c2, FilterID: old.ID, Verdict: events.VerdictBlock},
		} {
			data, _ := json.Marshal(v)
			x.publish(t, subj, data)
		}
		// On its own subjects (which it may use), in C2's name: the
		// engine drops them.
		dropped := s.eng.Stats().AgentDropped
		for _, v := range []any{bye, fake} {
			data, _ := json.Marshal(v)
			if err := x.nc.Publish(s.subj.Agent(s.c1, "c1-live"), data); err != nil {
				t.Fatal(err)
			}
		}
		data, _ := json.Marshal(refusal)
		if err := x.nc.Publish(s.subj.Result(s.c1, "c1-live"), data); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, "the engine to drop 3 forgeries", func() bool { return s.eng.Stats().AgentDropped >= dropped+3 })

		// C2 is as it was: its agents listed, its refusals refuse, its
		// acceptances accept.
		if !s.listed(s.c2, c2.Instance()) || !s.listed(s.c2, c2d.Instance()) || s.listed(s.c2, "fakeinstance") {
			t.Fatal("C2's agents changed")
		}
		if _, err := s.add(s.c2, "fine"); err != nil {
			t.Fatalf("C2 add its agents accept: %v", err)
		}
		if _, err := s.add(s.c2, "secret"); !errors.Is(err, engine.ErrCalloutNotificationFailed) || !strings.Contains(err.Error(), "c2-") {
			t.Fatalf("C2 add its agents refuse: %v", err)
		}
	})
}

// A read-only operator with its printed permissions lists and reads the
// log (engine events) without leaving anything behind on the server, and
// can change nothing.
func TestSecurity_OperatorReadsOnly(t *testing.T) {
	s := newSecured(t)
	f := s.mustAdd(s.c1, "visible")
	consumers := s.consumers(t)
	dir := t.TempDir()
	pw := testkit.WriteFile(t, dir, "pw", password("operator"))
	run := func(args ...string) (string, error) {
		out, err := exec.Command(binary(t, "cmd/engine"), append(args, "--server", s.url, "--user", "operator", "--password-file", pw)...).CombinedOutput()
		return string(out), err
	}
	if out, err := run("filter", "list"); err != nil || !strings.Contains(out, f.Key) {
		t.Fatalf("filter list: %v\n%s", err, out)
	}
	if out, err := run("callout", "list"); err != nil || !strings.Contains(out, s.c1) {
		t.Fatalf("callout list: %v\n%s", err, out)
	}
	if out, err := run("events", "--callout", s.c1); err != nil || !strings.Contains(out, f.Key) {
		t.Fatalf("events: %v\n%s", err, out)
	}
	if got := s.consumers(t); fmt.Sprint(got) != fmt.Sprint(consumers) {
		t.Fatalf("consumers %v after reading, were %v", got, consumers)
	}
	op := &attacker{}
	op.nc = s.connect("operator", nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		op.mu.Lock()
		op.violations = append(op.violations, err.Error())
		op.mu.Unlock()
	}))
	for _, ep := range []string{engine.EndpointFilterAdd, engine.EndpointFilterDelete, engine.EndpointCalloutAdd,
		engine.EndpointCalloutDelete, engine.EndpointTxApply} {
		op.request(t, s.subj.API(ep), []byte(`{"filterId":`+fmt.Sprint(f.ID)+`}`))
	}
	for _, subj := range []string{"$JS.API.CONSUMER.CREATE.WFP", "$JS.API.STREAM.PURGE.WFP", "$JS.API.CONSUMER.DELETE.WFP.x"} {
		op.request(t, subj, nil)
	}
	op.publish(t, s.subj.Prefix+".filter."+s.c1+".00000000-0000-4000-8000-000000000001", nil)
	if _, err := s.client.GetFilter(ctxT(t), engine.FilterRef{FilterID: f.ID}); err != nil {
		t.Fatal(err)
	}
}

func (s *secured) consumers(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	st, err := s.adminJS.Stream(ctxT(t), "WFP")
	if err != nil {
		t.Fatal(err)
	}
	names := st.ConsumerNames(ctxT(t))
	for n := range names.Name() {
		out[n] = true
	}
	if err := names.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func (s *secured) lastSeq(t *testing.T) uint64 {
	t.Helper()
	st, err := s.adminJS.Stream(ctxT(t), "WFP")
	if err != nil {
		t.Fatal(err)
	}
	return st.CachedInfo().State.LastSeq
}

// agentProc is a callout-agent process and its output.
type agentProc struct {
	cmd    *exec.Cmd
	out    *testkit.SyncBuffer
	errOut *testkit.SyncBuffer
	exited chan struct{}
}

func startAgentProc(t *testing.T, args ...string) *agentProc {
	t.Helper()
	cmd := exec.Command(binary(t, "cmd/callout-agent"), args...)
	cmd.Env = append(cmd.Environ(), "NATS_URL=")
	p := &agentProc{cmd: cmd, out: &testkit.SyncBuffer{}, errOut: &testkit.SyncBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("callout-agent %v stderr:\n%s", args, p.errOut)
		}
	})
	return p
}

func (p *agentProc) waitLine(t *testing.T, substr string) {
	t.Helper()
	testkit.Eventually(t, "callout-agent to print "+substr, func() bool {
		select {
		case <-p.exited:
			t.Fatalf("callout-agent exited: %s", p.errOut)
		default:
		}
		return strings.Contains(p.out.String(), substr)
	})
}

func (p *agentProc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("callout-agent did not exit after SIGTERM")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("callout-agent exit %d: %s", code, p.errOut)
	}
}
