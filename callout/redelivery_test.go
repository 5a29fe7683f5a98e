package callout_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/wfpnats/wfp/callout"
	"github.com/wfpnats/wfp/events"
	"github.com/wfpnats/wfp/internal/testkit"
	"github.com/wfpnats/wfp/jetstream"
)

// A durable agent whose acks never reach the server (lost, here refused
// by its user's permissions) gets its messages again after the ack wait:
// it recognises what it has handled and does not notify twice, even for
// a filter it no longer holds (an add since deleted, the delete itself).
func TestDurable_RedeliveryIsNotNotifiedTwice(t *testing.T) {
	srv := testkit.ServerWith(t, t.TempDir(), func(o *server.Options) {
		o.Users = []*server.User{
			{Username: "admin", Password: "admin"},
			{Username: "agent", Password: "agent", Permissions: &server.Permissions{
				Publish: &server.SubjectPermission{Allow: []string{">"}, Deny: []string{"$JS.ACK.>"}}}},
		}
	})
	admin := testkit.Dial(t, srv.ClientURL(), natsUser("admin"))
	js := testkit.JetStream(t, admin)
	e := &env{t: t, nc: admin, js: js, stream: testkit.Stream(t, js), subj: events.Subjects{Prefix: jetstream.DefaultPrefix}}
	ck := newKey()
	// The agent's durable, as the agent would make it, with a short ack
	// wait: the agent resumes a consumer of its own kind as it is.
	if _, err := js.CreateConsumer(context.Background(), jetstream.DefaultStreamName, natsjs.ConsumerConfig{
		Durable: "d", FilterSubject: e.subj.CalloutFilters(ck), AckPolicy: natsjs.AckAllPolicy,
		DeliverPolicy: natsjs.DeliverNewPolicy, MaxAckPending: 2 * jetstream.MaxBatch, AckWait: 200 * time.Millisecond,
	}); err != nil {
		t.Fatal(err)
	}
	agentJS := testkit.JetStream(t, testkit.Dial(t, srv.ClientURL(), natsUser("agent"), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})))
	rec := newRecorder()
	a, err := callout.Register(context.Background(), agentJS, ck, rec, callout.WithDurable("d"), callout.WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	f := e.add(ck, "f")
	e.del(f)
	rec.expect(t, addNote(f, false), delNote(f, false))
	// Two rounds of redelivery of both messages.
	waitStats(t, a, func(s callout.Stats) bool { return s.Duplicates >= 4 })
	rec.expectNone(t)
}

// natsUser logs in as the user of that name, whose password is the name.
func natsUser(name string) nats.Option { return nats.UserInfo(name, name) }
